-- /metrics: finished jobs' durations counted per histogram bucket. `bucket` is how many bounds
-- lie strictly below the duration, i.e. the index of the first bound >= it (Prometheus `le`);
-- len(bounds) means +Inf. The caller accumulates the counts.
select d.workflow_id,
       d.status,
       b.bucket,
       count(*) as observations,
       sum(d.duration_seconds) as total_seconds
from public.metrics_job_durations as d
cross join lateral (
  select count(*)::integer as bucket
  from unnest(%(bounds)s::float8[]) as u (le)
  where u.le < d.duration_seconds
) as b
group by d.workflow_id, d.status, b.bucket
order by d.workflow_id, d.status, b.bucket
