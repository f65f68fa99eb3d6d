-- A firing created (or found) its job: the schedule remembers it unless a later firing
-- already did (firings may run out of order after an outage), and the outcome is counted.
with counted as (
  insert into public.schedule_firing_counts as c (outcome, total)
  values (%(outcome)s, 1)
  on conflict (outcome) do update set total = c.total + 1, updated_at = now()
)
update public.schedules
   set last_fired_for = %(scheduled_for)s, last_job_id = %(job_id)s::uuid
 where id = %(schedule_id)s::uuid
   and (last_fired_for is null or last_fired_for <= %(scheduled_for)s)
returning id
