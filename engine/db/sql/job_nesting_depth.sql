-- How deep a job is nested: 0 for a job started by the API, 1 for its child, and so on
-- (followed through jobs.parent_job_id, at most %(limit)s levels up).
with recursive up (id, parent_job_id, depth) as (
  select id, parent_job_id, 0 from public.jobs where id = %(job_id)s
  union all
  select p.id, p.parent_job_id, up.depth + 1
  from up join public.jobs p on p.id = up.parent_job_id
  where up.depth < %(limit)s
)
select coalesce(max(depth), 0) as depth from up
