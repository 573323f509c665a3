"""The async half of a LangGraph checkpointer whose sync methods do the work on threads.

LangGraph's SQLite and PostgreSQL savers are synchronous (or bound to one event loop); the
engine calls the async methods, from any loop. A saver mixes this in before the library's
class and says how a call reaches its threads (:meth:`ThreadedAsyncSaver._call`).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Mapping, Sequence
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
)

_T = TypeVar("_T")


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
        return await self._call(self.put, config, checkpoint,  # type: ignore[attr-defined]
                                metadata, new_versions)

    async def aput_writes(self, config: RunnableConfig, writes: Sequence[tuple[str, Any]],
                          task_id: str, task_path: str = "") -> None:
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
