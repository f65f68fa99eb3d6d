-- Current status of several jobs (service path).
select id::text as id, status from public.jobs where id = any(%(job_ids)s::uuid[])
