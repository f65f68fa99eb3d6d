-- Record a cancel request (its time and a `cancel_requested` event naming who asked). A job
-- failed at once (`fail_now`) stops waiting too; its failure is the transition that follows
-- in the same transaction.
with updated as (
  update public.jobs
     set cancel_requested_at = coalesce(cancel_requested_at, now()),
         waiting_for = case when %(fail_now)s::boolean then null else waiting_for end
   where id = %(job_id)s
  returning id, user_id, status, cancel_requested_at
),
event as (
  insert into public.job_events (job_id, user_id, kind, status, detail)
  select id, user_id, 'cancel_requested', status,
         jsonb_build_object('by', %(by)s::text, 'action', %(action)s::text)
  from updated
)
select cancel_requested_at from updated
