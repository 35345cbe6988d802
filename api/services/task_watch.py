"""In-process wake-ups for requests that wait on a task (`?wait=`, SSE).

A task changes when a runner or the dispatcher reports to *this* process; the
waiting request then wakes at once, with the task as the transaction left it (no
extra read). Changes made through another instance are seen by the waiter's
periodic re-read instead. Only tasks someone waits on are tracked, so memory stays
bounded by the number of waiting requests, which is itself bounded (`hold`): at most
MAX_HELD_REQUESTS per process, of which at most MAX_HELD_REQUESTS_PER_USER for any one
user, so one user's streams cannot make everyone else's `?wait` return at once.
"""

from __future__ import annotations

import threading
from contextlib import contextmanager

from api import config
from api.models.documents import TaskDoc


class _Watched:
    __slots__ = ("waiters", "version", "latest")

    def __init__(self) -> None:
        self.waiters = 0
        self.version = 0
        self.latest: TaskDoc | None = None


class TaskWatch:
    def __init__(
        self,
        max_held: int = config.MAX_HELD_REQUESTS,
        max_held_per_user: int = config.MAX_HELD_REQUESTS_PER_USER,
    ) -> None:
        self._cond = threading.Condition()
        self._watched: dict[str, _Watched] = {}
        self.max_held = max_held
        self.max_held_per_user = max_held_per_user
        self._held_lock = threading.Lock()
        self._held_by: dict[str, int] = {}

    # -- how many requests may hold a thread -------------------------------------

    def try_hold(self, user: str) -> bool:
        """True if this request of `user` may hold a thread to wait; then call
        `release(user)`."""
        with self._held_lock:
            mine = self._held_by.get(user, 0)
            if mine >= self.max_held_per_user or sum(self._held_by.values()) >= self.max_held:
                return False
            self._held_by[user] = mine + 1
            return True

    def release(self, user: str) -> None:
        with self._held_lock:
            left = self._held_by.get(user, 0) - 1
            if left > 0:
                self._held_by[user] = left
            else:
                self._held_by.pop(user, None)

    @contextmanager
    def hold(self, user: str):
        """Yields True if this request may hold a thread to wait, else False."""
        acquired = self.try_hold(user)
        try:
            yield acquired
        finally:
            if acquired:
                self.release(user)

    # -- change notifications ----------------------------------------------------

    @contextmanager
    def watching(self, task_id: str):
        with self._cond:
            entry = self._watched.setdefault(task_id, _Watched())
            entry.waiters += 1
        try:
            yield
        finally:
            with self._cond:
                entry.waiters -= 1
                if entry.waiters == 0:
                    del self._watched[task_id]

    def changed(self, task_id: str, task: TaskDoc | None = None) -> None:
        """Tell waiters `task_id` changed; `task` is its new state when known."""
        with self._cond:
            entry = self._watched.get(task_id)
            if entry is None:
                return
            entry.version += 1
            entry.latest = task
            self._cond.notify_all()

    def version(self, task_id: str) -> int:
        with self._cond:
            entry = self._watched.get(task_id)
            return entry.version if entry else 0

    def wait(self, task_id: str, seen: int, timeout: float) -> TaskDoc | None:
        """Block until the task changes past version `seen` (or `timeout`); return its
        new state if the change carried one. Call inside `watching(task_id)`."""
        with self._cond:
            entry = self._watched[task_id]
            changed = self._cond.wait_for(lambda: entry.version != seen, timeout=timeout)
            return entry.latest if changed else None
