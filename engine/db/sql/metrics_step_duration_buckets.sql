-- /metrics: step attempts' execution times counted per histogram bucket, per transformer and
-- outcome (same bucket convention as metrics_job_duration_buckets).
select transformer_id, outcome, bucket, count(*) as observations, sum(seconds) as total_seconds
from (
  select coalesce(d.transformer_id, '') as transformer_id, d.outcome,
         d.duration_seconds as seconds,
         (select count(*) from unnest(%(bounds)s::float8[]) as le where le < d.duration_seconds)
           ::integer as bucket
  from public.metrics_step_durations as d
) as observed
group by 1, 2, 3
order by 1, 2, 3
