-- Pending workflow waits whose child job has ended, or is gone: decided as the trigger
-- jobs_decide_parent_wait (migration 20261207000500) decides them, for what it could not see
-- (a child that ended before the trigger existed, a deleted child). %(job_id)s: only that
-- parent's waits (a parent's flow run arriving at its wait), or NULL: every parent
-- (maintenance). Returns each decided wait and its parent's flow run, to resume.
with due as (
  select w.id, w.job_id, w.user_id, w.step_id, w.child_job_id,
         c.id as child_id, c.status, c.final_result, c.error_message,
         c.state_history -> -1 ->> 'kind' as error_kind
  from public.job_waits w
  left join public.jobs c on c.id = w.child_job_id
  where w.kind = 'workflow' and w.status = 'pending'
    and (%(job_id)s::uuid is null or w.job_id = %(job_id)s::uuid)
    and (c.id is null or c.status in ('completed', 'failed'))
  order by w.created_at
  limit %(limit)s
  for update of w skip locked
), decided as (
  update public.job_waits w
     set status = 'decided',
         output = jsonb_build_object(
           'child_job_id', d.child_job_id::text,
           'status', coalesce(d.status, 'failed'),
           'final_result', case when d.status = 'completed' then d.final_result end,
           'error_message', case when d.child_id is null then 'the child job was deleted'
                                 when d.status = 'failed' then d.error_message end,
           'error_kind', case when d.status = 'failed' then d.error_kind end),
         decided_at = now(),
         reason = 'child'
    from due d
   where w.id = d.id
  returning w.id, w.job_id, w.user_id, w.step_id, w.output
), event as (
  insert into public.job_events (job_id, user_id, kind, step_id, detail)
  select d.job_id, d.user_id, 'wait_decided', d.step_id,
         jsonb_build_object('wait_id', d.id::text, 'wait_kind', 'workflow', 'reason', 'child',
                            'child_job_id', d.output ->> 'child_job_id',
                            'child_status', d.output ->> 'status', 'at', now())
  from decided d
)
select d.id, d.job_id, d.step_id, j.prefect_flow_run_id
from decided d
join public.jobs j on j.id = d.job_id
