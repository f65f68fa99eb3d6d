-- /metrics: jobs per workflow and status, completion and failure rates.
select * from public.metrics_job_outcomes order by workflow_id
