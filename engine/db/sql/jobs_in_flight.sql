-- Jobs the maintenance flow must check: in flight according to their row. Row-locked with
-- SKIP LOCKED so two maintenance runs never handle the same job; the oldest news first.
-- A delayed job (scheduled_for, migration 20261207000900) can show no sign of life before its
-- time: its silence counts from then, so a run a worker took early (Prefect holds it Pending
-- until the time) is not presumed dead.
select id, status, prefect_flow_run_id, resubmissions, max_retries, cancel_requested_at,
       scheduled_for,
       extract(epoch from now() - greatest(coalesce(heartbeat_at, last_updated_at, created_at),
                                           scheduled_for))
         as heartbeat_age_seconds
from public.jobs
where status in ('running', 'awaiting_retry')
   or (status = 'pending' and prefect_flow_run_id is not null
       and dispatched_at < now() - make_interval(secs => %(grace_seconds)s))
order by coalesce(heartbeat_at, last_updated_at, created_at)
limit %(limit)s
for update skip locked
