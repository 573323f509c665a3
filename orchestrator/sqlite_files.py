"""The SQLite files the orchestrator keeps in its data folder, opened one way."""

from __future__ import annotations

import sqlite3
from pathlib import Path


def open_store(path: Path) -> sqlite3.Connection:
    """A connection for a store's life (opening one per call costs milliseconds), shared
    across threads under the store's own lock. WAL with ``synchronous=NORMAL``: what is
    committed survives a killed process; a power cut may lose the last commits."""
    path.parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=30, check_same_thread=False)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=NORMAL")
    return conn
