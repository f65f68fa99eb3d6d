"""The options of `python -m worker` and `supaflow worker`: defaults and help texts.

Both commands read them from here, so they cannot drift apart. This module imports nothing
heavy (no Prefect): the `supaflow` command line imports it to build its options.
"""

from __future__ import annotations

DEFAULT_POOL = "supaflow-warm"
DEFAULT_LIMIT = 10
DEFAULT_HEARTBEAT_SECONDS = 30.0
DEFAULT_DRAIN_SECONDS = 30.0
#: The deployment `--deploy` creates on the warm pool (mirrors prefect.yaml's run-workflow).
WARM_DEPLOYMENT = "run-workflow-warm"

DESCRIPTION = "Start a warm worker: flow runs execute in threads of this process."

#: Help text of each option, by parameter name (the flag is `--` + name with '-' for '_').
HELP: dict[str, str] = {
    "pool": "Work pool (created if missing).",
    "limit": "Most runs at once.",
    "name": "Worker name (default: random).",
    "query_seconds": "Fallback poll interval.",
    "heartbeat_seconds": "Seconds between the heartbeats of the runs it executes.",
    "drain_seconds": "At shutdown, how long running flows get to finish.",
    "no_listen": "Poll only (no LISTEN/NOTIFY wake-ups).",
    "deploy": f"Create the pool and the '{WARM_DEPLOYMENT}' deployment before starting.",
    "deploy_only": "Deploy, then exit.",
}
