-- Rerun a failed job: back to `pending` (guarded by engine.jobs.transitions.rerun_sources),
-- one more retry_count, the error and the end cleared, the outputs of the steps it redoes
-- dropped, a state_history entry and `status` + `rerun` events, in one statement.
-- dispatched_at is cleared and the old flow run id kept (it fences out every other writer)
-- until the rerun's own flow run is recorded (job_set_flow_run.sql) or claims the job;
-- jobs_rerun_undispatched.sql finds a rerun whose flow run could not be created.
with updated as (
  update public.jobs j
     set status = 'pending',
         retry_count = coalesce(j.retry_count, 0) + 1,
         error_message = null,
         final_result = null,
         next_retry_at = null,
         started_at = null,
         completed_at = null,
         cancel_requested_at = null,
         waiting_for = null,
         dispatched_at = null,
         heartbeat_at = now(),
         -- A fresh job deadline from now (migration 20261207000800; null: no timeout).
         deadline_at = (
           select now() + make_interval(secs => (v.definition ->> 'timeout_seconds')::double precision)
           from public.workflow_versions v
           where v.workflow_id = j.workflow_id and v.version = j.workflow_version
             and jsonb_typeof(v.definition -> 'timeout_seconds') = 'number'
         ),
         step_data = coalesce(j.step_data, '{}'::jsonb) - %(redo)s::text[],
         state_history = (
           select coalesce(jsonb_agg(h.e order by h.i), '[]'::jsonb)
           from jsonb_array_elements(
                  coalesce(j.state_history, '[]'::jsonb) || jsonb_build_array((%(entry)s::jsonb || jsonb_build_object('at', now())))
                ) with ordinality as h(e, i)
           where h.i > jsonb_array_length(coalesce(j.state_history, '[]'::jsonb)) + 1
                       - %(history_limit)s::integer
         )
   where j.id = %(job_id)s and j.status = any(%(from_statuses)s)
  returning j.id, j.user_id, j.status, j.retry_count
),
status_event as (
  insert into public.job_events (job_id, user_id, kind, status, detail)
  select id, user_id, 'status', status, (%(entry)s::jsonb || jsonb_build_object('at', now()))
  from updated
),
rerun_event as (
  insert into public.job_events (job_id, user_id, kind, status, detail)
  select id, user_id, 'rerun', status, %(detail)s::jsonb
  from updated
)
select id, retry_count from updated
