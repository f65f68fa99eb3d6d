"""Hypothesis strategies of JSON text holding what the input policy refuses (NUL, lone
surrogates escaped and raw, non-finite and oversized numbers, deep nesting) and text that
looks like it (brackets, quotes and backslash escapes inside strings)."""

from __future__ import annotations

import json

from hypothesis import strategies as st

#: Characters the policy refuses, mixed into otherwise ordinary text.
SPECIALS = ["\x00", "\ud800", "\udfff", "\udc00\ud800", "a\x00", "\ud83d"]
#: Number literals Python accepts and jsonb does not (or that overflow conversions).
ODD_NUMBERS = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400", "9" * 5000, "-0", "1E-400"]
#: Characters that look like structure or escapes once inside a string.
LOOKALIKES = ["[", "]", "{", "}", '"', "\\", "\\u0000", "\\ud800", "\ud83d\ude00"]

texts = st.one_of(
    st.text(max_size=8),
    st.builds(
        lambda head, special, tail: head + special + tail,
        st.text(max_size=4),
        st.sampled_from(SPECIALS + LOOKALIKES),
        st.text(max_size=4),
    ),
)


def json_string(text: str, raw: bool) -> str:
    """`text` as a JSON string: escaped (`\\ud800`), or raw (a surrogate stays a character
    and is sent as its UTF-8 bytes)."""
    return json.dumps(text, ensure_ascii=not raw)


strings = st.builds(json_string, texts, st.booleans())
scalars = st.one_of(
    st.sampled_from(["null", "true", "false"]),
    st.integers().map(str),
    st.floats(allow_nan=False, allow_infinity=False).map(repr),
    st.sampled_from(ODD_NUMBERS),
    strings,
)
values = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=3).map(lambda items: "[" + ",".join(items) + "]"),
        st.lists(st.tuples(strings, children), max_size=3).map(
            lambda pairs: "{" + ",".join(f"{k}:{v}" for k, v in pairs) + "}"
        ),
    ),
    max_leaves=8,
)
deep_values = st.integers(min_value=60, max_value=1200).map(lambda d: "[" * d + "]" * d)
any_value = st.one_of(values, deep_values)
