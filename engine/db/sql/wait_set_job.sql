-- Set (or clear, with null) what a job is waiting for, without an event: a flow run that
-- found its wait still open, or a job failed at a wait's deadline.
update public.jobs set waiting_for = %(waiting_for)s::jsonb where id = %(job_id)s
