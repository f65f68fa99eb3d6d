-- Record (or clear) the id of the schedule's Prefect deployment schedule (service path).
-- It does not move updated_at (the trigger watches the schedule's own columns only).
update public.schedules
set prefect_schedule_id = %(prefect_schedule_id)s
where id = %(schedule_id)s
returning id
