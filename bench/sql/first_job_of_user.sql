-- db_scale: one job of a user.
select created_at, id::text as id from public.jobs where user_id = %s limit 1
