-- Claim the callbacks due for an attempt (all jobs, or one job's), oldest due first.
-- FOR UPDATE SKIP LOCKED: two passes at once never claim the same row. The claim itself
-- counts the attempt and moves next_attempt_at past the attempt's lease, in the claiming
-- transaction: once it commits, another pass sees the row not due and leaves it alone while
-- the attempt is under way. A holder that dies mid-attempt loses the row when the lease ends.
with due as (
  select c.id
  from public.job_callbacks c
  where c.status = 'pending'
    and c.next_attempt_at <= now()
    and c.attempts < c.max_attempts
    and (%(job_id)s::uuid is null or c.job_id = %(job_id)s::uuid)
  order by c.next_attempt_at, c.id
  limit %(limit)s
  for update skip locked
),
claimed as (
  update public.job_callbacks c
     set attempts = c.attempts + 1,
         last_attempt_at = now(),
         next_attempt_at = now() + make_interval(secs => %(lease_seconds)s::double precision)
  from due
  where c.id = due.id
  returning c.*
)
select claimed.id, claimed.job_id::text as job_id, claimed.end_number, claimed.url,
       claimed.secret_env, claimed.max_attempts, claimed.retry_delay_seconds,
       claimed.job_status, claimed.error_message, claimed.error_kind, claimed.finished_at,
       claimed.attempts as attempt, j.workflow_id, j.workflow_version,
       case when claimed.job_status = 'completed' then j.final_result end as final_result
from claimed
join public.jobs j on j.id = claimed.job_id
order by claimed.next_attempt_at, claimed.id
