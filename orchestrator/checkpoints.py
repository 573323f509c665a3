"""Checkpoint storage: what a finished run's thread keeps."""

from __future__ import annotations

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph


async def prune_checkpoints(graph: CompiledStateGraph, thread_id: str) -> None:
    """Keep only the latest checkpoint of a finished run's thread: a resume never needs the
    older ones, and each holds the whole conversation (storage would grow with the square
    of the turns). LangGraph's own ``aprune`` when the saver has it, else the SQLite saver's
    tables directly. Threads with a ``DeltaChannel`` are left alone: pruning can break them."""
    saver = graph.checkpointer
    if not isinstance(saver, BaseCheckpointSaver):
        return
    try:
        from langgraph.channels.delta import DeltaChannel
    except ImportError:  # an older LangGraph: no delta channels
        pass
    else:
        if any(isinstance(c, DeltaChannel) for c in graph.channels.values()):
            return
    try:
        await saver.aprune([thread_id], strategy="keep_latest")
        return
    except NotImplementedError:
        pass
    from langgraph.checkpoint.sqlite.aio import AsyncSqliteSaver

    if not isinstance(saver, AsyncSqliteSaver):
        return  # in-memory threads and other savers without pruning keep their history
    async with saver.lock:
        await saver.conn.execute(
            "DELETE FROM writes WHERE thread_id = ?1 AND checkpoint_id < (SELECT "
            "MAX(checkpoint_id) FROM checkpoints c WHERE c.thread_id = ?1 AND "
            "c.checkpoint_ns = writes.checkpoint_ns)", (thread_id,))
        await saver.conn.execute(
            "DELETE FROM checkpoints WHERE thread_id = ?1 AND checkpoint_id < (SELECT "
            "MAX(checkpoint_id) FROM checkpoints c WHERE c.thread_id = ?1 AND "
            "c.checkpoint_ns = checkpoints.checkpoint_ns)", (thread_id,))
        await saver.conn.commit()
