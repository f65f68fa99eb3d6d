-- jobs_schedule_outcome, tightened: a job counts for a schedule only when it belongs to the
-- schedule's owner (both null for an operator schedule), and its key names the schedule id as
-- a well-formed UUID.
--
-- Before, any job whose Idempotency-Key looked like `schedule:<36 hex or dash>:` counted: a
-- user could pick another user's schedule id as their own job's key and move that schedule's
-- last_status and consecutive_failures, and a key of 36 dashes made the uuid cast fail inside
-- the job's terminal transition, so that job could never end.

create or replace function public.jobs_schedule_outcome()
  returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  update public.schedules s
     set last_status = new.status,
         consecutive_failures = case when new.status = 'completed' then 0
                                     else s.consecutive_failures + 1 end
   where s.id = split_part(new.idempotency_key, ':', 2)::uuid
     and s.user_id is not distinct from new.user_id;
  return null;
end;
$$;

drop trigger if exists jobs_schedule_outcome on public.jobs;
create trigger jobs_schedule_outcome
  after update of status on public.jobs
  for each row
  when (new.status in ('completed', 'failed')
        and old.status is distinct from new.status
        and new.idempotency_key
            ~ '^schedule:[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}:')
  execute function public.jobs_schedule_outcome();

revoke all on function public.jobs_schedule_outcome() from public, anon, authenticated;
