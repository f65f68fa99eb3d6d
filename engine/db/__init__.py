"""The database layer: the job store with typed rows, SQL as named query files, the migration
runner and the embedded PostgreSQL."""
