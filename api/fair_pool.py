"""Request threads shared round-robin among callers.

A thread pool is first come, first served: 200 downloads opened together by one caller
queue 400 pieces of work ahead of another caller's one GET (bench/slow_clients.py
measured 7 s). Here each caller has its own queue and the threads take one piece from
each caller in turn, so another caller waits for at most one piece per busy caller.
"""

from __future__ import annotations

import threading
from collections import OrderedDict, deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any


class FairThreadPool:
    def __init__(self, threads: int, name: str = "request") -> None:
        self._queues: OrderedDict[str, deque[tuple[Future[Any], Callable[[], Any]]]] = OrderedDict()
        self._ready = threading.Condition()
        for number in range(threads):
            threading.Thread(target=self._work, name=f"{name}-{number}", daemon=True).start()

    def submit(self, caller: str, call: Callable[[], Any]) -> Future[Any]:
        """Run `call()` on a thread, in `caller`'s turn; its future holds the outcome."""
        future: Future[Any] = Future()
        with self._ready:
            self._queues.setdefault(caller, deque()).append((future, call))
            self._ready.notify()
        return future

    def _next(self) -> tuple[Future[Any], Callable[[], Any]]:
        with self._ready:
            while not self._queues:
                self._ready.wait()
            caller, queue = next(iter(self._queues.items()))
            item = queue.popleft()
            if queue:
                self._queues.move_to_end(caller)  # the next caller's turn
            else:
                del self._queues[caller]
            return item

    def _work(self) -> None:
        while True:
            future, call = self._next()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(call())
            except BaseException as error:  # the awaiting request handles it
                future.set_exception(error)
