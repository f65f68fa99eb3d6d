-- A delivery failed; the next maintenance pass tries again until max attempts.
update public.alerts
   set delivery_attempts = delivery_attempts + 1,
       last_delivery_error = left(%(error)s::text, 500)
 where id = %(id)s
