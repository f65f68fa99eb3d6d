"""Whether the user a verified token names still exists: part of the one identity check.

A Supabase access token stays valid until it expires (an hour by default), also after its user
was deleted or banned. `api.deps.authenticated` therefore asks `UserDirectory.is_known` for
every request, so every user route answers such a token with the same 401.

Staleness: each process remembers an answer for AUTH_USER_CACHE_SECONDS (default 5), so a user
deleted or banned a moment ago can keep reading for at most that long in a process that has
just seen them. That window exposes nothing: their jobs are deleted with them (on delete
cascade) and a start still fails on the jobs' foreign key (401). Set it to 0 to look every
request up (one primary-key lookup on auth.users).
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable

from engine.db.pool import query
from engine.db.store import JobStore

#: Most answers a process remembers; beyond it the oldest is forgotten first.
MAX_REMEMBERED_USERS = 10_000


class UserDirectory:
    """Answers "is this user id a current user?", remembering answers for `cache_seconds`.

    `lookup` asks the database; both answers are remembered (a token naming an unknown user
    carries a valid signature, so its holder cannot mint new unknown ids to defeat the cache).
    """

    def __init__(
        self,
        lookup: Callable[[str], bool],
        *,
        cache_seconds: float,
        max_entries: int = MAX_REMEMBERED_USERS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if cache_seconds < 0:
            raise ValueError("cache_seconds must not be negative")
        self._lookup = lookup
        self._ttl = cache_seconds
        self._max_entries = max_entries
        self._clock = clock
        self._lock = threading.Lock()
        self._answers: OrderedDict[str, tuple[float, bool]] = OrderedDict()

    def is_known(self, user_id: str) -> bool:
        """Whether `user_id` is a current user (remembered, or looked up now)."""
        if self._ttl == 0:
            return self._lookup(user_id)
        now = self._clock()
        with self._lock:
            remembered = self._answers.get(user_id)
            if remembered is not None and remembered[0] > now:
                return remembered[1]
        known = self._lookup(user_id)
        with self._lock:
            self._answers[user_id] = (now + self._ttl, known)
            self._answers.move_to_end(user_id)
            while len(self._answers) > self._max_entries:
                self._answers.popitem(last=False)
        return known


def user_is_known(store: JobStore, user_id: str) -> bool:
    """Ask the database whether `user_id` is a current user (engine/db/sql/auth_user_known)."""
    with store.pool.connection() as conn:
        row = conn.execute(query("auth_user_known"), {"user_id": user_id}).fetchone()
    return bool(row and row["known"])


def store_directory(store_of: Callable[[], JobStore], cache_seconds: float) -> UserDirectory:
    """A directory backed by auth.users in the store `store_of` returns (the app's, at run
    time: the store is created when the app starts, after the directory)."""
    return UserDirectory(
        lambda user_id: user_is_known(store_of(), user_id), cache_seconds=cache_seconds
    )
