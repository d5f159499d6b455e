"""Celery's prefork pool, with a fix for the worker hanging at warm shutdown on the embedded broker.

With a broker transport that has no event loop (kombu's filesystem transport, our embedded default),
billiard runs the time-limit watcher as a thread. A warm shutdown closes and joins the pool but never
stops that thread, and billiard's exit finalizer then joins it forever: the worker prints "Warm shutdown"
and never exits. Stopping the watcher once the pool has drained lets the process exit. Redis, which has
an event loop, never starts that thread, so this changes nothing there.
"""

from __future__ import annotations

from celery.concurrency.prefork import TaskPool as PreforkTaskPool


class TaskPool(PreforkTaskPool):
    def on_stop(self) -> None:
        timeout_handler = getattr(self._pool, "_timeout_handler", None)
        super().on_stop()
        if timeout_handler is not None:
            timeout_handler.terminate()
