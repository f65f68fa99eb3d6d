"""The one local stack: what `supaflow up`, the benchmarks and the fault scripts run.

Parts, each started once and all stopped on `close()` in reverse order of their start:

- database: the embedded PostgreSQL of the data folder, a given DATABASE_URL, or a scratch
  database on a given server; then migrations and the definitions sync;
- Prefect: a given PREFECT_API_URL, or a Prefect server started here, on SQLite (in
  PREFECT_HOME) or on a PostgreSQL database;
- the work pools (`local-process` and the warm pool), the deployments of prefect.yaml;
- a process worker, a warm worker (`python -m worker --pool ... --limit ...`), the REST API,
  and local tokens.

The stack's environment (`env`) is every child's, and this process takes it into
`os.environ` too: it is a client of its own stack (tokens, Prefect client, maintenance). Run
one stack per process. With `isolated`, nothing of the caller's environment points the stack
elsewhere (every PREFECT_* variable and the database and auth settings are dropped), so a
bench stack runs on Prefect's defaults in a scratch folder.

    with LocalStack(root, isolated=True) as stack:
        stack.start_prefect()
        stack.start_database()
        ...
"""

from __future__ import annotations

import contextlib
import os
import socket
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Self

import psutil  # type: ignore[import-untyped,unused-ignore]

from cli.databases import EmbeddedPostgres, ScratchDatabase, asyncpg_url
from cli.restart_policy import RestartPolicy
from cli.services import (
    PYTHON,
    Service,
    bin_path,
    free_port,
    ignoring_signals,
    signals_deferred,
    wait_http,
)
from cli.stack_env import prefect_server_env, stack_environment
from cli.supervision import Supervisor
from cli.work_pools import PROCESS_POOL, WARM_WORKER_TYPE, create_work_pools
from engine.settings import get_settings

if TYPE_CHECKING:
    from cli.definition_files import SyncChange

WARM_DEPLOYMENT = "run-workflow/run-workflow-warm"


