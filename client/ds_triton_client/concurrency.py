"""Ordered, bounded fan-out: never more than ``limit`` items in flight, results in input order."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from concurrent.futures import Executor, Future
from typing import TypeVar

T = TypeVar("T")
R = TypeVar("R")


def map_bounded(executor: Executor, fn: Callable[[T], R], items: Sequence[T], limit: int) -> list[R]:
    """``fn`` over ``items`` on ``executor`` with at most ``limit`` submitted at once.

    A sliding window instead of ``executor.map``: that submits every item up front.
    The first error is raised after the in-flight items settle; later ones are not started.
    """
    results: list[R] = []
    window: deque[Future[R]] = deque()
    iterator = iter(items)
    try:
        for item in iterator:
            window.append(executor.submit(fn, item))
            if len(window) >= limit:
                results.append(window.popleft().result())
        while window:
            results.append(window.popleft().result())
    finally:
        for future in window:
            future.cancel()
        for future in window:
            if not future.cancelled():
                future.exception()  # wait, so no worker outlives the call
    return results


async def gather_bounded(fn: Callable[[T], Awaitable[R]], items: Sequence[T], limit: int) -> list[R]:
    """Await ``fn`` over ``items`` with ``min(limit, len(items))`` worker tasks, keeping order.

    Workers pull the next index, so the number of tasks is bounded by ``limit``
    whatever the input size. The first error cancels the other workers.
    """
    results: list[R | None] = [None] * len(items)
    next_index = iter(range(len(items)))

    async def worker() -> None:
        for index in next_index:
            results[index] = await fn(items[index])

    workers = [asyncio.ensure_future(worker()) for _ in range(min(limit, len(items)))]
    try:
        await asyncio.gather(*workers)
    finally:
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    return results  # type: ignore[return-value]  # every slot was filled when gather returned
