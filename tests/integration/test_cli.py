"""The command line: migrate, definitions validate/sync (refusing invalid files, listing every
problem, writing nothing), and local dev tokens that create the user and verify."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path
from typing import Any

import jwt
import psycopg
import pytest
from typer.testing import CliRunner

from cli.definition_files import DEFAULT_DIR, load_definitions, sync_definitions
from cli.main import app
from engine.db.connection import shared_store
from engine.errors import DefinitionError
from engine.security.local_keys import jwks, load_or_create_signing_key
from engine.settings import get_settings

runner = CliRunner()


def _broken_copy(tmp_path: Path) -> Path:
    """The shipped definitions with three mistakes in two files."""
    target = tmp_path / "definitions"
    shutil.copytree(DEFAULT_DIR, target)
    wf_path = target / "workflows" / "demo_offline_v1.json"
    wf = json.loads(wf_path.read_text())
    wf["definition"]["steps"][1]["transformer"] = "no-such-transformer"
    wf["definition"]["steps"][2]["input"]["text.$"] = "$.steps.summary.value"  # downstream
    wf_path.write_text(json.dumps(wf))
    tr_path = target / "transformers" / "pause-one-second.json"
    tr = json.loads(tr_path.read_text())
    tr["config"]["seconds"] = -1
    tr_path.write_text(json.dumps(tr))
    return target


def test_shipped_definitions_are_valid() -> None:
    """Everything in definitions/ passes the same checks the engine runs on save."""
    loaded = load_definitions()
    assert loaded.problems == []
    assert {"audio_transcription_v1", "demo_offline_v1"} <= set(loaded.workflows)
    assert {"gemini-timestamp-transcriber", "http-download-audio", "webhook-notify"} <= set(
        loaded.transformers
    )


def test_validate_lists_every_problem_and_fails(tmp_path: Path) -> None:
    """`definitions validate` exits 1 and names each problem with its file and field."""
    result = runner.invoke(
        app, ["definitions", "validate", "--directory", str(_broken_copy(tmp_path))]
    )
    assert result.exit_code == 1
    out = result.output
    assert "no-such-transformer" in out
    assert "summary" in out  # the downstream reference
    assert "pause-one-second.json" in out and "seconds" in out


def test_sync_upserts_then_is_idempotent(engine_env: str, db: psycopg.Connection[Any]) -> None:
    """A first sync writes every row; a second one changes nothing and makes no version."""
    store = shared_store()
    first = {(c.table, c.id): (c.outcome, c.version) for c in sync_definitions(store)}
    assert first[("workflows", "demo_offline_v1")] == ("added", 1)
    assert first[("transformers", "webhook-notify")] == ("added", 1)
    versions = db.execute("select count(*) from public.workflow_versions").fetchone()
    assert sync_definitions(store) == []
    assert db.execute("select count(*) from public.workflow_versions").fetchone() == versions
    count = db.execute("select count(*) from public.workflows").fetchone()
    assert count is not None and count[0] >= 2


def test_sync_refuses_invalid_definitions_and_writes_nothing(
    engine_env: str, db: psycopg.Connection[Any], tmp_path: Path
) -> None:
    """One invalid file stops the whole sync; the error lists every problem."""
    with pytest.raises(DefinitionError) as raised:
        sync_definitions(shared_store(), _broken_copy(tmp_path))
    assert len(raised.value.problems) >= 3
    rows = db.execute("select count(*) from public.workflows").fetchone()
    assert rows is not None and rows[0] == 0
    result = runner.invoke(
        app, ["definitions", "sync", "--directory", str(_broken_copy(tmp_path / "again"))]
    )
    assert result.exit_code == 1 and "nothing was synced" in result.output


def test_migrate_command_reports_nothing_pending(engine_env: str) -> None:
    """On an already migrated database `supaflow migrate` applies nothing."""
    result = runner.invoke(app, ["migrate", "--supabase"])
    assert result.exit_code == 0, result.output
    assert "none pending" in result.output


@pytest.mark.slow
def test_migrate_on_a_new_embedded_database_names_what_it_applied() -> None:
    """Without DATABASE_URL, `supaflow migrate` on a new data folder starts the embedded
    server and lists every migration it applied (not "none pending"); the process stops the
    server when it exits."""
    from engine.db.migrate import discover_migrations
    from engine.settings import PROJECT_ROOT

    # Under the project: the embedded server needs readable parent folders.
    data_dir = PROJECT_ROOT / ".data" / f"migrate-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if k != "DATABASE_URL"}
    env["DATA_DIR"] = str(data_dir)
    try:
        done = subprocess.run(
            [str(Path(sys.executable).parent / "supaflow"), "migrate"],
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
    finally:
        shutil.rmtree(data_dir, ignore_errors=True)
    output = " ".join((done.stdout + done.stderr).split())
    assert done.returncode == 0, output
    assert f"applied {len(discover_migrations())} migration(s)" in output


def test_token_creates_the_user_and_verifies_with_the_local_key(
    engine_env: str, db: psycopg.Connection[Any]
) -> None:
    """`supaflow token EMAIL` creates the user once and prints a Supabase-shaped token signed
    with the local key (verifiable through its JWKS)."""
    first = runner.invoke(app, ["token", "dev@example.com"])
    second = runner.invoke(app, ["token", "dev@example.com"])
    assert first.exit_code == 0 and second.exit_code == 0, first.output
    token = first.stdout.strip()
    users = db.execute("select id::text from auth.users where email = 'dev@example.com'").fetchall()
    assert len(users) == 1
    settings = get_settings()
    key = jwt.PyJWK(jwks(load_or_create_signing_key(settings.data_dir))["keys"][0])
    claims = jwt.decode(
        token,
        key.key,
        algorithms=["ES256"],
        audience="authenticated",
        issuer=settings.jwt_issuer,
    )
    assert claims["sub"] == users[0][0]
    assert claims["role"] == "authenticated" and claims["email"] == "dev@example.com"


def test_token_uses_the_issuer_the_local_stack_recorded(
    engine_env: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without SUPABASE_URL in the environment, `supaflow token` signs for the issuer that
    the data folder's running stack accepts (`supaflow up` points its API at itself), not for
    the default SUPABASE_URL that stack's API would reject."""
    from cli.local_auth import record_issuer

    settings = get_settings()
    stack_issuer = "http://127.0.0.1:8123/auth/v1"
    record_issuer(settings.data_dir, stack_issuer)
    monkeypatch.delenv("SUPABASE_URL", raising=False)
    get_settings.cache_clear()
    result = runner.invoke(app, ["token", "dev@example.com"])
    assert result.exit_code == 0, result.output
    key = jwt.PyJWK(jwks(load_or_create_signing_key(settings.data_dir))["keys"][0])
    claims = jwt.decode(
        result.stdout.strip(),
        key.key,
        algorithms=["ES256"],
        audience="authenticated",
        issuer=stack_issuer,
    )
    assert claims["email"] == "dev@example.com"


