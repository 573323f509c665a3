"""Conversations over HTTP: which thread a chat request continues, inside its tenant.

The client names a thread by the ``X-Thread-Id`` header, else by the request's ``user``
field; with neither, the request starts a new thread whose id comes back in the header (the
same one for a request sent again with its ``Idempotency-Key``).
The orchestrator stores it as ``<tenant>:<thread>``: tenant names cannot contain ``:``, so
one tenant's ``inc-42`` is never another's, whatever the client sends.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from orchestrator.errors import RequestError
from orchestrator.server.errors import ApiError, api_error_of

THREAD_HEADER = "X-Thread-Id"
_THREAD = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:@/+-]{0,199}")


@dataclass(frozen=True)
class ChatThread:
    """A conversation as the client names it and as the orchestrator stores it."""

    id: str
    """What the client sends and is sent back (``X-Thread-Id``)."""
    stored: str
    """The orchestrator's thread id: the tenant, ``:``, the client's id."""


def chat_thread(tenant: str, header: str | None, user: str | None,
                request_id: str | None = None) -> ChatThread:
    """The thread a request continues (or starts: named after its request id, if any);
    ApiError 400 for an id that is not 1-200 letters, digits or . _ : @ / + -."""
    given = header if header is not None else user
    if given is None:
        given = (uuid.uuid5(uuid.NAMESPACE_URL, request_id) if request_id else uuid.uuid4()).hex
    elif not _THREAD.fullmatch(given):
        source = THREAD_HEADER if header is not None else "user"
        raise ApiError(400, f"the thread id in {source} must be 1-200 letters, digits or "
                       ". _ : @ / + - (starting with a letter or digit)", code="invalid_thread",
                       param=source)
    return ChatThread(id=given, stored=f"{tenant}:{given}")


@contextmanager
def in_client_terms(thread: ChatThread) -> Iterator[None]:
    """A refusal raised inside (a busy or paused thread, ...) names the thread as the
    client does, not as it is stored (with its tenant)."""
    try:
        yield
    except RequestError as exc:
        error = api_error_of(exc)
        error.message = error.message.replace(thread.stored, thread.id)
        raise error from None
