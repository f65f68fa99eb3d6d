-- The signed-in user's jobs, newest first, keyset-paginated on (created_at, id).
-- RLS restricts rows to the caller; the user_id predicate lets the planner use the index.
select id, user_id, workflow_id, workflow_version, current_step_id, status, input_data, step_data, final_result,
       created_at, started_at, last_updated_at, completed_at, error_message, retry_count,
       max_retries, next_retry_at, state_history, waiting_for,
       parent_job_id, parent_step_id, -- a child job's parent (migration 20261207000500)
       deadline_at, -- the job timeout (migration 20261207000800)
       scheduled_for, -- a delayed start (migration 20261207000900)
       -- The latest callback (migration 20261207000300), read under the same RLS.
       (select jsonb_build_object('status', c.status, 'attempts', c.attempts,
                                  'next_attempt_at', c.next_attempt_at, 'last_error', c.last_error,
                                  'response_code', c.response_code, 'delivered_at', c.delivered_at)
        from public.job_callbacks c
        where c.job_id = jobs.id
        order by c.end_number desc
        limit 1) as callback
from public.jobs
where user_id = %(user_id)s
  and (%(status)s::text is null or status = %(status)s)
  and (%(workflow_id)s::text is null or workflow_id = %(workflow_id)s)
  and (%(cursor_at)s::timestamptz is null or (created_at, id) < (%(cursor_at)s, %(cursor_id)s::uuid))
order by created_at desc, id desc
limit %(limit)s
