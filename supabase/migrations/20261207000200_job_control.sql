-- Job control: cancel and rerun (POST /jobs/{id}/cancel, POST /jobs/{id}/rerun).
--
-- jobs.cancel_requested_at: when the job's owner asked to cancel it. A job with no live step
-- (pending, awaiting a rescheduled retry, or waiting) is failed at once, in the transaction
-- that sets it; a running job keeps it set until its flow run reaches the next step boundary
-- and fails the job with error kind `cancelled` (flows/job_control.py). Maintenance fails a
-- job whose run crashed while a cancel was requested, instead of resubmitting it. A rerun
-- clears it.
--
-- jobs.waiting_for: the wait a running job is in ({kind, step, since, deadline}; null when not
-- waiting). Owned by the waits migration (20261207000100); repeated here so that this
-- migration also applies alone.
--
-- Both columns are readable by the job's owner through the table-level select grant and the
-- jobs_select_own policy (20261125000400); only the engine writes them.

alter table public.jobs add column if not exists cancel_requested_at timestamptz;
alter table public.jobs add column if not exists waiting_for jsonb;

comment on column public.jobs.cancel_requested_at is
  'When the owner asked to cancel the job (null: never, or cleared by a rerun).';
