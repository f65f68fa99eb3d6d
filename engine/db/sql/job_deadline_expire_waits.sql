-- The pending waits of a job its deadline failed: nobody can decide them any more.
update public.job_waits
   set status = 'expired'
 where job_id = %(job_id)s and status = 'pending'
returning id
