-- Jobs the maintenance flow must check: in flight according to their row. Row-locked with
-- SKIP LOCKED so two maintenance runs never handle the same job; the oldest news first.
select id, status, prefect_flow_run_id, resubmissions, max_retries, cancel_requested_at,
       extract(epoch from now() - coalesce(heartbeat_at, last_updated_at, created_at))
         as heartbeat_age_seconds
from public.jobs
where status in ('running', 'awaiting_retry')
   or (status = 'pending' and prefect_flow_run_id is not null
       and dispatched_at < now() - make_interval(secs => %(grace_seconds)s))
order by coalesce(heartbeat_at, last_updated_at, created_at)
limit %(limit)s
for update skip locked
