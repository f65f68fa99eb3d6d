select pg_catalog.pg_advisory_lock(%(key)s)
