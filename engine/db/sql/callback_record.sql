-- Record the outcome of one attempt. Fenced by the attempt number: only the attempt that
-- claimed the row (callback_claim_due.sql) may record it.
update public.job_callbacks
   set status = %(status)s::text,
       next_attempt_at = case when %(status)s::text = 'pending'
                              then now() + make_interval(secs => %(delay_seconds)s::double precision)
                              else next_attempt_at end,
       last_error = %(error)s::text,
       response_code = %(response_code)s::integer,
       delivered_at = case when %(status)s::text = 'delivered' then now() else delivered_at end
 where id = %(id)s and attempts = %(attempt)s and status = 'pending'
returning id