def test_dispatcher_command_takes_pending_jobs_and_stops_on_sigterm(
    engine_env: str, db: psycopg.Connection[Any]
) -> None:
    """`supaflow dispatcher` wakes for a new pending job; with Prefect unreachable the job
    stays pending (nothing lost), and SIGTERM stops the command cleanly with its counts."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import threading

    from dbfixtures import create_user, insert_job, insert_workflow
    from waiting import wait_until

    with socket.socket() as sock:  # a port nobody listens on: Prefect is down
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    env = {**os.environ, "PREFECT_API_URL": f"http://127.0.0.1:{closed}/api", "LOG_JSON": "false"}
    supaflow = str(Path(sys.executable).parent / "supaflow")
    proc = subprocess.Popen(
        [supaflow, "dispatcher"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # Read its output in a thread, so a wait can time out instead of blocking on a line.
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout or ()), daemon=True)
    reader.start()

    def said(text: str) -> bool:
        return any(text in line for line in list(lines))

    try:
        wait_until(lambda: said("dispatching"), 60, "the dispatcher")
        job = insert_job(db, create_user(db), insert_workflow(db))
        wait_until(lambda: said("could not create a flow run"), 60, "an attempt")
        pending = "select 1 from public.jobs where id = %s and status = 'pending'"
        assert db.execute(pending, [job]).fetchone() == (1,)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
        reader.join(10)
    finally:
        proc.kill()
    output = "".join(lines)
    assert proc.returncode == 0, output
    assert "dispatched 0, left pending 1" in output
