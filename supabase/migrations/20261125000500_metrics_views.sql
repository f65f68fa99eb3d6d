-- Metrics as SQL views over jobs and job_events: the specification's "Metrics Tracked", readable
-- with plain SQL (Supabase SQL editor, psql) and scraped by GET /metrics.
--
--   metrics_job_outcomes               jobs by status, completion and failure rate per workflow
--   metrics_job_failures               failed jobs per workflow, step and error kind, with rate
--   metrics_step_failures              failed step attempts per workflow, step, transformer, kind
--   metrics_job_durations              one row per finished job with its duration
--   metrics_job_duration_by_workflow   average / p50 / p95 job duration per workflow
--   metrics_step_durations             one row per finished step attempt with its duration
--   metrics_step_duration_by_transformer  attempts, outcome counts and step time per transformer
--   metrics_queue                      queue length: pending and awaiting_retry jobs, oldest age
--
-- Rates are fractions in [0, 1] of *finished* jobs (completed + failed); NULL when a workflow has
-- no finished job yet. Durations are seconds (double precision).
--
-- Views run with security_invoker, so they never widen what the caller's own privileges and RLS
-- allow; on top of that they are revoked from the API roles: metrics are for operators.

create view public.metrics_job_outcomes
  with (security_invoker = true)
as
select c.workflow_id,
       c.jobs,
       c.pending,
       c.running,
       c.awaiting_retry,
       c.completed,
       c.failed,
       c.completed + c.failed as finished,
       c.completed::float8 / nullif(c.completed + c.failed, 0) as completion_rate,
       c.failed::float8 / nullif(c.completed + c.failed, 0) as failure_rate
from (
  select j.workflow_id,
         count(*) as jobs,
         count(*) filter (where j.status = 'pending') as pending,
         count(*) filter (where j.status = 'running') as running,
         count(*) filter (where j.status = 'awaiting_retry') as awaiting_retry,
         count(*) filter (where j.status = 'completed') as completed,
         count(*) filter (where j.status = 'failed') as failed
  from public.jobs as j
  group by j.workflow_id
) as c;

comment on view public.metrics_job_outcomes is
  'Jobs per workflow by status; completion_rate and failure_rate are fractions of finished jobs.';

-- The step and error kind of a failed job come from its `failed` status event (written by the
-- engine with the failing step and kind); a failed job without that event counts as 'unknown'.
create view public.metrics_job_failures
  with (security_invoker = true)
as
with failed as (
  select j.workflow_id,
         coalesce(e.step_id, j.current_step_id) as step_id,
         coalesce(e.detail ->> 'kind', 'unknown') as error_kind
  from public.jobs as j
  left join lateral (
    select ev.step_id, ev.detail
    from public.job_events as ev
    where ev.job_id = j.id and ev.kind = 'status' and ev.status = 'failed'
    order by ev.id desc
    limit 1
  ) as e on true
  where j.status = 'failed'
), finished as (
  select j.workflow_id, count(*) as finished_jobs
  from public.jobs as j
  where j.status in ('completed', 'failed')
  group by j.workflow_id
)
select f.workflow_id,
       f.step_id,
       f.error_kind,
       count(*) as failed_jobs,
       n.finished_jobs,
       count(*)::float8 / nullif(n.finished_jobs, 0) as failure_rate
from failed as f
join finished as n on n.workflow_id = f.workflow_id
group by f.workflow_id, f.step_id, f.error_kind, n.finished_jobs;

comment on view public.metrics_job_failures is
  'Failed jobs per workflow, failing step and error kind; failure_rate is of the workflow''s '
  'finished jobs.';

create view public.metrics_step_failures
  with (security_invoker = true)
as
select j.workflow_id,
       e.step_id,
       e.detail ->> 'transformer_id' as transformer_id,
       coalesce(e.detail ->> 'kind', 'unknown') as error_kind,
       count(*) as failed_attempts
from public.job_events as e
join public.jobs as j on j.id = e.job_id
where e.kind = 'step_failed'
group by j.workflow_id, e.step_id, e.detail ->> 'transformer_id',
         coalesce(e.detail ->> 'kind', 'unknown');

comment on view public.metrics_step_failures is
  'Failed step attempts (each retry counts) per workflow, step, transformer and error kind.';

-- Duration is execution time (started_at to completed_at, or created_at when the job never
-- started); turnaround also counts the time spent queued.
create view public.metrics_job_durations
  with (security_invoker = true)
