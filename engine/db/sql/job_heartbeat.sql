-- Record that a flow run is alive and working on the job.
update public.jobs set heartbeat_at = now() where id = %(job_id)s
