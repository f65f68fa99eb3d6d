-- alerts: what the maintenance flow found wrong (high failure rate, stalled jobs, slow queue or
-- maintenance, configuration lookup errors), kept as history.
--
-- An alert is identified by (kind, subject), e.g. ('high_failure_rate', 'audio_transcription_v1').
-- At most one alert per (kind, subject) is open (resolved_at is null): while the condition holds,
-- each pass refreshes last_seen_at; once it clears, resolved_at is set, and a later recurrence
-- opens a new row. delivered_at / resolution_delivered_at record the webhook deliveries of the
-- opening and of the resolution; delivery_attempts counts failed tries since the last success.
--
-- Operator-only: RLS enabled with no policy and every privilege revoked from the API roles.

create table public.alerts (
  id bigint generated always as identity primary key,
  kind text not null,
  subject text not null,
  severity text not null check (severity in ('info', 'warning', 'critical')),
  message text not null,
  detail jsonb not null default '{}'::jsonb,
  opened_at timestamptz not null default now(),
  last_seen_at timestamptz not null default now(),
  resolved_at timestamptz,
  delivered_at timestamptz,
  resolution_delivered_at timestamptz,
  delivery_attempts integer not null default 0 check (delivery_attempts >= 0),
  last_delivery_error text,
  check (resolved_at is null or resolved_at >= opened_at)
);

-- One open alert per (kind, subject): the deduplication key of the upsert.
create unique index alerts_open_kind_subject_key
  on public.alerts (kind, subject)
  where resolved_at is null;

-- GET /operator/alerts lists newest first.
create index alerts_opened_at_idx on public.alerts (opened_at desc, id desc);

-- Deliveries still owed: the opening, or the resolution of a delivered alert.
create index alerts_undelivered_idx
  on public.alerts (id)
  where delivered_at is null or (resolved_at is not null and resolution_delivered_at is null);

alter table public.alerts enable row level security;

revoke all on table public.alerts from anon, authenticated;
revoke all on sequence public.alerts_id_seq from anon, authenticated;

grant all on table public.alerts to service_role;
grant all on sequence public.alerts_id_seq to service_role;
