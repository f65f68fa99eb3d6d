-- load_concurrent: Prefect flow runs per job, for these jobs.
select parameters->>'job_id' as job, count(*) as n from flow_run
where parameters->>'job_id' = any(%s) group by 1
