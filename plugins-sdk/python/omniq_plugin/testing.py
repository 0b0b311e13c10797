"""Helpers for testing handlers in-process, like the Go SDK's sdktest.Run."""

import threading
import time

from . import _errors
from ._mux import Outcome, Task, invoke


# How long past its deadline run waits for a handler to return: the
# runner kills a plugin whose handler still runs 2 s after its deadline.
KILL_GRACE = 2.0


def run(handler, task=None, *, tracer_provider=None, **task_fields):
    """Runs handler (a callable or a Mux) on task the way a plugin runs it:
    with a deadline (default: 60 s from now), progress captured, exceptions
    classified with their traceback. Without task, one is made from
    task_fields (function, payload, headers, ...). Returns an Outcome.

    A handler still running KILL_GRACE (2 s) past the deadline, where the
    runner would kill its plugin, fails with a timeout whose traceback is
    its thread's stack then, as the plugin reports it; its thread (a
    daemon) is left running, since Python cannot stop a thread."""
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
    result, raised = [], []

    def attempt():
        try:
            result.append(invoke(handler, task, tracer_provider))
        except BaseException as exc:  # noqa: B902 - re-raised in the caller, as before
            raised.append(exc)

    thread = threading.Thread(target=attempt, name="omniq-testing-" + (task.id or task.function or "task"), daemon=True)
    thread.start()
    thread.join(max(task.deadline + KILL_GRACE - time.time(), 0.0))
    f = None
    if thread.is_alive():
        f = _errors.deadline_failure(thread)
        thread.join(0.1 if f is not None else None)  # a handler returning just now gives its own outcome
    if raised:
        raise raised[0]
    out = result[0] if result else Outcome(failure=f)
    with lock:
        out.progress = list(progress)
    return out
