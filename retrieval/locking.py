"""An exclusive lock between processes (and threads) on one machine: ``flock`` on a file.

The embedded chromadb store is one SQLite database and a folder of index files that
processes share; these locks let only one of them create it, or write a collection, at a time.
"""

from __future__ import annotations

import fcntl
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


@contextmanager
def file_lock(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on ``path`` (created if missing) for the ``with`` block.

    Blocks until the lock is free. The kernel drops it when the holder exits, even on
    SIGKILL, so a killed process never leaves it held. Not re-entrant: a thread that
    takes the same lock twice waits for itself.
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)
