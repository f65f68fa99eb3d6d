"""Where a problem is: dotted locations such as ``steps[1].retry.max_retries``."""

from __future__ import annotations

from collections.abc import Sequence

ROOT_LOCATION = "(root)"


def format_location(parts: Sequence[str | int]) -> str:
    """Dotted location from path parts: ``("steps", 1, "retry")`` -> ``steps[1].retry``.

    Empty string parts are skipped, so a blank prefix adds nothing; no parts at all is the root.
    """
    text = ""
    for part in parts:
        if isinstance(part, int):
            text += f"[{part}]"
        elif part:
            text = f"{text}.{part}" if text else part
    return text or ROOT_LOCATION
