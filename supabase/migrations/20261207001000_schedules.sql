-- Recurring schedules: a workflow started again and again by Prefect's scheduler.
--
-- One row is one schedule: a cron expression, a fixed interval or an RRule (exactly the
-- column of its `kind` is set), read in `timezone`, starting the workflow (its default
-- version, or `workflow_version`) with the fixed `input_data`. Each row is realised as one
-- schedule of the fire-schedule deployment in Prefect (parameters {"schedule_id": id}, slug
-- the id); `prefect_schedule_id` is that schedule's id once Prefect has it (null: not yet,
-- the maintenance pass creates it). Every firing creates one job owned by the row's user.
--
-- user_id null is an operator schedule, owned by the app (definitions/schedules/*.json,
-- `name` the file's id, unique among them); its jobs belong to no user. The last-outcome
-- columns (last_fired_for, last_job_id, last_status, consecutive_failures) are written by the
-- firing flow only.
--
-- The API validates what the database cannot (the cron expression and RRule parse, the
-- timezone is an IANA name, the interval is not below the configured minimum, input_data
-- fits the workflow's input_schema); the checks here keep every row well formed whoever
-- writes it.
--
-- RLS: a signed-in user sees, creates, changes and deletes only their own schedules
-- (user_id = auth.uid()); the column grants keep the Prefect id and the firing columns to
-- the service; anon nothing.

create table public.schedules (
  id uuid primary key default gen_random_uuid(),
  user_id uuid references auth.users (id) on delete cascade,
  name text,
  workflow_id text not null references public.workflows (id),
  workflow_version integer check (workflow_version >= 1),
  kind text not null check (kind in ('cron', 'interval', 'rrule')),
  cron text,
  interval_seconds double precision,
  rrule text,
  timezone text not null default 'UTC' check (length(timezone) between 1 and 64),
  input_data jsonb not null default '{}'::jsonb check (jsonb_typeof(input_data) = 'object'),
  active boolean not null default true,
  catch_up text not null default 'latest' check (catch_up in ('none', 'latest')),
  prefect_schedule_id uuid,
  created_at timestamptz not null default now(),
  updated_at timestamptz not null default now(),
  last_fired_for timestamptz,
  last_job_id uuid,
  last_status text,
  consecutive_failures integer not null default 0 check (consecutive_failures >= 0),
  -- A pinned version must exist (a null version is the workflow's default at each firing).
  constraint schedules_workflow_version_fkey foreign key (workflow_id, workflow_version)
    references public.workflow_versions (workflow_id, version),
  -- Exactly the field of the schedule's kind is set.
  constraint schedules_kind_field check (
    (kind = 'cron') = (cron is not null)
    and (kind = 'interval') = (interval_seconds is not null)
    and (kind = 'rrule') = (rrule is not null)
  ),
  constraint schedules_cron_length check (length(cron) between 1 and 200),
  constraint schedules_rrule_length check (length(rrule) between 1 and 2000),
  constraint schedules_interval_positive check (interval_seconds > 0)
);

-- GET /schedules lists a user's schedules newest first with a (created_at, id) keyset cursor.
create index schedules_user_id_created_at_id_idx
  on public.schedules (user_id, created_at desc, id desc);
create index schedules_workflow_id_idx on public.schedules (workflow_id);
-- Operator schedules are named by their file's id, one row per name.
create unique index schedules_operator_name_key on public.schedules (name)
  where user_id is null;

-- updated_at says when the schedule itself last changed: the Prefect id and the firing
-- columns do not move it.
create trigger schedules_set_updated_at
  before update of name, workflow_id, workflow_version, kind, cron, interval_seconds, rrule,
                   timezone, input_data, active, catch_up
  on public.schedules
  for each row execute function public.set_touched_at('updated_at');

alter table public.schedules enable row level security;

revoke all on table public.schedules from anon, authenticated;
grant select, delete on table public.schedules to authenticated;
-- What a user may write: their schedule's rule, workflow and input, never the Prefect id or
-- the firing columns.
grant insert (user_id, name, workflow_id, workflow_version, kind, cron, interval_seconds,
              rrule, timezone, input_data, active, catch_up)
  on table public.schedules to authenticated;
grant update (name, workflow_id, workflow_version, kind, cron, interval_seconds, rrule,
              timezone, input_data, active, catch_up)
  on table public.schedules to authenticated;
grant all on table public.schedules to service_role;

create policy schedules_select_own on public.schedules
  as permissive
  for select
  to authenticated
  using (user_id = (select auth.uid()));

create policy schedules_insert_own on public.schedules
  as permissive
  for insert
  to authenticated
  with check (user_id = (select auth.uid()));

create policy schedules_update_own on public.schedules
  as permissive
  for update
  to authenticated
  using (user_id = (select auth.uid()))
  with check (user_id = (select auth.uid()));

create policy schedules_delete_own on public.schedules
  as permissive
  for delete
  to authenticated
  using (user_id = (select auth.uid()));
