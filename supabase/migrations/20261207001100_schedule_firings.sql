-- Schedule firings: one job per firing, the outcome of each firing, and each schedule's last
-- job outcome.
--
-- A firing of schedule S for scheduled time T creates its job with the idempotency key
-- `schedule:<S>:<T as ISO 8601 UTC>` through the API's job insert (job_insert.sql). Operator
-- schedules own no user, so their jobs have user_id null: the one-job-per-(user, key) index
-- now treats nulls as equal, so a second firing of an operator schedule finds the first job
-- too (PostgreSQL 15: NULLS NOT DISTINCT).
--
-- schedule_firing_counts: how many firings ended each way (created, duplicate, missed,
-- inactive), for the Prometheus counter supaflow_schedule_firings_total{outcome}.
--
-- jobs_schedule_outcome: when a schedule's job reaches completed or failed, the schedule
-- row records last_status and counts consecutive_failures (0 again after a completed job);
-- the alert `schedule_failing` reads them.

drop index if exists public.jobs_user_id_idempotency_key_key;
create unique index jobs_user_id_idempotency_key_key
  on public.jobs (user_id, idempotency_key) nulls not distinct
  where idempotency_key is not null;

create table public.schedule_firing_counts (
  outcome text primary key
    check (outcome in ('created', 'duplicate', 'missed', 'inactive')),
  total bigint not null default 0 check (total >= 0),
  updated_at timestamptz not null default now()
);

alter table public.schedule_firing_counts enable row level security;
revoke all on table public.schedule_firing_counts from anon, authenticated;
grant all on table public.schedule_firing_counts to service_role;

create or replace function public.jobs_schedule_outcome()
  returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  update public.schedules
     set last_status = new.status,
         consecutive_failures = case when new.status = 'completed' then 0
                                     else consecutive_failures + 1 end
   where id = split_part(new.idempotency_key, ':', 2)::uuid;
  return null;
end;
$$;

comment on function public.jobs_schedule_outcome() is
  'AFTER trigger: a schedule''s job reached completed or failed; the schedule row records it.';

drop trigger if exists jobs_schedule_outcome on public.jobs;
create trigger jobs_schedule_outcome
  after update of status on public.jobs
  for each row
  when (new.status in ('completed', 'failed')
        and old.status is distinct from new.status
        and new.idempotency_key ~ '^schedule:[0-9a-f-]{36}:')
  execute function public.jobs_schedule_outcome();

revoke all on function public.jobs_schedule_outcome() from public, anon, authenticated;
