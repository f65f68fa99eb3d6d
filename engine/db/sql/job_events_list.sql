-- Every event of one job, in order (service path).
select * from public.job_events where job_id = %(job_id)s order by id