class LocalStack:
    """PostgreSQL, Prefect, pools, deployments, workers and the API of one data folder.

    `root` is the data folder (DATA_DIR; logs in `root/logs`). `env` adds settings for every
    process of the stack. `prefect_api_url` uses a running Prefect instead of starting one.
    """

    def __init__(
        self,
        root: Path,
        *,
        env: Mapping[str, str] | None = None,
        isolated: bool = False,
        api_port: int | None = None,
        prefect_port: int | None = None,
        prefect_api_url: str | None = None,
    ) -> None:
        self.root = root
        self.log_dir = root / "logs"
        self.api_port = api_port or free_port()
        self.api_url = f"http://127.0.0.1:{self.api_port}"
        self.external_prefect = prefect_api_url is not None
        port = prefect_port or free_port()
        self.prefect_api_url = prefect_api_url or f"http://127.0.0.1:{port}/api"
        self.prefect_port = port
        self.database_url = ""
        self.prefect_database_url = ""
        self.deployed: set[str] = set()
        self.embedded: EmbeddedPostgres | None = None
        self.services: dict[str, Service] = {}
        #: Services the supervisor starts again when they exit (see cli/supervision.py).
        self.restartable: set[str] = set()
        self._parts: list[tuple[str, Callable[[], None]]] = []
        self._caller_environ = dict(os.environ)
        self.env = stack_environment(root, self.prefect_api_url, self.api_url, isolated=isolated)
        self.env.update(env or {})
        if isolated:
            (root / "tmp").mkdir(parents=True, exist_ok=True)
        self._adopt()

    def _adopt(self) -> None:
        os.environ.update(self.env)
        get_settings.cache_clear()

    def _part(self, name: str, stop: Callable[[], None]) -> None:
        if any(n == name for n, _ in self._parts):
            raise RuntimeError(f"{name} is already part of the stack")
        self._parts.append((name, stop))

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def close(self) -> None:
        """Stop every part, the last started first; each even if another fails."""
        from engine.db.connection import close_shared_stores

        with ignoring_signals():
            while self._parts:
                name, stop = self._parts.pop()
                if name == "database":
                    close_shared_stores()  # this process's pools, before the server goes
                try:
                    stop()
                except Exception as exc:
                    print(f"stopping {name} failed: {type(exc).__name__}: {exc}", flush=True)
            os.environ.clear()
            os.environ.update(self._caller_environ)
            get_settings.cache_clear()

    # -- database ---------------------------------------------------------------------------

    def start_database(self, *, url: str | None = None, admin_url: str | None = None) -> str:
        """`url`, or a scratch database on the server of `admin_url`, or (neither) the
        embedded server of the data folder. Returns the database URL, also in `env`."""
        if url:
            self._part("database", lambda: None)
            self.database_url = url
        elif admin_url:
            scratch = ScratchDatabase(admin_url, "stack_engine")
            self._part("database", scratch.close)
            self.database_url = scratch.url
        else:
            embedded = self.embedded = EmbeddedPostgres(self.root)
            self._part("database", embedded.close)
            self.database_url = embedded.start()
        self.env["DATABASE_URL"] = self.database_url
        self._adopt()
        return self.database_url

    def migrate(self, *, bootstrap: bool = True) -> tuple[list[str], list[SyncChange]]:
        """Apply the migrations (after the local bootstrap) and sync the shipped definitions;
        (migrations applied now, definitions changed)."""
        from cli.definition_files import sync_definitions
        from engine.db.connection import shared_store
        from engine.db.migrate import apply_migrations

        applied = apply_migrations(self.database_url, bootstrap=bootstrap)
        return applied, sync_definitions(shared_store())

    # -- Prefect ----------------------------------------------------------------------------

    def start_prefect(
        self, *, database_url: str | None = None, admin_url: str | None = None
    ) -> Service:
        """Start the Prefect server (no wait; see `wait_prefect`): on the PostgreSQL database
        `database_url`, or on a scratch database on the server of `admin_url`, or (neither)
        on SQLite in PREFECT_HOME. Again after `stop("prefect-server")`: the same port and
        database."""
        if admin_url and not database_url:
            scratch = ScratchDatabase(admin_url, "stack_prefect")
            self._part("prefect-database", scratch.close)
            database_url = scratch.url
        if database_url:
            self.prefect_database_url = database_url
            self.env["PREFECT_SERVER_DATABASE_CONNECTION_URL"] = asyncpg_url(database_url)
            self._adopt()
        args = ["server", "start", "--host", "127.0.0.1", "--port", str(self.prefect_port)]
        return self.start_service(
            "prefect-server",
            [bin_path("prefect"), *args],
            prefect_server_env(),
            background=True,
            restart=True,
        )

    def prefect_database(self) -> str | None:
        """Where `supaflow up` puts its Prefect server: a database `prefect` in the embedded
        PostgreSQL (LOCAL_PREFECT_DATABASE=postgresql, the default), else None (SQLite, or
        PREFECT_SERVER_DATABASE_CONNECTION_URL when the caller set it)."""
        if self.embedded is None or get_settings().local_prefect_database != "postgresql":
            return None
        return self.embedded.database("prefect")

    def wait_prefect(self, timeout: float = 180) -> None:
        """Wait until the Prefect API answers."""
        wait_http(
            f"{self.prefect_api_url}/health",
            timeout=timeout,
            service=self.services.get("prefect-server"),
        )

    def create_pools(self, pools: Mapping[str, str] | None = None) -> None:
        """Create the work pools `{name: worker type}` that do not exist yet; by default the
        process pool and the warm pool prefect.yaml deploys to."""
        default = {PROCESS_POOL: "process", self.env["WARM_POOL"]: WARM_WORKER_TYPE}
        create_work_pools(self.prefect_api_url, pools or default)

    def deploy(self, names: Sequence[str] = (), *, wait: bool = True) -> None:
        """`prefect --no-prompt deploy` of prefect.yaml: the deployments `names`, or all.
        With `wait=False` it runs while the caller starts other parts (see `wait_deploy`)."""
        which = [a for n in names for a in ("--name", n)] or ["--all"]
        self.start_service("deploy", [bin_path("prefect"), "--no-prompt", "deploy", *which])
        self.deployed.update(names or ["--all"])
        if wait:
            self.wait_deploy()

    def wait_deploy(self, timeout: float = 300) -> None:
        """Wait for a `deploy(wait=False)` to finish; RuntimeError (with its log) if it failed."""
        service = self.services.pop("deploy", None)
        if service is None:
            return
        try:
            code = service.proc.wait(timeout)
        finally:
            service.stop()
        if code != 0:
            log = service.log_path.read_text(errors="replace")[-4000:]
            raise RuntimeError(f"prefect deploy failed (exit {code}):\n{log}")

    # -- processes --------------------------------------------------------------------------

    def start_engine(
        self,
        deployments: Sequence[str] = (),
        *,
        pools: Mapping[str, str] | None = None,
        process_worker: bool = True,
        warm_limit: int | None = None,
        api_env: Mapping[str, str] | None = None,
    ) -> None:
        """The work pools, the deployments of prefect.yaml (all by default; each once), the
        process worker, a warm worker of `warm_limit` runs and the API, started side by side;
        returns once the deploy is done and the API answers."""
        self.create_pools(pools)
        if not self.deployed.issuperset(deployments or ["--all"]):
            self.deploy(deployments, wait=False)
        if process_worker:
            self.start_process_worker()
        if warm_limit is not None:
            self.start_warm_worker(limit=warm_limit, query_seconds=10)
        self.start_api(api_env, wait=False)
        self.wait_deploy()
        self.wait_api()

    def start_service(
        self,
        name: str,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        *,
        background: bool = False,
        restart: bool = False,
    ) -> Service:
        """Start a child process of the stack with its environment (plus `env`); a
        `background` one (Prefect, workers) at LOCAL_BACKGROUND_NICE, below the API's. A
        `restart` one is started again by `supervise` when it exits."""
        if name in self.services:
            raise RuntimeError(f"{name} is already running")
        nice = get_settings().local_background_nice if background else 0
        service = Service(name, args, {**self.env, **(env or {})}, self.log_dir, niceness=nice)
        self.services[name] = service
        if restart:
            self.restartable.add(name)
        if not any(n == name for n, _ in self._parts):
            self._part(name, lambda: self.stop(name))
        return service

    def stop(self, name: str) -> None:
        """Stop the service `name` (and what it started); it may be started again."""
        service = self.services.pop(name, None)
        self.restartable.discard(name)
        if service is not None:
            service.stop()

    def restart(self, name: str) -> None:
        """Start the exited service `name` again, with the same command and environment."""
        self.services[name] = self.services[name].respawn()

    def start_process_worker(
        self,
        pool: str = PROCESS_POOL,
        *,
        limit: int | None = None,
        query_seconds: float | None = None,
        name: str = "process-worker",
    ) -> Service:
        """Prefect's process worker on `pool` (a new Python per flow run)."""
        args = [bin_path("prefect"), "worker", "start", "--pool", pool, "--type", "process"]
        if limit is not None:
            args += ["--limit", str(limit)]
        env = {}
        if query_seconds is not None:
            env = {
                "PREFECT_WORKER_QUERY_SECONDS": str(query_seconds),
                "PREFECT_WORKER_PREFETCH_SECONDS": "1",
            }
        return self.start_service(name, args, env, background=True, restart=True)

    def start_warm_worker(
        self,
        pool: str | None = None,
        *,
        limit: int = 10,
        query_seconds: float = 10.0,
        listen: bool = True,
        name: str = "warm-worker",
    ) -> Service:
        """A warm worker on `pool` (default: the stack's warm pool)."""
        args = [PYTHON, "-m", "worker", "--pool", pool or self.env["WARM_POOL"]]
        args += ["--limit", str(limit), "--query-seconds", f"{query_seconds:g}"]
        return self.start_service(
            name, args + ([] if listen else ["--no-listen"]), background=True, restart=True
        )

    def start_api(self, env: Mapping[str, str] | None = None, *, wait: bool = True) -> Service:
        """The REST API (`supaflow api`); `env` overrides settings of that process only."""
        from cli.local_auth import record_issuer

        args = [bin_path("supaflow"), "api", "--port", str(self.api_port)]
        api = self.start_service("api", args, env, restart=True)
        if self.env.get("LOCAL_AUTH") == "true":
            record_issuer(self.root, get_settings().jwt_issuer)
        if wait:
            self.wait_api()
        return api

    def wait_api(self, timeout: float = 90) -> None:
        """Wait until the REST API answers /health."""
        wait_http(f"{self.api_url}/health", timeout=timeout, service=self.services.get("api"))

    def mint_token(self, email: str, ttl_seconds: int = 24 * 3600) -> str:
        """A local access token for `email` (the user is created if missing)."""
        from cli.local_auth import mint_local_token

        return mint_local_token(email, ttl_seconds=ttl_seconds)

    def flow_run_process(self, flow_run_id: str, worker: str = "process-worker") -> int | None:
        """The pid of the process the process worker `worker` started for `flow_run_id`, if
        it is running (a fault script kills it)."""
        service = self.services.get(worker)
        for pid in service.descendants() if service else []:
            with contextlib.suppress(psutil.Error):
                proc = psutil.Process(pid)
                runs_flow = "prefect.engine" in " ".join(proc.cmdline())
                if runs_flow and proc.environ().get("PREFECT__FLOW_RUN_ID") == flow_run_id:
                    return pid
        return None

    def supervise(self, poll: float = 1.0, policy: RestartPolicy | None = None) -> str:
        """Restart services that exit (cli/supervision.py) until one that may not be
        restarted exits or one keeps dying (its name is returned), or a stop signal arrives
        (KeyboardInterrupt, raised here once the wait is over: see `signals_deferred`)."""
        supervisor = self.supervisor(policy)
        with signals_deferred() as stop:
            while not stop.wait(poll):
                if (name := supervisor.check(time.monotonic())) is not None:
                    return name
        raise KeyboardInterrupt("stop signal")

    def supervisor(self, policy: RestartPolicy | None = None) -> Supervisor:
        """A supervisor of this stack's services, recording each restart in the database."""
        return Supervisor(self, policy, record=self._record_restart)

    def _record_restart(self, name: str, exit_code: int | None) -> None:
        from engine.db.connection import shared_store
        from engine.db.restarts import record_restart

        try:
            record_restart(shared_store().pool, name, socket.gethostname(), exit_code)
        except Exception as exc:  # the database may be what is down; the restart still counts
            print(f"recording the restart of {name} failed: {type(exc).__name__}", flush=True)
