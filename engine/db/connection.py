"""Which PostgreSQL the engine talks to, and one shared job store per process."""

from __future__ import annotations

import threading

from engine.db.store import JobStore
from engine.settings import Settings, get_settings

_stores: dict[str, JobStore] = {}
#: DATABASE_URL (or the embedded server's data dir) -> the URL it resolved to. Resolving the
#: embedded server starts it and checks its migrations: done once, not on every step.
_resolved: dict[tuple[str, str], str] = {}
_lock = threading.Lock()


def resolve_database_url(settings: Settings, *, migrate: bool = True) -> str:
    """DATABASE_URL, or the embedded local server in DATA_DIR when it is empty (migrated
    unless `migrate` is false)."""
    if settings.database_url:
        return settings.database_url
    from engine.db.embedded import ensure_local_database

    return ensure_local_database(settings, migrate=migrate)


def shared_store(settings: Settings | None = None) -> JobStore:
    """The process's job store for the configured database (pool opened once, reused)."""
    settings = settings or get_settings()
    key = (settings.database_url, str(settings.data_dir))
    url = _resolved.get(key)
    if url is None:
        url = _resolved[key] = resolve_database_url(settings)
    with _lock:
        store = _stores.get(url)
        if store is None:
            store = JobStore(
                url,
                min_size=settings.db_pool_min,
                max_size=settings.db_pool_max,
                history_limit=settings.state_history_limit,
            )
            _stores[url] = store
        return store


def close_shared_stores() -> None:
    """Close every pool this process opened (tests and shutdown)."""
    with _lock:
        for store in _stores.values():
            store.close()
        _stores.clear()
        _resolved.clear()
