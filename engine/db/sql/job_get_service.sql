-- One job by id, for the engine (no RLS).
select * from public.jobs where id = %(job_id)s
