-- soak: the step events of these jobs, each job's in order (what count_reruns reads).
select job_id::text as job_id, step_id, kind
from public.job_events
where job_id = any(%s::uuid[])
  and kind in ('step_started', 'step_succeeded', 'step_failed')
order by job_id, id
