"""Tasks, handlers and the Mux that routes tasks to them.

Mirrors the Go SDK's handler.go: a handler is a callable taking a Task and
returning its result; a Mux refuses invalid and duplicate names; middleware
is a callable taking a handler and returning one.
"""

import datetime
import inspect
import os
import re
import signal
import subprocess
import threading
import time

from . import _errors
from . import trace as _trace

#: Longest function name, in bytes (function names are NATS subject tokens).
MAX_FUNCTION_NAME_BYTES = 128

_NAME_RE = re.compile(r"[A-Za-z0-9_-]")


def validate_function_name(name):
    """Raises ValueError unless name is 1..128 bytes of A-Z a-z 0-9 _ -."""
    if not isinstance(name, str) or name == "":
        raise ValueError("omniq_plugin: a function name is required, got %r" % (name,))
    size = len(name.encode("utf-8"))
    if size > MAX_FUNCTION_NAME_BYTES:
        raise ValueError("omniq_plugin: function name %r is %d bytes, over the %d-byte limit"
                         % (name, size, MAX_FUNCTION_NAME_BYTES))
    for i, ch in enumerate(name):
        if not _NAME_RE.fullmatch(ch):
            raise ValueError("omniq_plugin: function name %r has %r at character %d; only A-Z a-z 0-9 _ - are allowed"
                             % (name, ch, i))


# How much longer than the time left Task.wait() waits, on an attempt
# whose deadline the SDK passes (Task._manage_expiry), should the SDK be
# late to wake it.
_EXPIRY_SLACK = 1.0


