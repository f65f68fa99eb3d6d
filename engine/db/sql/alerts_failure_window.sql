-- Alert rule input: jobs that finished inside the failure-rate window, per workflow.
select workflow_id,
       count(*) as finished,
       count(*) filter (where status = 'failed') as failed
from public.jobs
where status in ('completed', 'failed')
  and completed_at >= now() - make_interval(secs => %(window_seconds)s::float8)
group by workflow_id
order by workflow_id
