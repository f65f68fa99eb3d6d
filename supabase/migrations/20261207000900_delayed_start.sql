-- Delayed starts: POST /workflows/start with `start_at` or `delay_seconds`.
--
-- jobs.scheduled_for: the earliest time the job may start (null: at once). It is written by
-- the job's insert itself (engine/db/sql/job_insert.sql), so the job and its time commit
-- together. The job is `pending` until then; its flow run is created at once in a Scheduled
-- state for that time (engine/dispatch.py), so Prefect starts it and its UI lists it as
-- upcoming. Until that time the job is healthy: maintenance counts its silence from
-- scheduled_for (jobs_in_flight.sql) and the slow-queue alert counts its wait from it
-- (alerts_queue.sql). The owner reads it through the table-level select grant and the
-- jobs_select_own policy (20261125000400); only the engine writes it.

alter table public.jobs add column if not exists scheduled_for timestamptz;

comment on column public.jobs.scheduled_for is
  'Earliest start of a delayed job (POST /workflows/start start_at or delay_seconds); '
  'null: start at once. Its deadline (deadline_at) counts from this time.';

-- The slow-queue alert and the in-flight checks read the pending jobs still waiting for
-- their time.
create index if not exists jobs_scheduled_for_idx on public.jobs (scheduled_for)
  where scheduled_for is not null and status = 'pending';

-- A delayed job's deadline counts from its start time, not from its creation: the same
-- trigger function as 20261207000800, from greatest(created_at, scheduled_for).
create or replace function public.jobs_set_deadline()
  returns trigger
  language plpgsql
  security definer
  set search_path = ''
as $$
begin
  if new.deadline_at is null then
    select greatest(coalesce(new.created_at, now()), new.scheduled_for)
           + make_interval(secs => (v.definition ->> 'timeout_seconds')::double precision)
      into new.deadline_at
    from public.workflow_versions v
    where v.workflow_id = new.workflow_id and v.version = new.workflow_version
      and jsonb_typeof(v.definition -> 'timeout_seconds') = 'number';
  end if;
  return new;
end;
$$;

revoke all on function public.jobs_set_deadline() from public, anon, authenticated;
