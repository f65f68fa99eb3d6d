-- Decide a pending wait of a running job: its decision (approvals), its output and who and
-- why. Returns the job's flow run to resume; nothing when the wait is not pending.
update public.job_waits w
   set status = 'decided',
       decision = %(decision)s::text,
       comment = %(comment)s::text,
       form = %(form)s::jsonb,
       output = %(output)s::jsonb,
       decided_by = %(decided_by)s::uuid,
       decided_at = %(decided_at)s::timestamptz,
       reason = %(reason)s::text
  from public.jobs j
 where w.id = %(wait_id)s and w.status = 'pending' and j.id = w.job_id and j.status in ('running', 'awaiting_retry')
returning w.id, w.job_id, w.step_id, w.kind, j.prefect_flow_run_id
