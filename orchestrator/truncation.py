"""Text and JSON cut to a size, with a marker saying how much was left out."""

from __future__ import annotations

import json
from typing import Any

_MARK = "...[truncated {} chars]"


def cap_text(text: str | None, limit: int) -> str | None:
    if text is None or len(text) <= limit:
        return text
    return text[:limit] + _MARK.format(len(text) - limit)


def cap_json(value: Any, limit: int) -> str:
    """``value`` as JSON of at most about ``limit`` characters: long strings inside are cut
    with a marker (the shape stays readable); if that is not enough, a preview is kept."""
    text = json.dumps(value, default=str)
    if len(text) <= limit:
        return text
    each = max(limit // 8, 100)

    def shorten(item: Any) -> Any:
        if isinstance(item, str):
            return cap_text(item, each)
        if isinstance(item, dict):
            return {str(k): shorten(v) for k, v in item.items()}
        if isinstance(item, list | tuple):
            return [shorten(v) for v in item]
        return item

    text = json.dumps(shorten(value), default=str)
    if len(text) <= limit:
        return text
    return json.dumps({"truncated": True, "chars": len(text), "preview": text[:limit]})
