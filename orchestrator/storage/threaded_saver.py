"""The async half of a LangGraph checkpointer whose sync methods do the work on threads.

LangGraph's SQLite and PostgreSQL savers are synchronous (or bound to one event loop); the
engine calls the async methods, from any loop. A saver mixes this in before the library's
class and says how a call reaches its threads (:meth:`ThreadedAsyncSaver._call`).

A write (``aput``, ``aput_writes``) first awaits what the run writing it set in
:data:`WRITE_BARRIER`: the engine sets the run's event writer there, so a step's checkpoint
never commits before the step's events (a kill between the two would leave them out of the
run's record for good, as the resumed run does not repeat the step).
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from typing import Any, TypeVar, cast

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)

_T = TypeVar("_T")

Barrier = Callable[[], Awaitable[None] | None]
WRITE_BARRIER: ContextVar[Barrier | None] = ContextVar("checkpoint_write_barrier",
                                                       default=None)
"""Called before each checkpoint write of the current run: None to write at once (the fast
path, no await), else an awaitable that ends when the write may go ahead (or raises)."""


@contextlib.contextmanager
def write_barrier(barrier: Barrier) -> Iterator[None]:
    """``barrier`` before each checkpoint write made in this context (a run's task, and the
    tasks LangGraph starts from it)."""
    token = WRITE_BARRIER.set(barrier)
    try:
        yield
    finally:
        WRITE_BARRIER.reset(token)


async def _barrier() -> None:
    _disarm_read_ahead()
    if (barrier := WRITE_BARRIER.get()) is not None and (waiting := barrier()) is not None:
        await waiting


_READ_AHEAD: ContextVar[list[Any] | None] = ContextVar("checkpoint_read_ahead", default=None)
"""[thread key or None once used, the checkpoint tuple read]: see :func:`read_ahead`."""


@contextlib.contextmanager
def read_ahead(saver: object, config: RunnableConfig, latest: CheckpointTuple | None
               ) -> Iterator[None]:
    """The first checkpoint call made in this context, when it reads ``config``'s latest
    checkpoint from ``saver``, gets ``latest`` instead of reading the same row again: its
    caller has just read it and holds the thread, so nothing has written it since. Only the
    first call of a saver of this module: any other (another saver's or thread's, a write)
    and every later one go to the store. Other savers read as usual."""
    if not isinstance(saver, ThreadedAsyncSaver):
        yield
        return
    token = _READ_AHEAD.set([_latest_key(saver, config), latest])
    try:
        yield
    finally:
        _READ_AHEAD.reset(token)


def _latest_key(saver: object, config: RunnableConfig) -> tuple[int, str, str] | None:
    """Which saver and thread's latest checkpoint ``config`` reads (None: a given one)."""
    configurable = config.get("configurable") or {}
    if configurable.get("checkpoint_id"):
        return None
    return (id(saver), str(configurable.get("thread_id")),
            str(configurable.get("checkpoint_ns", "")))


def _disarm_read_ahead() -> list[Any] | None:
    """The read ahead, if still unused (now used up), else None."""
    ahead = _READ_AHEAD.get()
    if ahead is None or ahead[0] is None:
        return None
    found, ahead[:] = list(ahead), [None, None]
    return found


class ThreadedAsyncSaver:
    """LangGraph's async checkpointer methods, each the sync one through :meth:`_call`."""

    async def _call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run ``fn`` where this saver runs its statements (a thread of its own)."""
        raise NotImplementedError

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        ahead = _disarm_read_ahead()
        if ahead is not None and ahead[0] is not None and ahead[0] == _latest_key(self, config):
            return cast(CheckpointTuple | None, ahead[1])
        return await self._call(self.get_tuple, config)  # type: ignore[attr-defined]

    async def alist(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
                    before: RunnableConfig | None = None, limit: int | None = None
                    ) -> AsyncIterator[CheckpointTuple]:
        _disarm_read_ahead()
        found = await self._call(lambda: list(self.list(  # type: ignore[attr-defined]
            config, filter=filter, before=before, limit=limit)))
        for item in found:
            yield item

    async def aput(self, config: RunnableConfig, checkpoint: Checkpoint,
                   metadata: CheckpointMetadata, new_versions: ChannelVersions
                   ) -> RunnableConfig:
        await _barrier()
        return await self._call(self.put, config, checkpoint,  # type: ignore[attr-defined]
                                metadata, new_versions)

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                          task_id: str, task_path: str = "") -> None:
        await _barrier()
        await self._call(self.put_writes, config, writes,  # type: ignore[attr-defined]
                         task_id, task_path)

    async def adelete_thread(self, thread_id: str) -> None:
        _disarm_read_ahead()
        await self._call(self.delete_thread, thread_id)  # type: ignore[attr-defined]

    async def aget_delta_channel_history(self, *, config: RunnableConfig,
                                         channels: Sequence[str]) -> Mapping[str, Any]:
        _disarm_read_ahead()
        return await self._call(self.get_delta_channel_history,  # type: ignore[attr-defined]
                                config=config, channels=channels)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest"
                     ) -> None:
        """``prune`` (``keep_latest``: each thread's latest checkpoint stays)."""
        _disarm_read_ahead()
        await self._call(self.prune, thread_ids, strategy=strategy)  # type: ignore[attr-defined]
