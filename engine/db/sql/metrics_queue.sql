-- /metrics: queue length (pending, awaiting_retry) and the oldest queued job's age.
select * from public.metrics_queue order by status
