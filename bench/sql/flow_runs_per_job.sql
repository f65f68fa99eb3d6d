-- load_concurrent and the fault scripts: Prefect flow runs per job, for these jobs, and how
-- many of them completed.
select parameters->>'job_id' as job, count(*) as n,
       count(*) filter (where state_type = 'COMPLETED') as completed
from flow_run
where parameters->>'job_id' = any(%s) group by 1
