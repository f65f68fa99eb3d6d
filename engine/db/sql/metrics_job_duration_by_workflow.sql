-- /metrics: average job duration per workflow.
select * from public.metrics_job_duration_by_workflow order by workflow_id
