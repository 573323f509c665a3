"""Tool threads: at most ``limit`` calls at once in the process, the rest waiting in line;
a waiting call that is cancelled gives its turn on, and calls from several event loops share
the slots."""

from __future__ import annotations

import asyncio
import threading
import time

from orchestrator.nodes.tool_threads import run_in_tool_thread

LIMIT = 2  # a limit no other test uses: its slots are this file's alone


def _held_call(running: list[int], most: list[int], lock: threading.Lock,
               go: threading.Event, value: int) -> int:
    with lock:
        running.append(value)
        most[0] = max(most[0], len(running))
    go.wait(10)
    with lock:
        running.remove(value)
    return value * 10


def test_calls_beyond_the_limit_wait_their_turn_and_all_finish() -> None:
    running: list[int] = []
    most = [0]
    lock = threading.Lock()
    go = threading.Event()

    async def scenario() -> list[int]:
        calls = [asyncio.ensure_future(run_in_tool_thread(
            lambda v=v: _held_call(running, most, lock, go, v), limit=LIMIT)) for v in range(6)]
        while len(running) < LIMIT:
            await asyncio.sleep(0.01)
        go.set()
        return await asyncio.wait_for(asyncio.gather(*calls), 30)

    assert asyncio.run(scenario()) == [0, 10, 20, 30, 40, 50]
    assert most[0] == LIMIT


def test_a_cancelled_waiting_call_gives_its_turn_to_the_next() -> None:
    go = threading.Event()

    async def scenario() -> int:
        held = [asyncio.ensure_future(run_in_tool_thread(lambda: go.wait(10), limit=LIMIT))
                for _ in range(LIMIT)]
        await asyncio.sleep(0.05)
        given_up = asyncio.ensure_future(run_in_tool_thread(lambda: 1, limit=LIMIT))
        waiting = asyncio.ensure_future(run_in_tool_thread(lambda: 2, limit=LIMIT))
        await asyncio.sleep(0.05)
        given_up.cancel()  # a timeout while it waits for a slot
        go.set()
        await asyncio.gather(*held)
        assert given_up.cancelled()
        return await asyncio.wait_for(waiting, 10)

    assert asyncio.run(scenario()) == 2
    # and every slot is free again afterwards
    assert asyncio.run(_many(LIMIT * 3)) == list(range(LIMIT * 3))


async def _many(count: int) -> list[int]:
    return await asyncio.wait_for(asyncio.gather(*(run_in_tool_thread(lambda v=v: v, limit=LIMIT)
                                                 for v in range(count))), 30)


def test_event_loops_in_two_threads_share_the_slots() -> None:
    results: dict[str, list[int]] = {}

    def loop_thread(name: str) -> None:
        results[name] = asyncio.run(_many(5))

    threads = [threading.Thread(target=loop_thread, args=(n,)) for n in ("a", "b")]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert results == {"a": list(range(5)), "b": list(range(5))}


def test_a_freed_slot_goes_to_the_call_waiting_longest_not_to_one_arriving_meanwhile() -> None:
    # A slot given back is the waiting call's from that moment: a call that arrives before
    # the waiting one has woken up does not take it ahead of it.
    first_done, second = threading.Event(), threading.Event()
    started: list[str] = []

    def first() -> None:
        first_done.set()

    async def scenario() -> None:
        held = [asyncio.ensure_future(run_in_tool_thread(lambda: second.wait(10), limit=LIMIT))]
        release = threading.Event()
        held.append(asyncio.ensure_future(run_in_tool_thread(
            lambda: (release.wait(10), first()), limit=LIMIT)))
        await asyncio.sleep(0.05)
        waiting = asyncio.ensure_future(run_in_tool_thread(
            lambda: started.append("waiting"), limit=LIMIT))
        await asyncio.sleep(0.05)
        release.set()
        first_done.wait(10)
        time.sleep(0.2)  # the loop is blocked: the slot is given back, the waiter not woken yet
        newcomer = asyncio.ensure_future(run_in_tool_thread(
            lambda: started.append("newcomer"), limit=LIMIT))
        await asyncio.wait_for(asyncio.gather(waiting, newcomer), 10)
        second.set()
        await asyncio.gather(*held)

    asyncio.run(scenario())
    assert started == ["waiting", "newcomer"]
    assert asyncio.run(_many(LIMIT * 3)) == list(range(LIMIT * 3))
