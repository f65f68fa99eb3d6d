-- Finished jobs by completion time.
--
-- Every maintenance pass (every 30 s) evaluates the failure-rate alert over the jobs that
-- finished inside its window (engine/db/sql/alerts_failure_window.sql). Without an index on
-- completed_at that is a full scan of jobs: 250 ms at 1M rows (bench/db_scale.py), growing
-- with the table. With this partial index it reads only the window's rows.
-- Partial on the finished statuses, the predicate that query (and the duration views) use.
create index jobs_finished_completed_at_idx on public.jobs (completed_at)
  where status in ('completed', 'failed');
