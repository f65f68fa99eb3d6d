-- db_scale: the heavy user (the first bench user) and a typical one (by email), most jobs first.
select u.id::text as id, count(j.id) as n
from auth.users u left join public.jobs j on j.user_id = u.id
where u.email in ('bench-000001@example.com', %s)
group by u.id order by count(j.id) desc
