-- Row level security on every table, plus revoked privileges as a second layer: Supabase's
-- default privileges grant everything in schema public to anon and authenticated, and a table
-- whose RLS is ever disabled by mistake must still not be writable through the API.
--
-- Who may do what:
--   jobs, job_events  authenticated users SELECT their own rows (user_id = auth.uid());
--                     all writes go through the engine as the service (owner / service_role).
--   workflows         authenticated users SELECT all definitions; anon nothing.
--   transformers      nobody but the service: configs name secrets' env vars and endpoints.
--
-- auth.uid() is wrapped in a scalar subquery so PostgreSQL evaluates it once per statement
-- instead of once per row (Supabase's RLS performance advice).

alter table public.workflows enable row level security;
alter table public.transformers enable row level security;
alter table public.jobs enable row level security;
alter table public.job_events enable row level security;

-- Privileges: start from nothing for the API roles, then grant back only reads.
revoke all on table public.workflows, public.transformers, public.jobs, public.job_events
  from anon, authenticated;
revoke all on sequence public.job_events_id_seq from anon, authenticated;

grant select on table public.workflows, public.jobs, public.job_events to authenticated;

grant all on table public.workflows, public.transformers, public.jobs, public.job_events
  to service_role;
grant all on sequence public.job_events_id_seq to service_role;

-- Trigger functions are never called directly by API roles.
revoke all on function public.set_touched_at(), public.job_events_copy_user_id(),
  public.job_events_append_only() from public, anon, authenticated;

create policy jobs_select_own on public.jobs
  as permissive
  for select
  to authenticated
  using (user_id = (select auth.uid()));

create policy job_events_select_own on public.job_events
  as permissive
  for select
  to authenticated
  using (user_id = (select auth.uid()));

create policy workflows_select_authenticated on public.workflows
  as permissive
  for select
  to authenticated
  using (true);

-- transformers: RLS enabled and no policy at all, so only roles that bypass RLS (the owner,
-- service_role) see rows.