class Task:
    """One attempt of a task, as a handler sees it.

    Attributes:
        id: the task id, stable across attempts.
        function: the function the task was submitted for.
        payload: the payload, as submitted (bytes).
        headers: the task message's user headers (dict of str).
        attempt: 1 for the first attempt.
        retry_count: retries already made.
        deadline: when the attempt times out, Unix time in seconds (float),
            or None for none.
        span: the OpenTelemetry span the handler runs in, or None (see
            omniq_plugin.trace).

    A handler that runs for long should return when ``task.done()``: the
    runner kills a plugin whose handler is still running 2 s past its
    deadline, failing every task on it. ``task.wait(seconds)`` sleeps until
    then at most.
    """

    def __init__(self, function="", payload=b"", *, id="", headers=None, attempt=1, retry_count=0, deadline=None,
                 progress=None):
        self.id = id
        self.function = function
        self.payload = bytes(payload)
        self.headers = dict(headers or {})
        self.attempt = attempt
        self.retry_count = retry_count
        self.deadline = deadline
        self.span = None
        self._progress = progress
        self._cancelled = threading.Event()
        self._wake = threading.Event()  # set by cancel() and _expire()
        # None: the clock says when the deadline has passed; an Event: the
        # SDK running the attempt says, once it has read where the handler
        # is for the timeout's traceback (see _manage_expiry).
        self._expired = None

    def __repr__(self):
        return "Task(id=%r, function=%r, attempt=%r, %d payload bytes)" % (
            self.id, self.function, self.attempt, len(self.payload))

    def report_progress(self, fraction, message=""):
        """Tells the runner how far the task has come: fraction 0..1 (or
        negative when unknown) and what the handler is doing. It also keeps
        the task alive, so long handlers should report now and then."""
        if self._progress is not None:
            self._progress(float(fraction), str(message))

    def time_left(self):
        """Seconds until the deadline (0 once it passed), or None for none."""
        if self.deadline is None:
            return None
        return max(self.deadline - time.time(), 0.0)

    @property
    def cancelled(self):
        """Whether the task was cancelled (or the runner stopped waiting)."""
        return self._cancelled.is_set()

    @property
    def deadline_exceeded(self):
        """Whether the attempt's deadline has passed."""
        if self._expired is not None:
            return self._expired.is_set()
        return self.deadline is not None and time.time() >= self.deadline

    def done(self):
        """Whether the handler should stop: cancelled or past the deadline."""
        return self.cancelled or self.deadline_exceeded

    def wait(self, timeout=None):
        """Sleeps until the task is done or timeout seconds have passed,
        whichever is first; returns done()."""
        left = self.time_left()
        if left is not None and self._expired is not None:
            # The SDK wakes it at the deadline, once it has read where the
            # handler is; this only bounds the wait should it be late.
            left += _EXPIRY_SLACK
        if timeout is None or (left is not None and left < timeout):
            timeout = left
        self._wake.wait(timeout)
        return self.done()

    def cancel(self):
        """Marks the task cancelled; the SDK calls it when the runner cancels
        the attempt."""
        self._cancelled.set()
        self._wake.set()

    def _manage_expiry(self):
        """Makes the deadline pass when the SDK calls _expire() rather than
        by the clock: at the deadline the SDK reads where the handler is,
        for the timeout's traceback, before a handler waiting in wait() or
        checking done() is told (or it would return, its stack gone)."""
        self._expired = threading.Event()

    def _expire(self):
        """The deadline has passed (see _manage_expiry)."""
        self._expired.set()
        self._wake.set()

    def popen(self, args, **kwargs):
        """subprocess.Popen for a handler: a child process that stops when
        the attempt does.

        A handler that kills only the process it started (``p.kill()``)
        leaves what that process started running: ``sh -c "..."``'s
        children outlive a cancellation or the deadline. The process
        started here runs in a session (and process group) of its own, and
        as soon as the task is cancelled or its deadline passes while that
        process runs, the whole group gets SIGKILL: the process and what it
        started that stayed in its group. ``communicate()`` and ``wait()``
        then return, and the handler can return. What the command leaves
        running when it exits by itself is not stopped. Takes Popen's arguments
        (``start_new_session`` is always on); Unix only."""
        if kwargs.get("start_new_session") is False:
            raise ValueError("omniq_plugin: Task.popen runs the command in a session of its own; "
                             "start_new_session=False would undo that")
        kwargs["start_new_session"] = True
        proc = subprocess.Popen(args, **kwargs)
        threading.Thread(target=self._stop_with_task, args=(proc,), daemon=True,
                         name="omniq-popen-%d" % proc.pid).start()
        return proc

    def _stop_with_task(self, proc):
        """Kills proc's process group once the task is done while proc still
        runs; returns when either has ended."""
        while proc.poll() is None:
            if self.done():
                try:
                    # proc is not reaped yet (poll said so), so its pid
                    # still names its group.
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                return
            left = self.time_left()
            # Polled until the deadline by the clock, or, when the SDK
            # passes it (_manage_expiry), woken then.
            self._wake.wait(0.05 if left is None or self._expired is not None else min(0.05, left))

    def header(self, name):
        """The value of header name, matched without regard to case (as
        NATS and HTTP headers), or None. The name as given wins; among
        names that differ from it only in case (a task may carry both
        X-Key and x-key), the smallest, as the Go SDK's Task.Header
        picks: a task reads the same in either SDK."""
        if name in self.headers:
            return self.headers[name]
        lower = name.lower()
        found = None
        for k in self.headers:
            if k.lower() == lower and (found is None or k < found):
                found = k
        return None if found is None else self.headers[found]

    @property
    def traceparent(self):
        """The W3C traceparent header the runner passed, or None."""
        return self.header(_trace.TRACEPARENT) or None

    @property
    def tracestate(self):
        """The W3C tracestate header the runner passed, or None."""
        return self.header(_trace.TRACESTATE) or None

    @property
    def trace_context(self):
        """The parsed traceparent (a trace.TraceParent), or None when absent
        or invalid."""
        return _trace.parse_traceparent(self.traceparent)


class FunctionSpec:
    """What a plugin declares about one function; None or 0 means the
    runner's default.

    Attributes:
        name: the function name.
        timeout: default per-attempt timeout, in seconds, or None.
        max_retries: default retry budget (0 means no retries), or None.
        concurrency: tasks of the function the plugin can run at once, or 0.
        description: what the function does, for operators.
    """

    __slots__ = ("name", "timeout", "max_retries", "concurrency", "description")

    def __init__(self, name, timeout=None, max_retries=None, concurrency=0, description=""):
        self.name = name
        self.timeout = timeout
        self.max_retries = max_retries
        self.concurrency = concurrency
        self.description = description

    def __repr__(self):
        return "FunctionSpec(name=%r, timeout=%r, max_retries=%r, concurrency=%r, description=%r)" % (
            self.name, self.timeout, self.max_retries, self.concurrency, self.description)


