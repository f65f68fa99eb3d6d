-- One job, as the signed-in user: RLS hides other users' jobs.
select id, user_id, workflow_id, workflow_version, current_step_id, status, input_data, step_data, final_result,
       created_at, started_at, last_updated_at, completed_at, error_message, retry_count,
       max_retries, next_retry_at, state_history, waiting_for
from public.jobs
where id = %(job_id)s
