-- Every callback of one job, service path (tests and operators), oldest first.
select id, job_id::text as job_id, user_id::text as user_id, end_number, url, secret_env,
       max_attempts, retry_delay_seconds, job_status, error_message, error_kind, finished_at,
       status, attempts, next_attempt_at, last_attempt_at, last_error, response_code,
       delivered_at, created_at
from public.job_callbacks
where job_id = %(job_id)s::uuid
order by end_number, id
