-- service_restarts: each time a supervisor restarted a process of the engine that had exited
-- (the local stack's `supaflow up` today), for the operators' metric
-- supaflow_service_restarts_total and for the record: which service, on which host, how it
-- had exited.
--
-- Operator-only, like alerts: RLS enabled with no policy and every privilege revoked from the
-- API roles.

create table public.service_restarts (
  id bigint generated always as identity primary key,
  service text not null,
  host text not null,
  exit_code integer,
  restarted_at timestamptz not null default now()
);

create index service_restarts_service_idx on public.service_restarts (service);

alter table public.service_restarts enable row level security;

revoke all on table public.service_restarts from anon, authenticated;
revoke all on sequence public.service_restarts_id_seq from anon, authenticated;

grant all on table public.service_restarts to service_role;
grant all on sequence public.service_restarts_id_seq to service_role;
