-- The flow run recorded a decided wait's output as its step's output.
update public.job_waits
   set status = 'consumed', consumed_at = now()
 where id = %(wait_id)s and status = 'decided'
returning id
