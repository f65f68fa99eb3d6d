-- A wait's news on its job (running, or awaiting another branch's retry), in one statement:
-- jobs.waiting_for (set, or kept when %(set_waiting)s is false), a state_history entry and a
-- job event of kind %(event_kind)s.
with updated as (
  update public.jobs j
     set waiting_for = case when %(set_waiting)s::boolean then %(waiting_for)s::jsonb
                            else j.waiting_for end,
         heartbeat_at = now(),
         state_history = (
           select coalesce(jsonb_agg(h.e order by h.i), '[]'::jsonb)
           from jsonb_array_elements(
                  coalesce(j.state_history, '[]'::jsonb)
                  || jsonb_build_array(%(entry)s::jsonb || jsonb_build_object('at', now()))
                ) with ordinality as h(e, i)
           where h.i > jsonb_array_length(coalesce(j.state_history, '[]'::jsonb)) + 1
                       - %(history_limit)s::integer
         )
   where j.id = %(job_id)s and j.status in ('running', 'awaiting_retry')
  returning j.id, j.user_id, j.status
)
insert into public.job_events (job_id, user_id, kind, status, step_id, detail)
select id, user_id, %(event_kind)s::text, status, %(step_id)s::text,
       %(entry)s::jsonb || jsonb_build_object('at', now())
from updated
returning job_id
