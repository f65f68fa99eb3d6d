"""The `supaflow` command line: migrate, definitions, local tokens, the local stack."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from engine.errors import DefinitionError
from engine.settings import get_settings
from worker.command_options import (
    DEFAULT_DRAIN_SECONDS,
    DEFAULT_HEARTBEAT_SECONDS,
    DEFAULT_LIMIT,
    DEFAULT_POOL,
    HELP,
)

app = typer.Typer(no_args_is_help=True, help="Workflow engine for Supabase, run by Prefect.")
definitions_app = typer.Typer(no_args_is_help=True, help="Check and sync workflow definitions.")
app.add_typer(definitions_app, name="definitions")
console = Console(stderr=True)


def _database_url(local_bootstrap: bool | None) -> tuple[str, bool]:
    from engine.db.connection import resolve_database_url

    settings = get_settings()
    # Not migrated on the way: `migrate` applies them itself and says which.
    url = resolve_database_url(settings, migrate=False)
    # The Supabase-compatibility bootstrap is for local PostgreSQL only; on a real Supabase
    # database the bootstrap refuses to run anyway.
    bootstrap = (not settings.database_url) if local_bootstrap is None else local_bootstrap
    return url, bootstrap


@app.command()
def migrate(
    local: Annotated[
        bool | None,
        typer.Option(
            "--local/--supabase",
            help="Apply the local Supabase-compatibility bootstrap first "
            "(default: only for the embedded database).",
        ),
    ] = None,
) -> None:
    """Apply supabase/migrations in order, recording them where `supabase db push` does."""
    from engine.db.migrate import apply_migrations

    url, bootstrap = _database_url(local)
    applied = apply_migrations(url, bootstrap=bootstrap)
    console.print(f"applied {len(applied)} migration(s): {', '.join(applied) or 'none pending'}")


@definitions_app.command("validate")
def definitions_validate(
    directory: Annotated[Path, typer.Option(help="Definitions folder.")] = Path("definitions"),
) -> None:
    """Check every workflow, transformer and schedule file; list every problem."""
    from cli.definition_files import load_definitions

    loaded = load_definitions(directory)
    if loaded.problems:
        for p in loaded.problems:
            console.print(f"[red]✗[/red] {p.location}: {p.message}")
        raise typer.Exit(code=1)
    console.print(
        f"[green]✓[/green] {len(loaded.workflows)} workflow(s), "
        f"{len(loaded.transformers)} transformer(s), {len(loaded.schedules)} schedule(s) valid"
    )


def _refused(exc: DefinitionError) -> typer.Exit:
    for p in exc.problems:
        console.print(f"[red]✗[/red] {p.location}: {p.message}")
    console.print(f"[red]{exc.message}[/red]")
    return typer.Exit(code=1)


@definitions_app.command("sync")
def definitions_sync(
    directory: Annotated[Path, typer.Option(help="Definitions folder.")] = Path("definitions"),
) -> None:
    """Upsert the definitions into the tables; refuses (and lists why) if any is invalid.
    Prints each row it changed: added, new version, or updated (description or flags)."""
    from cli.definition_files import sync_definitions
    from engine.db.connection import shared_store

    try:
        changes = sync_definitions(shared_store(), directory)
    except DefinitionError as exc:
        raise _refused(exc) from exc
    for change in changes:
        console.print(str(change), highlight=False)
    console.print(f"synced: {len(changes)} changed, the rest unchanged")


@definitions_app.command("diff")
def definitions_diff(
    directory: Annotated[Path, typer.Option(help="Definitions folder.")] = Path("definitions"),
) -> None:
    """What `definitions sync` would change, with a diff of each row's JSON; writes nothing."""
    from cli.definition_files import diff_definitions
    from engine.db.connection import shared_store

    try:
        lines = diff_definitions(shared_store(), directory)
    except DefinitionError as exc:
        raise _refused(exc) from exc
    for line in lines or ["nothing to sync: the tables match the files"]:
        sys.stdout.write(line + "\n")


@definitions_app.command("history")
def definitions_history(
    definition_id: Annotated[str, typer.Argument(help="A workflow or transformer id.")],
) -> None:
    """Every version of the workflow or transformer ID, oldest first."""
    from engine.db.connection import shared_store

    rows = shared_store().definition_history(definition_id)
    if not rows:
        console.print(f"no workflow or transformer '{definition_id}'")
        raise typer.Exit(code=1)
    for r in rows:
        marks = [m for m, on in (("current", r["current"]), ("default", r["is_default"])) if on]
        sys.stdout.write(
            f"{r['kind']} {definition_id} v{r['version']}  {r['created_at']:%Y-%m-%d %H:%M:%S%z}"
            f"  {r['content_hash'][:12]}  {' '.join(marks)}\n"
        )


@definitions_app.command("schema")
def definitions_schema(
    output: Annotated[Path, typer.Option(help="Where to write the JSON Schema.")] = Path(
        "definitions/schema/workflow.schema.json"
    ),
) -> None:
    """Write the JSON Schema of the workflow definition format (for editors)."""
    from engine.definitions.schema import write_schema

    write_schema(output)
    console.print(f"wrote {output}")


@app.command()
def token(
    email: Annotated[str, typer.Argument(help="The local user's email.")],
    ttl: Annotated[int, typer.Option(help="Lifetime in seconds.")] = 3600,
) -> None:
    """Mint a local development access token (creates the user in auth.users).

    Local only: it is signed with the key in DATA_DIR, which only a local stack trusts.
    """
    from cli.local_auth import mint_local_token

    sys.stdout.write(mint_local_token(email, ttl_seconds=ttl) + "\n")


