-- A pending wait whose deadline failed its job.
update public.job_waits
   set status = 'expired'
 where id = %(wait_id)s and status = 'pending'
returning id
