-- load_concurrent: ids of 50 jobs of a user, for the reads.
select id::text as id from public.jobs where user_id = %s limit 50
