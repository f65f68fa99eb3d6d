-- Pending jobs that never reached Prefect, oldest first; SKIP LOCKED so two dispatchers
-- never take the same job.
select id, workflow_id, created_at
from public.jobs
where status = 'pending' and prefect_flow_run_id is null
  and created_at < now() - make_interval(secs => %(grace_seconds)s)
order by created_at
limit %(limit)s
for update skip locked
