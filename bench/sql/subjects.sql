-- db_scale: what the cases run with, from the generated data: the heavy user (the first bench
-- user) and a typical one (by email) with their job counts, the cursor of the heavy user's page
-- after 1,000 rows (the API's order), and a job of the typical user.
with counted as (
  select u.id, count(j.id) as n, row_number() over (order by count(j.id) desc) as rank,
         count(*) over () as users
  from auth.users u left join public.jobs j on j.user_id = u.id
  where u.email in ('bench-000001@example.com', %s)
  group by u.id
), heavy as (
  select id, n from counted where rank = 1
), typical as (
  select id, n from counted where rank = users
), page as (
  select created_at, id from public.jobs where user_id = (select id from heavy)
  order by created_at desc, id desc offset 1000 limit 1
)
select heavy.id::text as heavy, heavy.n as heavy_n, typical.id::text as typical,
       typical.n as typical_n, (select created_at from page) as cursor_at,
       (select id::text from page) as cursor_id,
       (select id::text from public.jobs where user_id = typical.id limit 1) as job
from heavy, typical
