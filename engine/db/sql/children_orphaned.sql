-- Live child jobs whose parent no longer waits for them: the parent ended (failed, or was
-- cancelled) or a rerun redid the step, so the parent's wait for the child is not open.
-- Maintenance cancels them (their owner's cancel: engine.db.job_control.cancel_job).
select c.id, c.user_id, c.parent_job_id
from public.jobs c
where c.parent_job_id is not null
  and c.status in ('pending', 'running', 'awaiting_retry')
  and c.cancel_requested_at is null
  and c.user_id is not null
  and not exists (
    select 1 from public.job_waits w
    where w.child_job_id = c.id and w.status in ('pending', 'decided'))
order by c.created_at
limit %(limit)s
