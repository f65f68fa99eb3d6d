-- Wake workers at once: when a job receives its Prefect flow run id, notify channel
-- 'supaflow_flow_runs' with that id. NOTIFY is delivered when the writing transaction commits,
-- so a listener never hears about a flow run whose job row is not visible yet. Workers keep
-- polling Prefect as the fallback; a missed notification only costs latency.

create function public.jobs_notify_flow_run()
  returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  perform pg_notify('supaflow_flow_runs', new.prefect_flow_run_id::text);
  return null;
end;
$$;

comment on function public.jobs_notify_flow_run() is
  'AFTER trigger: NOTIFY supaflow_flow_runs with the flow run id a job was just given.';

create trigger jobs_notify_flow_run
  after update of prefect_flow_run_id on public.jobs
  for each row
  when (new.prefect_flow_run_id is not null
        and new.prefect_flow_run_id is distinct from old.prefect_flow_run_id)
  execute function public.jobs_notify_flow_run();

-- Like the other trigger functions: never called directly by API roles.
revoke all on function public.jobs_notify_flow_run() from public, anon, authenticated;
