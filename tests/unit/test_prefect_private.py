"""The private Prefect APIs the project uses (warm worker, run starter) still exist, and only
engine/prefect_private.py uses them.

After a Prefect upgrade, a failure here names the private member that was removed or renamed:
engine/prefect_private.py is the one place to update.
"""

from __future__ import annotations

import abc
import ast
import importlib
import inspect
from pathlib import Path
from typing import Any

import pytest
from prefect.workers.base import BaseJobConfiguration, BaseVariables, BaseWorker, BaseWorkerResult

from engine import prefect_private
from engine.prefect_private import (
    CALLED_BASEWORKER_METHODS,
    OBSERVER_METHODS,
    OVERRIDDEN_BASEWORKER_METHODS,
    PRIVATE_CALLABLE_PARAMETERS,
    PRIVATE_MODULE_NAMES,
    READ_BASEWORKER_ATTRIBUTES,
    BaseWorkerAccess,
)
from engine.settings import PROJECT_ROOT

UPDATE = "engine/prefect_private.py needs updating"
BASE = "prefect.workers.base.BaseWorker"
#: The one module allowed to use private Prefect members (relative to the project root).
ALLOWED = Path("engine/prefect_private.py")
#: Where the project's code lives.
PROJECT_PACKAGES = ("engine", "api", "flows", "tasks", "worker", "cli")


class _Probe(BaseWorker[BaseJobConfiguration, BaseVariables, BaseWorkerResult], abc.ABC):
    """A bare BaseWorker (abc.ABC keeps it out of Prefect's worker type registry)."""

    type = "supaflow-probe"

    async def run(self, *args: Any, **kwargs: Any) -> BaseWorkerResult:
        """Never called: the probe is only constructed."""
        raise NotImplementedError


def _parameters(target: Any) -> list[str]:
    return list(inspect.signature(target).parameters)


def _private_names() -> list[tuple[str, str]]:
    return [(module, name) for module, names in PRIVATE_MODULE_NAMES.items() for name in names]


@pytest.mark.parametrize(("module", "name"), _private_names())
def test_private_module_still_offers_the_name_used(module: str, name: str) -> None:
    """Each private Prefect module imports and still holds the attribute the worker takes."""
    try:
        imported = importlib.import_module(module)
    except ImportError as exc:
        pytest.fail(f"{module} no longer imports ({exc}): {UPDATE}")
    assert hasattr(imported, name), f"{module}.{name} is gone: {UPDATE}"


@pytest.mark.parametrize(("name", "parameters"), sorted(PRIVATE_CALLABLE_PARAMETERS.items()))
def test_private_callable_takes_the_parameters_passed(
    name: str, parameters: tuple[str, ...]
) -> None:
    """The private callables are callable and still take the parameters passed by name."""
    target = getattr(prefect_private, name)
    assert callable(target), f"{name} is no longer callable: {UPDATE}"
    missing = set(parameters) - set(_parameters(target))
    assert not missing, f"{name} no longer takes {sorted(missing)}: {UPDATE}"


@pytest.mark.parametrize("method", OBSERVER_METHODS)
def test_cancelling_observer_still_has_the_methods_called(method: str) -> None:
    """The (private) FlowRunCancellingObserver still has each method the worker calls."""
    target = getattr(prefect_private.CancellingObserver, method, None)
    assert callable(target), (
        f"prefect._internal.observers.FlowRunCancellingObserver.{method} is gone: {UPDATE}"
    )


@pytest.mark.parametrize(("method", "caller"), sorted(OVERRIDDEN_BASEWORKER_METHODS.items()))
def test_overridden_baseworker_method_exists_and_is_still_called(method: str, caller: str) -> None:
    """Each overridden private method exists with the parameters of the override, and
    BaseWorker still calls it from where the override expects (else it would be dead code)."""
    original = getattr(BaseWorker, method, None)
    assert callable(original), f"{BASE}.{method} is gone: {UPDATE}"
    assert _parameters(original) == _parameters(getattr(BaseWorkerAccess, method)), (
        f"{BASE}.{method} changed its parameters: {UPDATE}"
    )
    calling = getattr(BaseWorker, caller, None)
    assert calling is not None, f"{BASE}.{caller} (which calls {method}) is gone: {UPDATE}"
    assert f"self.{method}" in inspect.getsource(calling), (
        f"{BASE}.{caller} no longer calls {method}: {UPDATE}"
    )


@pytest.mark.parametrize(("method", "parameters"), sorted(CALLED_BASEWORKER_METHODS.items()))
def test_called_baseworker_method_exists(method: str, parameters: tuple[str, ...]) -> None:
    """Each private BaseWorker method called is still a method taking those parameters."""
    target = getattr(BaseWorker, method, None)
    assert callable(target), f"{BASE}.{method} is gone: {UPDATE}"
    missing = set(parameters) - set(_parameters(target))
    assert not missing, f"{BASE}.{method} no longer takes {sorted(missing)}: {UPDATE}"


