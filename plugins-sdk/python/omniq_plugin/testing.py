"""Helpers for testing handlers in-process, like the Go SDK's sdktest.Run."""

import datetime
import math
import threading
import time

from . import _errors
from ._mux import Mux, Outcome, Task, invoke


# How long past its deadline run waits for a handler to return: the
# runner kills a plugin whose handler still runs 2 s after its deadline.
KILL_GRACE = 2.0

# The runner's own per-attempt timeout, for a function that declares none
# (runner.DefaultTimeout: 5 minutes).
DEFAULT_TIMEOUT = 300.0


def _seconds(timeout):
    """timeout (seconds, or a timedelta) in seconds; ValueError naming it
    when it is not a positive finite number."""
    if isinstance(timeout, datetime.timedelta):
        timeout = timeout.total_seconds()
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ValueError("omniq_plugin.testing.run: timeout must be a number of seconds or a timedelta, got %r"
                         % (timeout,))
    if not math.isfinite(timeout) or timeout <= 0:
        raise ValueError("omniq_plugin.testing.run: timeout must be more than 0 seconds, got %r" % (timeout,))
    return float(timeout)


def _declared_timeout(handler, function):
    """The timeout handler (a Mux) declares for function, or None."""
    if isinstance(handler, Mux):
        for spec in handler.functions():
            if spec.name == function and spec.timeout:
                return float(spec.timeout)
    return None


def run(handler, task=None, *, timeout=None, tracer_provider=None, **task_fields):
    """Runs handler (a callable or a Mux) on task the way a plugin runs it:
    with a deadline, progress captured, exceptions classified with their
    traceback. Without task, one is made from task_fields (function,
    payload, headers, deadline, ...). Returns an Outcome.

    The attempt's deadline is task's (or the deadline task field), else
    timeout seconds (a number or a timedelta) from now, else, as the
    runner would give it, the timeout the Mux declares for the task's
    function, else the runner's default, DEFAULT_TIMEOUT (5 minutes).
    Giving both a deadline and timeout, or a timeout that is not a
    positive number of seconds, raises ValueError.

    A handler that has not returned by the deadline fails with a timeout
    whose traceback is its thread's stack at the deadline, as in a plugin,
    whose runner records the timeout without waiting for the handler: what
    the handler returns or raises later is not its outcome. run waits for
    it to return, for at most KILL_GRACE (2 s) past the deadline, where the
    runner would kill its plugin; then its thread (a daemon) is left
    running, since Python cannot stop a thread."""
    progress = []
    lock = threading.Lock()

    def report(fraction, message):
        with lock:
            progress.append((fraction, message))

    if timeout is not None:
        timeout = _seconds(timeout)
    if task is None:
        task = Task(**task_fields)
    elif task_fields:
        raise ValueError("omniq_plugin.testing.run: task fields %s given with a task; set them on the task"
                         % ", ".join(sorted(task_fields)))
    if task.deadline is not None and timeout is not None:
        raise ValueError("omniq_plugin.testing.run: both a deadline (%r) and a timeout (%r) given; give one"
                         % (task.deadline, timeout))
    task._progress = report
    if task.deadline is None:
        if timeout is None:
            timeout = _declared_timeout(handler, task.function) or DEFAULT_TIMEOUT
        task.deadline = time.time() + timeout
    result, raised = [], []
    # Whether the handler has returned, decided under returned_lock against
    # its deadline: one of the two comes first.
    returned_lock, returned = threading.Lock(), []
    task._manage_expiry()

    def attempt():
        try:
            result.append(invoke(handler, task, tracer_provider))
        except BaseException as exc:  # noqa: B902 - re-raised in the caller, as before
            raised.append(exc)
        finally:
            with returned_lock:
                returned.append(True)

    thread = threading.Thread(target=attempt, name="omniq-testing-" + (task.id or task.function or "task"), daemon=True)
    thread.start()
    thread.join(max(task.deadline - time.time(), 0.0))
    f = None
    with returned_lock:
        if not returned:
            # At the deadline, as the plugin does: where the handler is,
            # read before it is told (task.wait() returns, done() is True).
            f = _errors.deadline_failure(thread) or _errors.Failure(_errors.TIMEOUT, "task did not finish by its deadline")
            task._expire()
    thread.join(max(task.deadline + KILL_GRACE - time.time(), 0.0))
    if raised:
        raise raised[0]
    out = Outcome(failure=f) if f is not None else result[0]
    with lock:
        out.progress = list(progress)
    return out
