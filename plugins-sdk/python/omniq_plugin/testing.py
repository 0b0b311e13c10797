"""Helpers for testing handlers in-process, like the Go SDK's sdktest.Run."""

import threading
import time

from ._mux import Task, invoke


def run(handler, task=None, *, tracer_provider=None, **task_fields):
    """Runs handler (a callable or a Mux) on task the way a plugin runs it:
    with a deadline (default: 60 s from now), progress captured, exceptions
    classified with their traceback. Without task, one is made from
    task_fields (function, payload, headers, ...). Returns an Outcome."""
    progress = []
    lock = threading.Lock()

    def report(fraction, message):
        with lock:
            progress.append((fraction, message))

    if task is None:
        task = Task(**task_fields)
    task._progress = report
    if task.deadline is None:
        task.deadline = time.time() + 60
    out = invoke(handler, task, tracer_provider)
    with lock:
        out.progress = list(progress)
    return out
