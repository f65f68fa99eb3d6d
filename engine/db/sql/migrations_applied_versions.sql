select version from supabase_migrations.schema_migrations order by version
