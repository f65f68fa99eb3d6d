-- The signed-in user's schedules, newest first, keyset-paginated on (created_at, id).
-- RLS restricts rows to the caller; the user_id predicate lets the planner use the index.
select id, user_id, name, workflow_id, workflow_version, kind, cron, interval_seconds, rrule, timezone,
       input_data, active, catch_up, prefect_schedule_id, created_at, updated_at, last_fired_for,
       last_job_id, last_status, consecutive_failures
from public.schedules
where user_id = %(user_id)s
  and (%(workflow_id)s::text is null or workflow_id = %(workflow_id)s)
  and (%(cursor_at)s::timestamptz is null or (created_at, id) < (%(cursor_at)s, %(cursor_id)s::uuid))
order by created_at desc, id desc
limit %(limit)s
