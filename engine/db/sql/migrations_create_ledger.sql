-- The migration ledger, created exactly as the Supabase CLI creates it
-- (supabase/cli pkg/migration/history.go), so `supabase db push` and the engine's runner share
-- one history: a version either tool recorded is never applied again by the other.
set local lock_timeout = '4s';
create schema if not exists supabase_migrations;
create table if not exists supabase_migrations.schema_migrations (version text not null primary key);
alter table supabase_migrations.schema_migrations add column if not exists statements text[];
alter table supabase_migrations.schema_migrations add column if not exists name text;