@app.command()
def up(
    demo: Annotated[bool, typer.Option(help="Run the offline demo job once started.")] = True,
    wait: Annotated[
        bool, typer.Option(help="Keep the stack running until Ctrl-C (off: stop after demo).")
    ] = True,
    api_port: Annotated[int, typer.Option(help="Port of the REST API.")] = 8000,
    prefect_port: Annotated[int, typer.Option(help="Port of the local Prefect server.")] = 4200,
) -> None:
    """Start the whole engine locally and run the offline demo workflow through the API."""
    from cli.up import run_stack

    code = run_stack(demo=demo, wait=wait, api_port=api_port, prefect_port=prefect_port)
    raise typer.Exit(code=code)


@app.command()
def api(
    host: Annotated[str, typer.Option()] = "127.0.0.1",
    port: Annotated[int, typer.Option()] = 8000,
) -> None:
    """Serve the REST API with uvicorn."""
    import uvicorn

    from api.app import create_app
    from api.server import SERVER_OPTIONS
    from engine.logging_json import uvicorn_log_config

    log_config = uvicorn_log_config("info") if get_settings().log_json else None
    if log_config is None:
        uvicorn.run(create_app(), host=host, port=port, log_level="info", **SERVER_OPTIONS)
    else:
        uvicorn.run(create_app(), host=host, port=port, log_config=log_config, **SERVER_OPTIONS)


@app.command()
def dispatcher() -> None:
    """Hand pending jobs to Prefect (admission), woken by NOTIFY, until Ctrl-C or SIGTERM.

    The API runs one in its own process unless API_ADMISSION=false; run this instead where
    the API hosts should not talk to Prefect. Several at once are safe (SKIP LOCKED)."""
    import threading

    from cli.services import stop_on_signals
    from engine.admission import PendingDispatcher
    from engine.db.connection import shared_store
    from engine.dispatch import RunStarter

    settings = get_settings()
    starter = RunStarter.own_client(settings.prefect_deployment, fail_fast=True)
    loop = PendingDispatcher.from_settings(shared_store(settings), starter.try_start, settings)
    with stop_on_signals():
        loop.start()
        console.print("dispatching pending jobs; Ctrl-C to stop")
        try:
            threading.Event().wait()
        except KeyboardInterrupt:
            pass
        finally:
            loop.stop()
            starter.close()
    console.print(f"dispatched {loop.dispatched}, left pending {loop.deferred}")


@app.command()
def deploy() -> None:
    """Create the work pools and deploy every deployment of prefect.yaml to PREFECT_API_URL.

    The pools are `local-process` (process worker) and WARM_POOL (the warm worker's type,
    which `prefect work-pool create` does not know); prefect.yaml's paths are this checkout
    and this interpreter (SUPAFLOW_PROJECT_DIR, SUPAFLOW_PYTHON).
    """
    import os
    import subprocess

    from prefect.settings import PREFECT_API_URL

    from cli.services import bin_path
    from cli.stack_env import deploy_environment
    from cli.work_pools import PROCESS_POOL, WARM_WORKER_TYPE, create_work_pools
    from engine.settings import PROJECT_ROOT

    api_url = PREFECT_API_URL.value()
    if not api_url:
        console.print("PREFECT_API_URL is not set: point it at the Prefect API to deploy to")
        raise typer.Exit(2)
    warm_pool = get_settings().warm_pool
    create_work_pools(api_url, {PROCESS_POOL: "process", warm_pool: WARM_WORKER_TYPE})
    env = {**os.environ, **deploy_environment(dict(os.environ), warm_pool)}
    command = [bin_path("prefect"), "--no-prompt", "deploy", "--all"]
    raise typer.Exit(subprocess.run(command, cwd=PROJECT_ROOT, env=env, check=False).returncode)


@app.command("print-settings")
def print_settings() -> None:
    """Show the effective settings (secrets hidden)."""
    sys.stdout.write(json.dumps(get_settings().model_dump(mode="json"), indent=2) + "\n")


@app.command("worker")
def warm_worker(
    pool: Annotated[str, typer.Option(help=HELP["pool"])] = DEFAULT_POOL,
    limit: Annotated[int, typer.Option(help=HELP["limit"])] = DEFAULT_LIMIT,
    name: Annotated[str | None, typer.Option(help=HELP["name"])] = None,
    query_seconds: Annotated[float | None, typer.Option(help=HELP["query_seconds"])] = None,
    heartbeat_seconds: Annotated[
        float, typer.Option(help=HELP["heartbeat_seconds"])
    ] = DEFAULT_HEARTBEAT_SECONDS,
    drain_seconds: Annotated[
        float, typer.Option(help=HELP["drain_seconds"])
    ] = DEFAULT_DRAIN_SECONDS,
    no_listen: Annotated[bool, typer.Option("--no-listen", help=HELP["no_listen"])] = False,
    deploy: Annotated[bool, typer.Option("--deploy", help=HELP["deploy"])] = False,
    deploy_only: Annotated[bool, typer.Option("--deploy-only", help=HELP["deploy_only"])] = False,
) -> None:
    """Start a warm worker: flow runs execute in threads of this process (`python -m worker`)."""
    from worker.serve import run_command

    run_command(
        pool=pool,
        limit=limit,
        name=name,
        query_seconds=query_seconds,
        heartbeat_seconds=heartbeat_seconds,
        drain_seconds=drain_seconds,
        no_listen=no_listen,
        deploy=deploy,
        deploy_only=deploy_only,
    )


if __name__ == "__main__":
    app()
