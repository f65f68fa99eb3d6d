-- /metrics: failed jobs per workflow, failing step and error kind.
select * from public.metrics_job_failures order by workflow_id, step_id, error_kind
