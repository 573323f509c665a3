"""Text no store can hold: a JSON body that is not UTF-8, or whose strings carry an unpaired
surrogate.

JSON may spell a surrogate as an escape (``"\\ud800"``), and Python's JSON reader also takes
one encoded in the bytes themselves, or a body in UTF-16; either way it reads a string that
cannot be encoded as UTF-8, so SQLite, PostgreSQL and every model refuse it, at whatever
point it reaches them: after a run has begun, or after an approval was taken off the run it
decides. Such a body is refused before any route sees it. JSON exchanged between systems is
UTF-8 (RFC 8259).
"""

from __future__ import annotations

import json
import re
from typing import Any

_ESCAPE = re.compile(r"\\u[dD][89a-fA-F]")
"""The start of a surrogate's escape: only a body with one is parsed and looked through."""


def is_json(content_type: str) -> bool:
    """Whether a ``Content-Type`` names JSON (``application/json``, ``...+json``)."""
    kind = content_type.split(";", 1)[0].strip().lower()
    return kind == "application/json" or kind.endswith("+json")


def body_problem(body: bytes) -> tuple[str, str | None] | None:
    """What makes a JSON ``body`` text no store can hold, and where (a path like
    ``data.service``); None when nothing does (or it is not JSON at all: the route says so)."""
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        return (f"the request body is not UTF-8 (byte {exc.start}): send JSON as UTF-8 text",
                None)
    if not _ESCAPE.search(text):
        return None
    try:
        document = json.loads(text)
    except (ValueError, RecursionError):
        return None
    where = _unpaired(document)
    if where is None:
        return None
    return (f"the request body holds an unpaired surrogate (a \\ud800-\\udfff escape without "
            f"its pair) in {where}: send valid Unicode text", where)


def _unpaired(document: Any) -> str | None:
    """The path of the first string (or key) that is not valid Unicode, walked without
    recursion (a body may nest deeply)."""
    stack: list[tuple[Any, str]] = [(document, "")]
    while stack:
        value, path = stack.pop()
        if isinstance(value, str):
            if not _encodes(value):
                return path or "(the body)"
        elif isinstance(value, dict):
            for key, item in reversed(list(value.items())):
                if not _encodes(key):
                    return (path + "." if path else "") + "(a key)"
                stack.append((item, f"{path}.{key}" if path else str(key)))
        elif isinstance(value, list):
            stack.extend((item, f"{path}[{index}]") for index, item in reversed(
                list(enumerate(value))))
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
