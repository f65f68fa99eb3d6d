-- Schedules whose last jobs kept failing: at least %(threshold)s failures in a row.
select id, coalesce(name, id::text) as schedule, workflow_id, user_id, consecutive_failures,
       last_job_id, last_fired_for
from public.schedules
where consecutive_failures >= %(threshold)s
order by consecutive_failures desc, id
limit 100
