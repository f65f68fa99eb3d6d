-- Callbacks whose last attempt was claimed but never recorded (its holder died) and whose
-- lease has ended: no attempt is left, so they end failed.
update public.job_callbacks
   set status = 'failed',
       last_error = coalesce(last_error, 'the last attempt recorded no answer')
 where status = 'pending'
   and attempts >= max_attempts
   and next_attempt_at <= now()
returning id
