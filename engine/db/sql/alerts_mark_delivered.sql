-- A delivery succeeded. A resolution delivered first also covers the opening it never sent.
update public.alerts
   set delivered_at = coalesce(delivered_at, now()),
       resolution_delivered_at = case when %(event)s::text = 'resolved' then now()
                                      else resolution_delivered_at end,
       delivery_attempts = 0,
       last_delivery_error = null
 where id = %(id)s