as
select j.id as job_id,
       j.workflow_id,
       j.status,
       extract(epoch from (j.completed_at - coalesce(j.started_at, j.created_at)))::float8
         as duration_seconds,
       extract(epoch from (j.completed_at - j.created_at))::float8 as turnaround_seconds,
       j.completed_at
from public.jobs as j
where j.status in ('completed', 'failed') and j.completed_at is not null;

comment on view public.metrics_job_durations is
  'One row per finished job: execution and turnaround time in seconds.';

create view public.metrics_job_duration_by_workflow
  with (security_invoker = true)
as
select d.workflow_id,
       count(*) filter (where d.status = 'completed') as completed_jobs,
       avg(d.duration_seconds) filter (where d.status = 'completed') as avg_duration_seconds,
       percentile_cont(0.5) within group (order by d.duration_seconds)
         filter (where d.status = 'completed') as p50_duration_seconds,
       percentile_cont(0.95) within group (order by d.duration_seconds)
         filter (where d.status = 'completed') as p95_duration_seconds,
       avg(d.turnaround_seconds) filter (where d.status = 'completed')
         as avg_turnaround_seconds,
       count(*) as finished_jobs,
       avg(d.duration_seconds) as avg_finished_duration_seconds
from public.metrics_job_durations as d
group by d.workflow_id;

comment on view public.metrics_job_duration_by_workflow is
  'Average, median and p95 duration of completed jobs per workflow (seconds).';

-- Durations are measured by the engine around the executor call and stored in the event's
-- detail.duration_ms; events without a numeric duration are left out.
create view public.metrics_step_durations
  with (security_invoker = true)
as
select e.id as event_id,
       e.job_id,
       j.workflow_id,
       e.step_id,
       e.detail ->> 'transformer_id' as transformer_id,
       case e.kind when 'step_succeeded' then 'succeeded' else 'failed' end as outcome,
       e.attempt,
       (e.detail ->> 'duration_ms')::float8 / 1000.0 as duration_seconds,
       e.at
from public.job_events as e
join public.jobs as j on j.id = e.job_id
where e.kind in ('step_succeeded', 'step_failed')
  and jsonb_typeof(e.detail -> 'duration_ms') = 'number';

comment on view public.metrics_step_durations is
  'One row per finished step attempt (succeeded or failed) with its execution time in seconds.';

create view public.metrics_step_duration_by_transformer
  with (security_invoker = true)
as
select d.transformer_id,
       count(*) as attempts,
       count(*) filter (where d.outcome = 'succeeded') as succeeded,
       count(*) filter (where d.outcome = 'failed') as failed,
       avg(d.duration_seconds) as avg_seconds,
       percentile_cont(0.5) within group (order by d.duration_seconds) as p50_seconds,
       percentile_cont(0.95) within group (order by d.duration_seconds) as p95_seconds,
       max(d.duration_seconds) as max_seconds
from public.metrics_step_durations as d
group by d.transformer_id;

comment on view public.metrics_step_duration_by_transformer is
  'Step execution time per transformer over every finished attempt (seconds).';

-- Both queue statuses always have a row, so an empty queue reads as 0 rather than as no data.
create view public.metrics_queue
  with (security_invoker = true)
as
select s.status,
       count(j.id) as jobs,
       min(j.created_at) as oldest_created_at,
       coalesce(extract(epoch from (now() - min(j.created_at)))::float8, 0) as oldest_age_seconds,
       count(j.id) filter (where j.next_retry_at < now()) as overdue_jobs,
       coalesce(extract(epoch from (now() - min(j.next_retry_at)
                                           filter (where j.next_retry_at < now())))::float8, 0)
         as max_overdue_seconds
from (values ('pending'), ('awaiting_retry')) as s (status)
left join public.jobs as j on j.status = s.status
group by s.status;

comment on view public.metrics_queue is
  'Queue length: pending and awaiting_retry jobs, the oldest one''s age, and retries overdue.';

revoke all on table public.metrics_job_outcomes, public.metrics_job_failures,
  public.metrics_step_failures, public.metrics_job_durations,
  public.metrics_job_duration_by_workflow, public.metrics_step_durations,
  public.metrics_step_duration_by_transformer, public.metrics_queue
  from anon, authenticated;

grant select on table public.metrics_job_outcomes, public.metrics_job_failures,
  public.metrics_step_failures, public.metrics_job_durations,
  public.metrics_job_duration_by_workflow, public.metrics_step_durations,
  public.metrics_step_duration_by_transformer, public.metrics_queue
  to service_role;
