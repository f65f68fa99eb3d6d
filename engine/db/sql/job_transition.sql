-- Move a job to a new status and record it, in one statement; with an `event_kind`, a second
-- event in the same statement (a step's start: one round trip per attempt, not two).
-- Guarded by the allowed source statuses so a late writer never overwrites a terminal state,
-- and by the flow run that owns the job.
-- Columns passed as NULL keep their value.
with updated as (
  update public.jobs j
     set status = %(status)s::text,
         current_step_id = coalesce(%(step_id)s::text, j.current_step_id),
         started_at = case when %(status)s::text = 'running' then coalesce(j.started_at, now())
                           else j.started_at end,
         completed_at = case when %(status)s::text in ('completed', 'failed') then now()
                             else j.completed_at end,
         retry_count = coalesce(%(retry_count)s::integer, j.retry_count),
         max_retries = coalesce(%(max_retries)s::integer, j.max_retries),
         next_retry_at = case when %(status)s::text = 'awaiting_retry' then %(next_retry_at)s::timestamptz
                              else null end,
         error_message = case when %(status)s::text in ('awaiting_retry', 'failed') then %(error_message)s::text
                              when %(status)s::text = 'completed' then null
                              else j.error_message end,
         final_result = case when %(status)s::text = 'completed' then %(final_result)s::jsonb
                             else j.final_result end,
         heartbeat_at = now(),
         -- A finished job waits for nothing (a wait's deadline, a cancel, a failed branch).
         waiting_for = case when %(status)s::text in ('completed', 'failed') then null
                            else j.waiting_for end,
         state_history = (
           select coalesce(jsonb_agg(h.e order by h.i), '[]'::jsonb)
           from jsonb_array_elements(
                  coalesce(j.state_history, '[]'::jsonb) || jsonb_build_array((%(entry)s::jsonb || jsonb_build_object('at', now())))
                ) with ordinality as h(e, i)
           where h.i > jsonb_array_length(coalesce(j.state_history, '[]'::jsonb)) + 1
                       - %(history_limit)s::integer
         )
   where j.id = %(job_id)s and j.status = any(%(from_statuses)s)
     -- Fencing: a flow run that was superseded by a resubmission may not move the job.
     and (%(flow_run_id)s::uuid is null or j.prefect_flow_run_id is null
          or j.prefect_flow_run_id = %(flow_run_id)s::uuid)
  returning j.id, j.user_id, j.status
),
status_event as (
  insert into public.job_events (job_id, user_id, kind, status, step_id, attempt, detail)
  select id, user_id, 'status', status, %(step_id)s::text, %(attempt)s::integer, (%(entry)s::jsonb || jsonb_build_object('at', now()))
  from updated
  returning job_id
),
-- Written after the status event (an unreferenced data-modifying CTE runs when the main
-- query is done), so the history reads "status running, then step_started".
extra_event as (
  insert into public.job_events (job_id, user_id, kind, status, step_id, attempt, detail)
  select id, user_id, %(event_kind)s::text, status, %(step_id)s::text, %(attempt)s::integer, %(event_detail)s::jsonb
  from updated
  where %(event_kind)s::text is not null
  returning job_id
),
-- A finished job's open waits end with it, so a rerun that reaches the step waits afresh.
-- SKIP LOCKED: never wait here for a decision in progress (it locks the wait, then the job).
ended_waits as (
  update public.job_waits w
     set status = 'expired'
   where w.id in (select o.id from public.job_waits o, updated
                   where o.job_id = updated.id and updated.status in ('completed', 'failed')
                     and o.status in ('pending', 'decided')
                   for update of o skip locked)
  returning w.id
)
select job_id from status_event
