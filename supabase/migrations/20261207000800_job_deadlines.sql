-- Job deadlines: a workflow's `timeout_seconds` bounds the whole job, across step retries,
-- rescheduled retries, waits and resubmissions.
--
-- jobs.deadline_at: when the job must be finished by, the job's start plus the
-- `timeout_seconds` of the workflow version it is pinned to (null: that version sets none).
-- The trigger jobs_set_deadline sets it in the insert itself, after jobs_pin_versions pinned
-- the version (triggers of one event fire in name order), so every way a job is created gets
-- it and a caller may still set its own. A rerun of a failed job gets a fresh one, from the
-- rerun's time (engine/db/sql/job_rerun.sql); a resubmission keeps it.
--
-- Maintenance fails every unfinished job past its deadline with error kind `timeout`
-- (flows/job_deadlines.py, engine/db/sql/jobs_past_deadline.sql), and a flow run starts no
-- step past it. The owner reads it through the table-level select grant and the
-- jobs_select_own policy (20261125000400); only the engine writes it.

alter table public.jobs add column if not exists deadline_at timestamptz;

comment on column public.jobs.deadline_at is
  'When the job must be finished by (created_at, or its last rerun, + the workflow''s '
  'timeout_seconds); past it maintenance fails the job as timeout. Null: no job timeout.';

-- The maintenance pass looks for unfinished jobs past their deadline.
create index if not exists jobs_deadline_idx on public.jobs (deadline_at)
  where deadline_at is not null and status in ('pending', 'running', 'awaiting_retry');

create function public.jobs_set_deadline()
  returns trigger
  language plpgsql
  security definer
  set search_path = ''
as $$
begin
  if new.deadline_at is null then
    select coalesce(new.created_at, now())
           + make_interval(secs => (v.definition ->> 'timeout_seconds')::double precision)
      into new.deadline_at
    from public.workflow_versions v
    where v.workflow_id = new.workflow_id and v.version = new.workflow_version
      and jsonb_typeof(v.definition -> 'timeout_seconds') = 'number';
  end if;
  return new;
end;
$$;

create trigger jobs_set_deadline
  before insert on public.jobs
  for each row execute function public.jobs_set_deadline();

revoke all on function public.jobs_set_deadline() from public, anon, authenticated;
