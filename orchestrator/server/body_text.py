"""Text no store can hold: a JSON body whose strings carry an unpaired surrogate.

JSON may spell one as an escape (``"\\ud800"``); Python reads it into a string that cannot
be encoded as UTF-8, so SQLite, PostgreSQL and every model refuse it, at whatever point it
reaches them: after a run has begun, or after an approval was taken off the run it
decides. A body holding one is refused before any route sees it.
"""

from __future__ import annotations

import json
import re
from typing import Any

_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")
"""The start of a surrogate's escape: only a body with one is parsed and looked through."""


def unpaired_surrogate(body: bytes) -> str | None:
    """Where in ``body`` (a JSON document) a string holds an unpaired surrogate, as a path
    like ``data.service``; None when it holds none (or is not JSON: the route says so)."""
    if not _ESCAPE.search(body):
        return None
    try:
        document = json.loads(body)
    except ValueError:
        return None
    return _find(document, "")


def _find(value: Any, path: str) -> str | None:
    if isinstance(value, str):
        return path or "(the body)" if not _encodes(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            where = f"{path}.{key}" if path else str(key)
            if not _encodes(key):
                return (path + "." if path else "") + "(a key)"
            found = _find(item, where)
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = _find(item, f"{path}[{index}]")
            if found is not None:
                return found
    return None


def _encodes(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True
