-- Every schedule (service path): what the Prefect sync pass makes Prefect match.
select id, user_id, name, workflow_id, workflow_version, kind, cron, interval_seconds, rrule, timezone,
       input_data, active, catch_up, prefect_schedule_id, created_at, updated_at, last_fired_for,
       last_job_id, last_status, consecutive_failures
from public.schedules
order by created_at, id
