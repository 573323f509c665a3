"""Claims on runs and threads are leases: an owner (token, process, host) and an expiry.

The process that runs a run (or resumes, or approves it) owns it until its lease runs out
and renews the lease while it works; a claim whose owner is gone (the lease expired, or its
process on this host died) no longer holds and may be taken over. An owner that finds its
claim lost (taken over, or not renewed in time) stops: :func:`keep_lease` says when.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import sqlite3
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

ACTIVE_STATUSES = frozenset({"running", "resuming"})
"""A run some process is working on, as long as its owner's lease holds."""
HOST = socket.gethostname()
log = logging.getLogger(__name__)


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


@dataclass(frozen=True)
class LostLease:
    """Why an owner lost its claim: another owner took it over, or it could not be renewed
    before it ran out (``error``: what kept the renewal from working)."""

    taken: bool
    error: str = ""


async def keep_lease(renew: Callable[[], bool], lease_s: float) -> LostLease:
    """Renew a claim every third of ``lease_s`` while the work goes on; return once it is
    lost, so the work can stop at once.

    ``renew`` extends the claim and returns False when another owner holds it (atomically
    with their claims). A renewal that fails (a busy store) is tried again at the next beat,
    unless the lease has run out by then: the claim is then lost.
    """
    # This process's own view of how long it held the claim: the monotonic clock, which a
    # wall-clock step (NTP, a VM resumed) does not move; the store judges the lease itself.
    held_until = time.monotonic() + lease_s
    while True:
        await asyncio.sleep(lease_s / 3)
        attempt = time.monotonic()
        if attempt >= held_until:
            # Overdue (the process was stopped or starved): another process may own the work
            # now. Checked on the event loop itself, so the work takes no step in doubt.
            try:
                kept = renew()
            except (OSError, sqlite3.Error) as exc:
                return LostLease(taken=False, error=str(exc) or type(exc).__name__)
        else:
            try:
                kept = await asyncio.to_thread(renew)
            except (OSError, sqlite3.Error) as exc:  # try again at the next beat
                log.warning("could not renew a lease (%s); trying again", exc)
                continue
        if not kept:
            return LostLease(taken=True)
        held_until = attempt + lease_s
