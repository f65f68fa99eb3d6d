select pg_catalog.pg_advisory_unlock(%(key)s)
