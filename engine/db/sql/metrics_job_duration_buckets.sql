-- /metrics: finished jobs' durations counted per histogram bucket. `bucket` is how many bounds
-- lie strictly below the duration, i.e. the index of the first bound >= it (Prometheus `le`);
-- len(bounds) means +Inf. The caller accumulates the counts.
select workflow_id, status, bucket, count(*) as observations, sum(seconds) as total_seconds
from (
  select d.workflow_id, d.status, d.duration_seconds as seconds,
         (select count(*) from unnest(%(bounds)s::float8[]) as le where le < d.duration_seconds)
           ::integer as bucket
  from public.metrics_job_durations as d
) as observed
group by 1, 2, 3
order by 1, 2, 3
