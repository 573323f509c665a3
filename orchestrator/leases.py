"""Claims on runs and threads are leases: an owner (token, process, host) and an expiry.

The process that runs a run (or resumes, or approves it) owns it until its lease runs out
and renews the lease while it works; a claim whose owner is gone (the lease expired, or its
process on this host died) no longer holds and may be taken over.
"""

from __future__ import annotations

import os
import socket
import time
import uuid
from dataclasses import dataclass

ACTIVE_STATUSES = frozenset({"running", "resuming"})
"""A run some process is working on, as long as its owner's lease holds."""
HOST = socket.gethostname()


@dataclass(frozen=True)
class Owner:
    """Who holds a claim: one token per run, resume or approval, with its process."""

    token: str
    pid: int
    host: str

    @classmethod
    def here(cls) -> Owner:
        return cls(uuid.uuid4().hex, os.getpid(), HOST)


def owner_gone(pid: int | None, host: str | None, lease_until: float | None,
               now: float | None = None) -> bool:
    """Whether a claim no longer holds: its lease expired, or its process on this host is
    gone (a kill -9 is seen at once, not only when the lease runs out)."""
    if lease_until is None or lease_until < (now if now is not None else time.time()):
        return True
    return host == HOST and pid is not None and not _process_alive(pid)


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    try:  # a killed child its parent has not reaped yet is a zombie: gone
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as stat:
            return stat.read().rsplit(")", 1)[-1].split()[0] != "Z"
    except (OSError, IndexError):
        return True


def effective_status(status: str, pid: int | None, host: str | None,
                     lease_until: float | None, now: float | None = None) -> str:
    """A stored status as it stands: a running or resuming run whose owner is gone has been
    interrupted (a crash, kill -9, a stop), whatever its row last said."""
    if status in ACTIVE_STATUSES and owner_gone(pid, host, lease_until, now):
        return "interrupted"
    return status
