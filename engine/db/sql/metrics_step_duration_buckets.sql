-- /metrics: step attempts' execution times counted per histogram bucket, per transformer and
-- outcome (same bucket convention as metrics_job_duration_buckets).
select coalesce(d.transformer_id, '') as transformer_id,
       d.outcome,
       b.bucket,
       count(*) as observations,
       sum(d.duration_seconds) as total_seconds
from public.metrics_step_durations as d
cross join lateral (
  select count(*)::integer as bucket
  from unnest(%(bounds)s::float8[]) as u (le)
  where u.le < d.duration_seconds
) as b
group by coalesce(d.transformer_id, ''), d.outcome, b.bucket
order by 1, 2, 3
