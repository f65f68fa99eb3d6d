-- wait_final: which of these jobs are final (completed or failed).
select id::text as id from public.jobs where id = any(%s::uuid[]) and status = any(%s)
