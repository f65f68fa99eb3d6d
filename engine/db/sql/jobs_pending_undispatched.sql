-- Pending jobs that never reached Prefect: the oldest first, fair across users. Of the oldest
-- `window` candidates (row-locked, SKIP LOCKED so two dispatchers never take the same job),
-- each user's first job comes before anyone's second, and so on: one user's burst cannot
-- hold back another user's job by more than one turn per user. A delayed job
-- (scheduled_for, migration 20261207000900) is taken at once too: its flow run is created
-- Scheduled for its time, so Prefect, not this query, holds it back.
with candidates as (
  select id, user_id, workflow_id, created_at, scheduled_for
  from public.jobs
  where status = 'pending' and prefect_flow_run_id is null
    and created_at < now() - make_interval(secs => %(grace_seconds)s)
    -- A rerun's flow run has a key of its own (jobs_rerun_undispatched.sql), not the job id.
    and not coalesce(state_history -> -1 ? 'rerun', false)
  order by created_at
  limit %(window)s
  for update skip locked
)
select id, workflow_id, created_at, scheduled_for
from (
  select c.*, row_number() over (partition by c.user_id order by c.created_at, c.id) as turn
  from candidates as c
) as ranked
order by turn, created_at, id
limit %(limit)s
