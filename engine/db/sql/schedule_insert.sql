-- A new schedule (migration 20261207001000). On the user path RLS lets a caller insert only
-- rows they own; on the service path user_id null is an operator schedule.
insert into public.schedules (user_id, name, workflow_id, workflow_version, kind, cron,
                              interval_seconds, rrule, timezone, input_data, active, catch_up)
values (%(user_id)s, %(name)s, %(workflow_id)s, %(workflow_version)s, %(kind)s, %(cron)s,
        %(interval_seconds)s, %(rrule)s, %(timezone)s, %(input_data)s, %(active)s, %(catch_up)s)
returning id, user_id, name, workflow_id, workflow_version, kind, cron, interval_seconds, rrule, timezone,
       input_data, active, catch_up, prefect_schedule_id, created_at, updated_at, last_fired_for,
       last_job_id, last_status, consecutive_failures
