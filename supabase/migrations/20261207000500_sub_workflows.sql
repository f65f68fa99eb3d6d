-- Sub-workflows: a `workflow` step starts another workflow as a child job and waits for it.
--
-- jobs.parent_job_id / jobs.parent_step_id: on a child job, the job and the step that started
-- it (null on a job started by the API). The child has its parent's owner (user_id), so the
-- jobs_select_own policy (20261125000400) shows it to that owner and to nobody else; no new
-- policy is needed. The child's idempotency key is `<parent job id>:child:<step id>:<wait
-- id>`: one child per wait, so a resubmitted parent flow run finds its child again, and a
-- rerun that reaches the step afresh (a new wait) starts a new one.
--
-- job_waits gains the kind 'workflow' and child_job_id: the parent waits at the step (holding
-- no worker) until its child ends. Its row is decided (reason 'child') by the trigger below
-- in the same transaction as the child's terminal transition, whatever ended the child (its
-- flow, maintenance giving up, a cancel); output: {child_job_id, status, final_result,
-- error_message}. The parent's flow run is resumed by the child's flow hook, or by the
-- maintenance pass over decided waits that no run took up (flows/wait_deadlines.py).
--
-- RLS: unchanged. A workflow wait is read like a sleep or an event: by the job's owner only.

alter table public.jobs
  add column if not exists parent_job_id uuid references public.jobs (id) on delete set null,
  add column if not exists parent_step_id text;

comment on column public.jobs.parent_job_id is
  'The job whose workflow step started this child job (null: started by the API).';
comment on column public.jobs.parent_step_id is
  'The step of the parent job that started this child job.';

create index if not exists jobs_parent_job_id_idx
  on public.jobs (parent_job_id) where parent_job_id is not null;

alter table public.job_waits
  add column if not exists child_job_id uuid references public.jobs (id) on delete set null;

create index if not exists job_waits_child_job_id_idx
  on public.job_waits (child_job_id) where child_job_id is not null;

alter table public.job_waits drop constraint if exists job_waits_kind_check;
alter table public.job_waits add constraint job_waits_kind_check
  check (kind in ('approval', 'sleep', 'event', 'workflow'));
alter table public.job_waits drop constraint if exists job_waits_reason_check;
alter table public.job_waits add constraint job_waits_reason_check
  check (reason in ('decision', 'timeout', 'event', 'woke', 'child'));
alter table public.job_waits drop constraint if exists job_waits_workflow_child_check;
alter table public.job_waits add constraint job_waits_workflow_child_check
  check (kind = 'workflow' or child_job_id is null);

create or replace function public.jobs_decide_parent_wait()
  returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  with decided as (
    update public.job_waits w
       set status = 'decided',
           output = jsonb_build_object(
             'child_job_id', new.id::text,
             'status', new.status,
             'final_result', case when new.status = 'completed' then new.final_result end,
             'error_message', case when new.status = 'failed' then new.error_message end,
             'error_kind', case when new.status = 'failed'
                                then new.state_history -> -1 ->> 'kind' end),
           decided_at = now(),
           reason = 'child'
     where w.child_job_id = new.id and w.kind = 'workflow' and w.status = 'pending'
    returning w.id, w.job_id, w.user_id, w.step_id
  )
  insert into public.job_events (job_id, user_id, kind, step_id, detail)
  select d.job_id, d.user_id, 'wait_decided', d.step_id,
         jsonb_build_object('wait_id', d.id::text, 'wait_kind', 'workflow', 'reason', 'child',
                            'child_job_id', new.id::text, 'child_status', new.status,
                            'at', now())
  from decided d;
  return null;
end;
$$;

comment on function public.jobs_decide_parent_wait() is
  'AFTER trigger: a child job that completes or fails decides its parent''s workflow wait.';

drop trigger if exists jobs_decide_parent_wait on public.jobs;
create trigger jobs_decide_parent_wait
  after update of status on public.jobs
  for each row
  when (new.status in ('completed', 'failed')
        and old.status is distinct from new.status
        and new.parent_job_id is not null)
  execute function public.jobs_decide_parent_wait();

revoke all on function public.jobs_decide_parent_wait() from public, anon, authenticated;
