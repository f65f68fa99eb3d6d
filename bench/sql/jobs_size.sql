-- db_scale: the jobs table's size with its indexes, and its rows.
select pg_size_pretty(pg_total_relation_size('public.jobs')) as total, count(*) as n
from public.jobs
