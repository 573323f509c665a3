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
from typing import Any, TypeVar

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
    if (barrier := WRITE_BARRIER.get()) is not None and (waiting := barrier()) is not None:
        await waiting


class ThreadedAsyncSaver:
    """LangGraph's async checkpointer methods, each the sync one through :meth:`_call`."""

    async def _call(self, fn: Callable[..., _T], *args: Any, **kwargs: Any) -> _T:
        """Run ``fn`` where this saver runs its statements (a thread of its own)."""
        raise NotImplementedError

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        return await self._call(self.get_tuple, config)  # type: ignore[attr-defined]

    async def alist(self, config: RunnableConfig | None, *, filter: dict[str, Any] | None = None,
                    before: RunnableConfig | None = None, limit: int | None = None
                    ) -> AsyncIterator[CheckpointTuple]:
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
        await self._call(self.delete_thread, thread_id)  # type: ignore[attr-defined]

    async def aget_delta_channel_history(self, *, config: RunnableConfig,
                                         channels: Sequence[str]) -> Mapping[str, Any]:
        return await self._call(self.get_delta_channel_history,  # type: ignore[attr-defined]
                                config=config, channels=channels)

    async def aprune(self, thread_ids: Sequence[str], *, strategy: str = "keep_latest"
                     ) -> None:
        """``prune`` (``keep_latest``: each thread's latest checkpoint stays)."""
        await self._call(self.prune, thread_ids, strategy=strategy)  # type: ignore[attr-defined]
