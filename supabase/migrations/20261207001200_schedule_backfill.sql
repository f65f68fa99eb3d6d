-- Schedule backfill: the maintenance pass makes a schedule's latest due firing when no
-- fire-schedule run made its job (Prefect dropped the run when another schedule of the
-- deployment changed, or the run crashed). Such a firing is counted under its own outcome,
-- `backfilled`, for supaflow_schedule_firings_total{outcome}.

alter table public.schedule_firing_counts
  drop constraint schedule_firing_counts_outcome_check;

alter table public.schedule_firing_counts
  add constraint schedule_firing_counts_outcome_check
  check (outcome in ('created', 'duplicate', 'missed', 'inactive', 'backfilled'));
