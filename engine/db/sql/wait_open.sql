-- The open (pending or decided) wait of a job at one step, if any.
select *
from public.job_waits
where job_id = %(job_id)s and step_id = %(step_id)s and status in ('pending', 'decided')