class Mux:
    """Routes tasks to handlers by function name, like Go's sdk.Mux.

    Register every handler before serve(); a Mux is then safe to use from
    many threads. A Mux is itself a handler: calling it with a Task runs the
    handler registered for task.function, wrapped in the middleware.
    """

    def __init__(self):
        self._lock = threading.Lock()
        self._entries = {}
        self._middleware = []

    def handle(self, name, handler, *, timeout=None, max_retries=None, concurrency=0, description=""):
        """Registers handler (a callable taking a Task and returning bytes,
        str or None) for function name, with the function's defaults:
        timeout in seconds (or a timedelta), max_retries, concurrency and a
        description.

        Raises ValueError on a programming error, as Go's Mux panics: an
        invalid name, a handler that is not callable or is an async def, a
        negative option, or a name registered twice.
        """
        validate_function_name(name)
        if not callable(handler):
            raise ValueError("omniq_plugin: handle(%r): the handler is not callable: %r" % (name, handler))
        if inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(getattr(handler, "__call__", None)):
            raise ValueError("omniq_plugin: handle(%r): the handler is a coroutine function (async def): handlers are "
                             "plain functions, each run in a thread of its own; to await inside one, call "
                             "asyncio.run(...) from a plain handler" % (name,))
        if isinstance(timeout, datetime.timedelta):
            timeout = timeout.total_seconds()
        for what, value in (("timeout", timeout), ("max_retries", max_retries), ("concurrency", concurrency)):
            if value is not None and value < 0:
                raise ValueError("omniq_plugin: handle(%r): %s must not be negative, got %r" % (name, what, value))
        spec = FunctionSpec(name, timeout, max_retries, concurrency or 0, description or "")
        with self._lock:
            if name in self._entries:
                raise ValueError("omniq_plugin: function %r is registered twice" % name)
            self._entries[name] = (spec, handler)

    def function(self, name=None, **options):
        """Decorator form of handle(); the name defaults to the function's:

            @mux.function("resize", timeout=30)
            def resize(task): ...
        """
        def register(handler):
            self.handle(name or handler.__name__, handler, **options)
            return handler
        return register

    def use(self, *middleware):
        """Appends middleware (callables taking a handler and returning a
        handler) applied to every handler, outermost first."""
        with self._lock:
            self._middleware.extend(middleware)

    def functions(self):
        """Returns the registered functions' FunctionSpecs, sorted by name."""
        with self._lock:
            return [spec for _, (spec, _h) in sorted(self._entries.items())]

    def __call__(self, task):
        with self._lock:
            entry = self._entries.get(task.function)
            middleware = list(self._middleware)
        if entry is None:
            raise _errors.with_traceback("", _errors.permanent(_errors.with_type(
                _errors.UNKNOWN_FUNCTION, "this plugin does not serve function %r" % task.function)))
        handler = entry[1]
        for mw in reversed(middleware):
            handler = mw(handler)
        return handler(task)


class Outcome:
    """How one attempt ended: output (bytes) on success, else failure (a
    Failure); progress lists the (fraction, message) pairs reported."""

    __slots__ = ("output", "failure", "progress")

    def __init__(self, output=None, failure=None, progress=None):
        self.output = output
        self.failure = failure
        self.progress = progress if progress is not None else []

    def __repr__(self):
        return "Outcome(output=%r, failure=%r, progress=%r)" % (self.output, self.failure, self.progress)


def _as_bytes(function, out):
    if out is None:
        return b""
    if isinstance(out, str):
        return out.encode("utf-8")
    if isinstance(out, (bytes, bytearray, memoryview)):
        return bytes(out)
    raise TypeError("the handler of %r returned %s; want bytes, str or None" % (function, type(out).__name__))


def invoke(handler, task, tracer_provider=None):
    """Runs handler on task and returns an Outcome (its progress left
    empty). Any exception becomes a Failure with its Python traceback (see
    failure_of); with OpenTelemetry installed the handler runs inside a span
    whose parent is the task's trace context."""
    with _trace.start_span(task, tracer_provider) as span:
        task.span = span
        try:
            return Outcome(output=_as_bytes(task.function, handler(task)))
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # noqa: B902 - every failure of the handler is the task's, reported
            f = _errors.failure_of(exc, timed_out=task.deadline_exceeded, cancelled=task.cancelled)
            _trace.record_failure(span, f, exc)
            return Outcome(failure=f)
