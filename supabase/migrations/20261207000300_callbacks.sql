-- Job callbacks: an `on_finish` webhook called once a job completes or fails.
--
-- jobs.on_finish is the callback target resolved when the job was started (the start
-- request's own target, else the workflow definition's): {url, secret_env, max_attempts,
-- retry_delay_seconds}. It names the environment variable holding the signing secret, never
-- the secret itself.
--
-- public.job_callbacks is the outbox. A trigger inserts exactly one row when a job with a
-- target reaches completed or failed, whatever ended it (the flow, maintenance giving up, a
-- cancel), in the same transaction as that status change. The row is keyed by (job_id,
-- end_number), the job's ends counted 1, 2, ...: a rerun that ends the job again owes a new
-- callback (retry_count would not do: a step's retries write it, and a rerun's can lower
-- it). Delivery (flows/callbacks.py) claims due rows with FOR UPDATE SKIP LOCKED and
-- records each attempt: pending (attempts so far, next_attempt_at), then delivered or failed
-- (after max_attempts).
--
-- The row snapshots what the callback reports (status, error, error kind, finish time), so a
-- later rerun does not change what an earlier callback says.
--
-- RLS: a job's owner may read the callbacks of their jobs; nobody else (anon: nothing).
-- Every write goes through the engine as the service.

alter table public.jobs add column if not exists on_finish jsonb;

create table if not exists public.job_callbacks (
  id bigint generated always as identity primary key,
  job_id uuid not null references public.jobs (id) on delete cascade,
  user_id uuid,
  end_number integer not null check (end_number >= 1),
  url text not null,
  secret_env text,
  max_attempts integer not null default 5 check (max_attempts between 1 and 50),
  retry_delay_seconds double precision not null default 10 check (retry_delay_seconds > 0),
  job_status text not null check (job_status in ('completed', 'failed')),
  error_message text,
  error_kind text,
  finished_at timestamptz not null default now(),
  status text not null default 'pending' check (status in ('pending', 'delivered', 'failed')),
  attempts integer not null default 0 check (attempts >= 0),
  next_attempt_at timestamptz not null default now(),
  last_attempt_at timestamptz,
  last_error text,
  response_code integer,
  delivered_at timestamptz,
  created_at timestamptz not null default now(),
  unique (job_id, end_number)
);

-- Delivery claims the due pending rows, oldest due first.
create index if not exists job_callbacks_due_idx
  on public.job_callbacks (next_attempt_at) where status = 'pending';
create index if not exists job_callbacks_user_id_idx on public.job_callbacks (user_id);

create or replace function public.jobs_enqueue_callback()
  returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  insert into public.job_callbacks (
    job_id, user_id, end_number, url, secret_env, max_attempts, retry_delay_seconds,
    job_status, error_message, error_kind, finished_at)
  values (
    -- The update holds the job row's lock, so no other end of this job counts at once.
    new.id, new.user_id,
    1 + (select count(*) from public.job_callbacks c where c.job_id = new.id),
    new.on_finish ->> 'url',
    new.on_finish ->> 'secret_env',
    coalesce((new.on_finish ->> 'max_attempts')::integer, 5),
    coalesce((new.on_finish ->> 'retry_delay_seconds')::double precision, 10),
    new.status,
    case when new.status = 'failed' then new.error_message end,
    case when new.status = 'failed' then new.state_history -> -1 ->> 'kind' end,
    coalesce(new.completed_at, now()))
  on conflict (job_id, end_number) do nothing;
  return null;
end;
$$;

comment on function public.jobs_enqueue_callback() is
  'AFTER trigger: one job_callbacks row when a job with on_finish reaches completed or failed.';

drop trigger if exists jobs_enqueue_callback on public.jobs;
create trigger jobs_enqueue_callback
  after update of status on public.jobs
  for each row
  when (new.status in ('completed', 'failed')
        and old.status is distinct from new.status
        and new.on_finish ->> 'url' is not null)
  execute function public.jobs_enqueue_callback();

revoke all on function public.jobs_enqueue_callback() from public, anon, authenticated;

alter table public.job_callbacks enable row level security;

revoke all on table public.job_callbacks from anon, authenticated;
revoke all on sequence public.job_callbacks_id_seq from anon, authenticated;
grant select on table public.job_callbacks to authenticated;
grant all on table public.job_callbacks to service_role;
grant all on sequence public.job_callbacks_id_seq to service_role;

drop policy if exists job_callbacks_select_own on public.job_callbacks;
create policy job_callbacks_select_own on public.job_callbacks
  as permissive
  for select
  to authenticated
  using (user_id = (select auth.uid()));
