"""No logging call in the product passes `extra` keys that a LogRecord already has (`created`,
`name`, `msg`, …): the logging module raises KeyError for them, so such a call fails the code
that logs, at the moment it logs (a maintenance pass once failed this way)."""

from __future__ import annotations

import ast
import logging

from engine.settings import PROJECT_ROOT

PRODUCT = ("api", "bench", "cli", "engine", "flows", "tasks", "worker")
RESERVED = set(logging.LogRecord("n", logging.INFO, "p", 1, "m", (), None).__dict__) | {
    "message",
    "asctime",
}


def _literal_extra_keys() -> list[tuple[str, int, str]]:
    found = []
    for package in PRODUCT:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if not (isinstance(node, ast.keyword) and node.arg == "extra"):
                    continue
                if isinstance(node.value, ast.Dict):
                    found += [
                        (str(path), key.lineno, key.value)
                        for key in node.value.keys
                        if isinstance(key, ast.Constant) and isinstance(key.value, str)
                    ]
    return found


def test_the_scan_sees_the_products_extra_keys() -> None:
    """The scan finds the literal `extra` keys the product logs with (it is not vacuous)."""
    keys = {key for _path, _line, key in _literal_extra_keys()}
    assert {"job_id", "decision"} <= keys


def test_no_extra_key_overwrites_a_log_record_attribute() -> None:
    """Every literal key given as `extra=` is free in a LogRecord."""
    clashes = [f"{p}:{line} {key!r}" for p, line, key in _literal_extra_keys() if key in RESERVED]
    assert clashes == []
