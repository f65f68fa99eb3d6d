-- Create a parent's child job (migration 20261207000500): the parent's owner, its ids, the
-- pinned child workflow version, and the key `<parent>:child:<step>:<wait>`, so a second
-- insert for the same wait finds the first child instead. Its `created` event names the
-- parent. Run in the transaction that records the parent's wait.
with inserted as (
  insert into public.jobs (user_id, workflow_id, workflow_version, input_data, max_retries,
                           idempotency_key, parent_job_id, parent_step_id, state_history)
  select p.user_id, %(workflow_id)s::text, %(workflow_version)s::integer, %(input_data)s::jsonb,
         %(max_retries)s::integer, %(idempotency_key)s::text, p.id, %(parent_step_id)s::text,
         jsonb_build_array(jsonb_build_object('status', 'pending', 'at', now()))
  from public.jobs p
  where p.id = %(parent_job_id)s
  on conflict (user_id, idempotency_key) where idempotency_key is not null do nothing
  returning id, user_id, workflow_version
), event as (
  insert into public.job_events (job_id, user_id, kind, status, detail)
  select id, user_id, 'created', 'pending',
         jsonb_build_object('workflow_id', %(workflow_id)s::text,
                            'workflow_version', workflow_version,
                            'parent_job_id', %(parent_job_id)s::text,
                            'parent_step_id', %(parent_step_id)s::text)
  from inserted
)
select id, true as created from inserted
union all
select c.id, false
from public.jobs c
where c.parent_job_id = %(parent_job_id)s and c.idempotency_key = %(idempotency_key)s
  and not exists (select 1 from inserted)
