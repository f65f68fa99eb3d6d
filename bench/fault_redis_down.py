"""Fault: the shared rate limiter's Redis goes down under load, and comes back.

The stack's API is started with REDIS_URL pointing at a private redis-server and a read limit
of --read-limit per minute. Each trial posts one job, kills the redis-server (SIGKILL), and
for --downtime seconds posts --jobs jobs and has a new user read GET /workflows more often
than its limit allows; then starts redis-server again on the same port. Property, per trial:
the API answered every request (no 5xx, no transport error) and kept limiting (429s once the
user spent its limit in the API's own count), every answer said which count it used
(`X-RateLimit-Scope`: local while Redis is down, shared after), /health said `local`
meanwhile, and every job posted completed.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx

if not __package__:  # run as a file: import `bench` from the project root
    sys.path[0] = str(Path(__file__).resolve().parents[1])

from bench.faults import FaultBench, FaultScript, TrialResult
from bench.private_redis import PrivateRedis

SCOPE = "X-RateLimit-Scope"


def _read(bench: FaultBench, token: str) -> tuple[str, str | None]:
    """GET /workflows as the user of `token`; (status or transport error, scope header)."""
    try:
        answer = httpx.get(
            f"{bench.stack.api_url}/workflows",
            headers={"Authorization": f"Bearer {token}"},
            timeout=10,
        )
    except httpx.HTTPError as exc:
        return type(exc).__name__, None
    return str(answer.status_code), answer.headers.get(SCOPE)


def _health_scope(bench: FaultBench) -> str | None:
    health = httpx.get(f"{bench.stack.api_url}/health", timeout=10).json()
    return (health.get("rate_limit") or {}).get("scope")


def _outage(bench: FaultBench, number: int, args: argparse.Namespace) -> dict[str, Any]:
    """Post jobs and read past the limit while Redis is down; what the API answered."""
    reader = bench.stack.mint_token(f"redis-reader-{number}-{time.time_ns()}@example.com")
    answers: Counter[tuple[str, str | None]] = Counter()
    posted: list[str] = []
    post_errors, stop_at = 0, time.monotonic() + args.downtime
    reads = 0
    while time.monotonic() < stop_at or reads < args.read_limit + 5:
        answers[_read(bench, reader)] += 1
        reads += 1
        if len(posted) < args.jobs and reads % 5 == 0:
            try:
                posted.append(bench.post_job({"trial": number, "posted": "during"}))
            except httpx.HTTPError:
                post_errors += 1
        time.sleep(0.02)
    return {
        "posted": posted,
        "post_errors": post_errors,
        "reads": dict(Counter({f"{s} {scope}": n for (s, scope), n in answers.items()})),
        "health_scope": _health_scope(bench),
    }


def _back_to_shared(bench: FaultBench, timeout: float) -> float:
    """Seconds until a limited answer says `shared` again (a new user's read each time)."""
    started = time.monotonic()
    reader = bench.stack.mint_token(f"redis-back-{time.time_ns()}@example.com")
    while _read(bench, reader)[1] != "shared":
        if time.monotonic() - started > timeout:
            raise RuntimeError("the limiter did not go back to Redis")
        time.sleep(0.2)
    return round(time.monotonic() - started, 1)


def trial(bench: FaultBench, number: int, args: argparse.Namespace) -> TrialResult:
    """Kill Redis under reads and starts; the API answers, limits locally, says so."""
    result, redis = TrialResult(number), args.redis
    before = bench.post_job({"trial": number, "posted": "before"})
    redis.kill()
    bench.fault()
    seen = _outage(bench, number, args)
    redis.start()
    seen["back_to_shared_seconds"] = _back_to_shared(bench, timeout=60)
    job_ids = [before, *seen.pop("posted")]
    bench.settle(result, job_ids, args.timeout)
    result.extra = seen
    statuses = {key.split(" ")[0] for key in seen["reads"]}
    scopes = {key.split(" ")[1] for key in seen["reads"]}
    result.ok = (
        result.held()
        and seen["post_errors"] == 0
        and statuses <= {"200", "429"}
        and "429" in statuses
        and scopes == {"local"}
        and seen["health_scope"] == "local"
    )
    return result


class RedisLimitedAPI:
    """The stack's API restarted with REDIS_URL at a private Redis and a small read limit for
    the trials (`args.redis`), and restarted as it was after them."""

    def __init__(self, bench: FaultBench, args: argparse.Namespace) -> None:
        self.bench, self.args = bench, args
        self.redis = args.redis = PrivateRedis(bench.stack.root / "redis")

    def __enter__(self) -> RedisLimitedAPI:
        self.redis.start()
        limits = f"start=6000/minute;read={self.args.read_limit}/minute;anon=6000/minute"
        self._restart_api({"REDIS_URL": self.redis.url, "RATE_LIMITS": limits})
        return self

    def __exit__(self, *_exc: object) -> None:
        self.redis.kill()
        self._restart_api({})

    def _restart_api(self, env: dict[str, str]) -> None:
        self.bench.stack.stop("api")
        self.bench.stack.start_api(env)


def setup(bench: FaultBench, args: argparse.Namespace) -> RedisLimitedAPI:
    """The fault's own part of the stack, around all its trials."""
    return RedisLimitedAPI(bench, args)


TITLE = "Redis of the shared rate limiter down under load"
OPTIONS = [
    ("--jobs", 3, "jobs posted while Redis is down", "jobs_posted_while_down"),
    ("--downtime", 4.0, "seconds Redis stays down", "downtime_seconds"),
    ("--read-limit", 20, "reads per minute per user", "read_limit_per_minute"),
    ("--delay", 1.0, "seconds of the `wait` step", "delay_seconds"),
]
main = FaultScript("fault_redis_down", TITLE, __doc__, trial, OPTIONS, setup=setup)

if __name__ == "__main__":
    sys.exit(main())
