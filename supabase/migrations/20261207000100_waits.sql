-- Wait steps: approvals, sleeps and events a job waits for, holding no worker.
--
-- jobs.waiting_for (null unless waiting): {kind, step, since, deadline} of the wait the job
-- is at; the job stays `running` meanwhile.
--
-- job_waits: one row per wait a job reaches. Life of a row:
--   pending  -> decided   a person approved or rejected, the event came, the sleep ended, or
--                         the deadline passed with on_timeout approve/reject (reason timeout)
--   decided  -> consumed  the job's flow run recorded the output as the step's output
--   pending  -> expired   the deadline passed and the job failed (on_timeout fail, events)
-- At most one open (pending or decided) row per job and step, so a rerun that redoes the
-- step waits afresh; run_number is the job's retry_count when the wait began.
--
-- RLS (read only; every write goes through the engine as the service):
--   approvals  visible to exactly the users allowed to decide them: the job's owner when the
--              step names no `deciders`; otherwise the users whose verified JWT claim is one
--              of the rule's values, the owner excluded when forbid_self_approval is set;
--   sleeps and events  visible to the job's owner.

alter table public.jobs add column if not exists waiting_for jsonb;

create table if not exists public.job_waits (
  id uuid primary key default gen_random_uuid(),
  job_id uuid not null references public.jobs (id) on delete cascade,
  user_id uuid references auth.users (id) on delete cascade, -- the job's owner
  step_id text not null,
  run_number integer not null default 0,
  kind text not null check (kind in ('approval', 'sleep', 'event')),
  spec jsonb not null default '{}'::jsonb, -- the wait step's definition (form_schema, ...)
  event_name text,
  deciders jsonb, -- approval rule {claim, in}; null: the job's owner decides
  forbid_self_approval boolean not null default false,
  status text not null default 'pending'
    check (status in ('pending', 'decided', 'consumed', 'expired')),
  created_at timestamptz not null default now(),
  deadline timestamptz,
  decision text check (decision in ('approve', 'reject')),
  comment text,
  form jsonb,
  output jsonb, -- the step's output once decided
  decided_by uuid,
  decided_at timestamptz,
  reason text check (reason in ('decision', 'timeout', 'event', 'woke')),
  consumed_at timestamptz,
  check (kind <> 'event' or event_name is not null),
  check ((status = 'pending') = (decided_at is null) or status = 'expired')
);

create unique index if not exists job_waits_open_idx
  on public.job_waits (job_id, step_id) where status in ('pending', 'decided');
create index if not exists job_waits_job_id_idx on public.job_waits (job_id);
-- The maintenance pass looks for pending waits whose deadline has passed.
create index if not exists job_waits_due_idx
  on public.job_waits (deadline) where status = 'pending' and deadline is not null;
-- Decided waits whose flow run was not resumed yet (Prefect was down).
create index if not exists job_waits_decided_idx
  on public.job_waits (decided_at) where status = 'decided';

-- True when the verified claims satisfy a decider rule {claim: "a.b", in: [...]}: the claim
-- at that dotted path is one of the values (a list claim: any of its items). jsonb
-- containment compares types too, so true never matches 1.
create or replace function public.job_wait_rule_allows(rule jsonb, claims jsonb)
  returns boolean
  language sql
  stable
  set search_path = ''
as $$
  with found as (
    select claims #> string_to_array(rule ->> 'claim', '.') as value
  )
  select coalesce((
    select case jsonb_typeof(f.value)
             when 'array' then exists (
               select 1 from jsonb_array_elements(f.value) as item(v)
               where jsonb_typeof(item.v) in ('string', 'number', 'boolean')
                 and (rule -> 'in') @> jsonb_build_array(item.v))
             when 'string' then (rule -> 'in') @> jsonb_build_array(f.value)
             when 'number' then (rule -> 'in') @> jsonb_build_array(f.value)
             when 'boolean' then (rule -> 'in') @> jsonb_build_array(f.value)
             else false
           end
    from found f
  ), false)
$$;

alter table public.job_waits enable row level security;

revoke all on table public.job_waits from anon, authenticated;
revoke all on function public.job_wait_rule_allows(jsonb, jsonb) from public, anon;
grant execute on function public.job_wait_rule_allows(jsonb, jsonb) to authenticated;
grant select on table public.job_waits to authenticated;
grant all on table public.job_waits to service_role;

drop policy if exists job_waits_select_deciders on public.job_waits;
create policy job_waits_select_deciders on public.job_waits
  as permissive
  for select
  to authenticated
  using (
    case
      when kind <> 'approval' or deciders is null then user_id = (select auth.uid())
      when forbid_self_approval and user_id = (select auth.uid()) then false
      else public.job_wait_rule_allows(deciders, (select auth.jwt()))
    end
  );
