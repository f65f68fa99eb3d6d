-- Reruns whose flow run was never created (Prefect unreachable when the owner asked): pending,
-- not dispatched, the last state_history entry the rerun's, older than the grace period (the
-- API creates the run right after the rerun commits). Row-locked, SKIP LOCKED.
select id, (state_history -> -1 ->> 'rerun')::integer as rerun
from public.jobs
where status = 'pending' and dispatched_at is null
  and state_history -> -1 ? 'rerun'
  and last_updated_at < now() - make_interval(secs => %(grace_seconds)s)
order by last_updated_at
limit %(limit)s
for update skip locked