@pytest.mark.parametrize("attribute", READ_BASEWORKER_ATTRIBUTES)
def test_read_baseworker_attribute_exists(attribute: str) -> None:
    """Each private BaseWorker attribute read is still set on a new worker."""
    assert hasattr(_Probe("probe-pool"), attribute), f"{BASE}.{attribute} is gone: {UPDATE}"


def _baseworker_members() -> set[str]:
    return set(dir(BaseWorker)) | set(vars(_Probe("probe-pool")))


def _accessor_names() -> list[str]:
    return sorted(name for name in vars(BaseWorkerAccess) if not name.startswith("_"))


@pytest.mark.parametrize("name", _accessor_names())
def test_accessor_does_not_shadow_a_baseworker_member(name: str) -> None:
    """The public names BaseWorkerAccess adds are not BaseWorker's own (an upgrade adding a
    member of the same name would otherwise be silently replaced)."""
    assert name not in _baseworker_members(), f"{BASE} now has its own {name!r}: {UPDATE}"


def test_prefect_private_touches_exactly_the_listed_members() -> None:
    """prefect_private.py overrides the listed private methods and defines, reads or sets no
    private BaseWorker member other than those listed (so the tests above cover them all)."""
    assert set(OVERRIDDEN_BASEWORKER_METHODS) <= set(vars(BaseWorkerAccess))
    listed = (
        set(OVERRIDDEN_BASEWORKER_METHODS)
        | set(CALLED_BASEWORKER_METHODS)
        | set(READ_BASEWORKER_ATTRIBUTES)
    )
    assert _private_attributes(PROJECT_ROOT / ALLOWED) & _baseworker_members() == listed


def _project_files() -> list[Path]:
    return sorted(f for package in PROJECT_PACKAGES for f in (PROJECT_ROOT / package).rglob("*.py"))


def _private_attributes(path: Path) -> set[str]:
    """Names `_x` (not dunder) of attributes, methods and class attributes in `path`."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Attribute):
            names.add(node.attr)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
            names.add(node.name)
        elif isinstance(node, ast.ClassDef):
            names.update(_class_attribute_names(node))
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def _class_attribute_names(node: ast.ClassDef) -> set[str]:
    targets: list[ast.expr] = []
    for statement in node.body:
        if isinstance(statement, ast.Assign):
            targets.extend(statement.targets)
        elif isinstance(statement, ast.AnnAssign):
            targets.append(statement.target)
    return {t.id for t in targets if isinstance(t, ast.Name)}


def _private_prefect_imports(path: Path) -> set[str]:
    """Private Prefect modules (`prefect._x`, `prefect.y._z`) imported by the file at `path`."""
    modules: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            modules.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            modules.add(node.module)
    return {
        m
        for m in modules
        if m.split(".")[0] == "prefect" and any(p.startswith("_") for p in m.split("."))
    }


def test_no_other_module_imports_private_prefect_modules() -> None:
    """Only engine/prefect_private.py imports a private Prefect module (`prefect._...`)."""
    offenders = {
        str(f.relative_to(PROJECT_ROOT)): sorted(found)
        for f in _project_files()
        if f.relative_to(PROJECT_ROOT) != ALLOWED and (found := _private_prefect_imports(f))
    }
    assert not offenders


def test_no_other_worker_module_touches_private_baseworker_members() -> None:
    """No worker module but prefect_private.py defines, reads or sets a private member of
    BaseWorker (the warm worker's own private names must not collide with BaseWorker's)."""
    members = _baseworker_members()
    offenders = {
        str(f.relative_to(PROJECT_ROOT)): sorted(found)
        for f in (PROJECT_ROOT / "worker").rglob("*.py")
        if f.relative_to(PROJECT_ROOT) != ALLOWED and (found := _private_attributes(f) & members)
    }
    assert not offenders


def test_prefect_client_still_keeps_its_retrying_connection_pool_where_it_is_switched_off() -> None:
    """SyncPrefectClient's httpx client (`_client`), its `_transport_for_url`, the transport's
    httpcore `_pool` and the pool's `_retries` are where `without_connect_retries` acts."""
    import httpcore
    import httpx
    from prefect.client.orchestration import SyncPrefectClient

    assert prefect_private.CLIENT_PRIVATE_ATTRIBUTES == (
        "_client",
        "_transport_for_url",
        "_pool",
        "_retries",
    )
    client = SyncPrefectClient("http://127.0.0.1:9/api")
    http = getattr(client, "_client", None)
    assert isinstance(http, httpx.Client), f"SyncPrefectClient._client is gone: {UPDATE}"
    transport_for_url = getattr(http, "_transport_for_url", None)
    assert callable(transport_for_url), f"httpx.Client._transport_for_url is gone: {UPDATE}"
    pool = getattr(transport_for_url(httpx.URL("http://127.0.0.1:9/api")), "_pool", None)
    assert isinstance(pool, httpcore.ConnectionPool), f"HTTPTransport._pool is gone: {UPDATE}"
    assert getattr(pool, "_retries", None) == 3, f"Prefect's connect retries moved: {UPDATE}"
    prefect_private.without_connect_retries(client)
    assert pool._retries == 0
