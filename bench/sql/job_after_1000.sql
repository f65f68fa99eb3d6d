-- db_scale: the cursor of a user's page after 1,000 rows (the API's order).
select created_at, id::text as id from public.jobs where user_id = %s
order by created_at desc, id desc offset 1000 limit 1
