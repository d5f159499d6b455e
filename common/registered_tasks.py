"""Find a Celery task by the name it is registered under, so the code that sends it need not import its module.

A tasks module calls the services of its app, so a service that queues one of those tasks cannot import it without an
import cycle. Instead, each task is declared with an explicit `name=` held by the module that sends it, each app's
`AppConfig.ready()` imports its tasks module (so every process, web or worker, has them registered), and the sender
looks the task up here and calls `delay()` / `apply_async()` on it: the same call on the same task object as an
import would give, so the options the task declares (acks_late, queue, routing, retries) all still apply.
"""

from __future__ import annotations

from celery import Task, current_app


def registered_task(name: str) -> Task:
    """The task registered as `name`; raises celery's NotRegistered (a KeyError) for an unknown name."""
    return current_app.tasks[name]
