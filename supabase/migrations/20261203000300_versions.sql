-- Immutable versions of workflows and transformers, and jobs pinned to the versions they
-- started with.
--
-- workflows and transformers keep their columns and meaning: the row is the current version.
-- Every change of what runs (a workflow's definition; a transformer's type, config or
-- target_function) numbers a new version (`version`, 1, 2, ...) and copies it into
-- workflow_versions / transformer_versions, which are never rewritten. A description alone
-- is not a new version.
--
-- workflows.default_version is the version new jobs run when they name none (NULL: the
-- latest), so a new version can be synced first and rolled out later; workflows.enabled false
-- refuses new jobs. A job records its workflow_version and the version of each transformer its
-- steps name (transformer_versions, {id: version}); every run of the job executes exactly
-- those rows.
--
-- RLS like the parents: authenticated users read workflow versions; transformer versions are
-- for the service only (configs name endpoints and secrets' variables).

alter table public.workflows
  add column version integer not null default 1 check (version >= 1),
  add column default_version integer check (default_version >= 1),
  add column enabled boolean not null default true;

alter table public.transformers
  add column version integer not null default 1 check (version >= 1);

create table public.workflow_versions (
  workflow_id text not null references public.workflows (id) on delete cascade,
  version integer not null check (version >= 1),
  description text,
  definition jsonb not null,
  content_hash text not null,
  created_at timestamptz not null default now(),
  primary key (workflow_id, version)
);

create table public.transformer_versions (
  transformer_id text not null references public.transformers (id) on delete cascade,
  version integer not null check (version >= 1),
  type text not null,
  description text,
  config jsonb not null,
  target_function text not null,
  content_hash text not null,
  created_at timestamptz not null default now(),
  primary key (transformer_id, version)
);


-- What a version is made of: a workflow's definition; a transformer's type, config and
-- target function. Its MD5 is the version's content_hash.
create function public.version_content(kind text, item jsonb)
  returns jsonb
  language sql
  immutable
  set search_path = ''
as $$
  select case when kind = 'workflows' then item -> 'definition'
              else jsonb_build_array(item -> 'type', item -> 'config', item -> 'target_function')
         end
$$;

-- One pair of trigger functions for both tables. Numbering: a new row is version 1; a change
-- of content is the next version; anything else keeps the version. A workflow's default
-- version must be one that exists. Recording: each new version is copied, once.
create function public.number_version()
  returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  if tg_op = 'INSERT' then
    new.version := 1;
  elsif public.version_content(tg_table_name, to_jsonb(new))
        is distinct from public.version_content(tg_table_name, to_jsonb(old)) then
    new.version := old.version + 1;
  else
    new.version := old.version;
  end if;
  -- Nested: a transformers row has no default_version, and PL/pgSQL prepares a statement
  -- only when it first runs it.
  if tg_table_name = 'workflows' then
    if new.default_version > new.version then
      raise exception 'workflow % has no version %', new.id, new.default_version
        using errcode = 'check_violation';
    end if;
  end if;
  return new;
end;
$$;

create function public.record_version()
  returns trigger
  language plpgsql
  set search_path = ''
as $$
declare
  content_hash text := md5(public.version_content(tg_table_name, to_jsonb(new))::text);
begin
  if tg_op = 'UPDATE' and new.version = old.version then
    return null;
  end if;
  if tg_table_name = 'workflows' then
    insert into public.workflow_versions (workflow_id, version, description, definition, content_hash)
    values (new.id, new.version, new.description, new.definition, content_hash);
  else
    insert into public.transformer_versions
      (transformer_id, version, type, description, config, target_function, content_hash)
    values (new.id, new.version, new.type, new.description, new.config, new.target_function,
            content_hash);
  end if;
  return null;
end;
$$;

-- What is there already becomes version 1. jsonb's text form is canonical (keys ordered), so
-- the same content always hashes the same.
insert into public.workflow_versions (workflow_id, version, description, definition, content_hash)
select w.id, 1, w.description, w.definition,
       md5(public.version_content('workflows', to_jsonb(w))::text)
from public.workflows w;

insert into public.transformer_versions
  (transformer_id, version, type, description, config, target_function, content_hash)
select t.id, 1, t.type, t.description, t.config, t.target_function,
       md5(public.version_content('transformers', to_jsonb(t))::text)
from public.transformers t;

-- Versions are history: never changed, removed only with their workflow or transformer.
create function public.versions_immutable()
  returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  raise exception '% rows are immutable', tg_table_name using errcode = 'restrict_violation';
end;
$$;

-- Jobs: the versions they run.
alter table public.jobs
  add column workflow_version integer,
  add column transformer_versions jsonb;

update public.jobs j
   set workflow_version = 1,
       transformer_versions = coalesce((
         select jsonb_object_agg(t.id, 1)
         from public.transformers t
         where t.id in (select s ->> 'transformer'
                        from jsonb_array_elements(w.definition -> 'steps') s)
       ), '{}'::jsonb)
  from public.workflows w
 where w.id = j.workflow_id;

alter table public.jobs
  add constraint jobs_workflow_version_fkey foreign key (workflow_id, workflow_version)
  references public.workflow_versions (workflow_id, version);

create index jobs_workflow_id_workflow_version_idx on public.jobs (workflow_id, workflow_version);

-- A job inserted without versions runs the workflow's default version (else its latest) and
-- the current version of each transformer that version's steps name. Security definer: it
-- reads transformers, which API roles may not, and it only fills the new row's two columns
-- (an insert the caller may not make is still refused by privileges and RLS).
create function public.jobs_pin_versions()
  returns trigger
  language plpgsql
  security definer
  set search_path = ''
as $$
begin
  if new.workflow_version is null then
    select coalesce(w.default_version, w.version) into new.workflow_version
    from public.workflows w
    where w.id = new.workflow_id;
  end if;
  if new.transformer_versions is null then
    select coalesce(jsonb_object_agg(t.id, t.version), '{}'::jsonb) into new.transformer_versions
    from public.transformers t
    where t.id in (select s ->> 'transformer'
                   from public.workflow_versions v,
                        jsonb_array_elements(v.definition -> 'steps') s
                   where v.workflow_id = new.workflow_id and v.version = new.workflow_version);
  end if;
  return new;
end;
$$;

-- The triggers: jobs_pin_versions, then the same three on workflows and on transformers (and
-- their version tables): <table>_number_version, <table>_record_version and
-- <table's versions>_immutable.
do $$
declare
  t text;
begin
  create trigger jobs_pin_versions
    before insert on public.jobs
    for each row execute function public.jobs_pin_versions();
  foreach t in array array['workflows', 'transformers'] loop
    execute format('create trigger %I before insert or update on public.%I '
                   'for each row execute function public.number_version()',
                   t || '_number_version', t);
    execute format('create trigger %I after insert or update on public.%I '
                   'for each row execute function public.record_version()',
                   t || '_record_version', t);
    execute format('create trigger %I before update on public.%I '
                   'for each row execute function public.versions_immutable()',
                   rtrim(t, 's') || '_versions_immutable', rtrim(t, 's') || '_versions');
  end loop;
end;
$$;

-- Row level security and privileges, as for the parents.
alter table public.workflow_versions enable row level security;
alter table public.transformer_versions enable row level security;

revoke all on table public.workflow_versions, public.transformer_versions from anon, authenticated;
grant select on table public.workflow_versions to authenticated;
grant all on table public.workflow_versions, public.transformer_versions to service_role;

revoke all on function public.number_version(), public.record_version(),
  public.versions_immutable(), public.jobs_pin_versions() from public, anon, authenticated;

create policy workflow_versions_select_authenticated on public.workflow_versions
  as permissive
  for select
  to authenticated
  using (true);
