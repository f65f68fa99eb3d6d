-- Admission without waiting on Prefect: the API only records a job; the admission dispatcher
-- (engine/admission.py) creates its flow run. A new pending job without a flow run notifies
-- channel 'supaflow_jobs_pending' (empty payload: the dispatcher claims pending jobs in
-- batches, so which job woke it does not matter). NOTIFY is delivered at commit, so the
-- dispatcher never wakes before the row is visible; it also polls as the fallback.

create function public.jobs_notify_pending()
  returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  perform pg_notify('supaflow_jobs_pending', '');
  return null;
end;
$$;

comment on function public.jobs_notify_pending() is
  'AFTER trigger: NOTIFY supaflow_jobs_pending when a job is recorded pending without a run.';

create trigger jobs_notify_pending
  after insert on public.jobs
  for each row
  when (new.status = 'pending' and new.prefect_flow_run_id is null)
  execute function public.jobs_notify_pending();

revoke all on function public.jobs_notify_pending() from public, anon, authenticated;

-- The dispatcher's claim reads the oldest undispatched pending jobs; without this index it
-- would scan every job ever recorded.
create index jobs_undispatched_created_at_idx on public.jobs (created_at)
  where status = 'pending' and prefect_flow_run_id is null;
