-- /metrics: failed step attempts per workflow, step, transformer and error kind.
select * from public.metrics_step_failures order by workflow_id, step_id, transformer_id, error_kind
