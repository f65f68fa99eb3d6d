-- Record the child job a parent's workflow wait is waiting for.
update public.job_waits set child_job_id = %(child_job_id)s where id = %(wait_id)s
returning *
