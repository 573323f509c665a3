"""The figure every benchmark reports: a measured value against its target."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class Figure:
    """One measured figure and its target."""

    name: str
    value: float
    unit: str
    target: str
    ok: bool
    detail: str = ""
