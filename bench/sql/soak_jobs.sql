-- soak: what the end checks read of these jobs: the status, the last state_history entry,
-- the resubmissions, the current flow run, and the statuses of its terminal status events
-- (`status` events moving it to completed or failed, in order).
select j.id::text as id, j.idempotency_key as key, j.status, j.resubmissions,
       j.prefect_flow_run_id::text as flow_run_id, j.error_message,
       j.state_history -> -1 as last_entry,
       coalesce(t.statuses, '{}') as terminal_events
from public.jobs j
left join lateral (
  select array_agg(e.status order by e.id) as statuses
  from public.job_events e
  where e.job_id = j.id and e.kind = 'status' and e.status in ('completed', 'failed')
) t on true
where j.id = any(%s::uuid[])
