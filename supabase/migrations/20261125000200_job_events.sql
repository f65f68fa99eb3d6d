-- job_events: an append-only log of every job transition and step execution, the source for
-- the engine's audit trail and metrics. Rows are never changed: UPDATE is always refused and
-- DELETE only happens through ON DELETE CASCADE once the parent job is gone (job deleted, or
-- its user deleted from auth.users).

create table public.job_events (
  id bigint generated always as identity primary key,
  job_id uuid not null references public.jobs (id) on delete cascade,
  user_id uuid, -- copied from the job by a trigger so RLS needs no join
  at timestamptz not null default now(),
  kind text not null,
  status text,
  step_id text,
  attempt integer,
  detail jsonb not null default '{}'::jsonb
);

create index job_events_job_id_id_idx on public.job_events (job_id, id);
create index job_events_kind_at_idx on public.job_events (kind, at);

-- The owner of an event is the owner of its job, whatever the writer passed: RLS on job_events
-- relies on it. When the job is not visible yet (inserted by a sibling CTE of the same
-- statement) the writer's value is kept; the foreign key is still checked at statement end.
create function public.job_events_copy_user_id()
  returns trigger
  language plpgsql
  set search_path = ''
as $$
declare
  owner uuid;
begin
  select j.user_id into owner from public.jobs as j where j.id = new.job_id;
  if found then
    new.user_id := owner;
  end if;
  return new;
end;
$$;

create trigger job_events_copy_user_id
  before insert on public.job_events
  for each row execute function public.job_events_copy_user_id();

create function public.job_events_append_only()
  returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  if tg_op = 'UPDATE' then
    raise exception 'job_events is append-only: UPDATE is not allowed'
      using errcode = 'restrict_violation';
  end if;
  -- A cascading delete runs after the parent jobs row is deleted, so the job is gone then.
  if exists (select 1 from public.jobs as j where j.id = old.job_id) then
    raise exception 'job_events is append-only: DELETE is only allowed once job % is deleted',
      old.job_id
      using errcode = 'restrict_violation';
  end if;
  return old;
end;
$$;

create trigger job_events_append_only
  before update or delete on public.job_events
  for each row execute function public.job_events_append_only();
