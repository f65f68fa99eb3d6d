-- Columns the engine adds to jobs, beyond the specification's:
--   prefect_flow_run_id  the Prefect flow run executing the job (set when dispatched)
--   idempotency_key      the client's Idempotency-Key header for POST /workflows/start
--   request_hash         hash of the start request, to tell a replay from a conflicting reuse
--   dispatched_at        when the job was handed to Prefect (null: not yet dispatched)
--   resubmissions        how many times maintenance re-dispatched a lost or crashed run
--   heartbeat_at         last sign of life from the flow run executing the job

alter table public.jobs
  add column prefect_flow_run_id uuid,
  add column idempotency_key text,
  add column request_hash text,
  add column dispatched_at timestamptz,
  add column resubmissions integer not null default 0,
  add column heartbeat_at timestamptz,
  add constraint jobs_retry_count_check check (retry_count >= 0),
  add constraint jobs_max_retries_check check (max_retries >= 0),
  add constraint jobs_resubmissions_check check (resubmissions >= 0);

-- One job per (user, idempotency key): a replayed start request finds the first job.
create unique index jobs_user_id_idempotency_key_key
  on public.jobs (user_id, idempotency_key)
  where idempotency_key is not null;
