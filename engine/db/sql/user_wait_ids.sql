-- The waits of a job the signed-in user can see: RLS shows approvals to their deciders.
select id
from public.job_waits
where job_id = %(job_id)s and kind = %(kind)s
