"""Handler errors and how a failed attempt is classified.

Mirrors the Go SDK's errors.go: a handler steers retries by raising a
HandlerError, usually built with permanent(), with_type(), retry_after() and
with_traceback(), which compose.
"""

import datetime
import os
import re
import sys
import traceback as _traceback

HANDLER_ERROR = "handler_error"
TIMEOUT = "timeout"
CANCELLED = "cancelled"
UNKNOWN_FUNCTION = "unknown_function"

#: Largest traceback reported, as the runner's models.MaxTracebackBytes.
MAX_TRACEBACK_BYTES = 16 << 10


class HandlerError(Exception):
    """An error raised by a handler, carrying OmniQ's classification.

    Raises ValueError for an error_type only the runner assigns
    (RUNNER_ONLY_TYPES), as with_type does.

    Attributes:
        error_type: the TaskError's error_type; None means the class name
            of a subclass (class CardDeclined(HandlerError)), else the
            wrapped exception's class name, or "handler_error" for a bare
            message.
        permanent: retrying cannot help; the task is dead-lettered at once.
        retry_after: seconds to wait at least before the next attempt, or
            None for the runner's backoff.
        traceback: text reported as the TaskError's traceback (a script's
            stderr, say); None means the Python traceback of the raise.

    The wrapped exception, if any, is ``__cause__``, so ``raise
    omniq_plugin.permanent(err)`` keeps the original in the traceback.
    """

    def __init__(self, message="", *, error_type=None, permanent=False, retry_after=None, traceback=None):
        super().__init__(message)
        if error_type in RUNNER_ONLY_TYPES:
            # As with_type: the runner would record handler_error instead.
            raise ValueError(
                f"omniq_plugin: HandlerError was given error_type={error_type!r}, a type only the runner assigns "
                "(docs/errors.md); name your own, e.g. 'UpstreamTimeout'")
        self.error_type = error_type
        self.permanent = permanent
        self.retry_after = _seconds("retry_after", retry_after)
        self.traceback = traceback

    def __str__(self):
        cause = self.__cause__
        if not self.args or self.args[0] == "":
            return _describe(cause) if cause is not None else (self.error_type or _own_type(self) or HANDLER_ERROR)
        return str(self.args[0])


def _own_type(err):
    """The class name of a HandlerError subclass (class CardDeclined(HandlerError)),
    an error type of the handler's own; None for HandlerError itself."""
    return type(err).__name__ if type(err) is not HandlerError else None


def _seconds(what, value):
    if value is None:
        return None
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    value = float(value)
    if value < 0:
        raise ValueError("omniq_plugin: %s must not be negative, got %r" % (what, value))
    return value


def _classify(err):
    """Returns a new HandlerError carrying err's classification, wrapping err."""
    if isinstance(err, HandlerError):
        e = HandlerError(err.args[0] if err.args else "", error_type=err.error_type or _own_type(err), permanent=err.permanent,
                         retry_after=err.retry_after, traceback=err.traceback)
        e.__cause__ = err.__cause__
        e.__context__ = err.__context__
        e.__traceback__ = err.__traceback__
        return e
    if isinstance(err, BaseException):
        e = HandlerError()
        e.__cause__ = err
        return e
    if isinstance(err, str):
        return HandlerError(err)
    raise TypeError("omniq_plugin: want an exception or a message, got %s" % type(err).__name__)


def permanent(err):
    """Marks err (an exception or a message) as not retryable.

    Returns a HandlerError to raise: ``raise omniq_plugin.permanent(err)``.
    """
    e = _classify(err)
    e.permanent = True
    return e


# Error types only the runner assigns, from what it saw happen (Go:
# models.AssignedByRunner); a handler reporting one gets handler_error.
RUNNER_ONLY_TYPES = frozenset(
    ("plugin_crash", "timeout", "plugin_unavailable", "invalid_task", "cancelled", "interrupted"))


def with_type(error_type, err):
    """Reports err with error_type (e.g. "ValidationError") instead of the
    exception's class name or "handler_error". Returns a HandlerError.
    Raises ValueError for an empty type or one only the runner assigns
    (RUNNER_ONLY_TYPES: name your own, e.g. "UpstreamTimeout")."""
    if not error_type:
        raise ValueError("omniq_plugin: with_type needs a non-empty error type")
    if error_type in RUNNER_ONLY_TYPES:
        raise ValueError(
            f"omniq_plugin: with_type was given {error_type!r}, a type only the runner assigns "
            "(docs/errors.md); name your own, e.g. 'UpstreamTimeout'")
    e = _classify(err)
    e.error_type = error_type
    return e


def retry_after(seconds, err):
    """Asks OmniQ to wait at least seconds (a number or a timedelta) before
    the next attempt; it wins over the runner's backoff. Returns a
    HandlerError."""
    e = _classify(err)
    e.retry_after = _seconds("retry_after", seconds)
    return e


def with_traceback(text, err):
    """Reports text (a stack, a command's stderr) as the TaskError's
    traceback instead of the Python traceback. Returns a HandlerError."""
    e = _classify(err)
    e.traceback = text
    return e


class Failure:
    """How a failed attempt leaves the plugin: a TaskError without what only
    the runner knows (timestamp, retry count, the final retry decision).

    Attributes:
        error_type: "handler_error", "timeout", "cancelled", an exception's
            class name ("ZeroDivisionError") or the handler's own type.
        message: the error text.
        traceback: the Python traceback (or the text the handler attached),
            at most MAX_TRACEBACK_BYTES.
        permanent: the handler marked the error as not retryable.
        retry_after: seconds the handler asked to wait, or None.
    """

    __slots__ = ("error_type", "message", "traceback", "permanent", "retry_after")

    def __init__(self, error_type, message, traceback="", permanent=False, retry_after=None):
        self.error_type = error_type
        self.message = message
        self.traceback = traceback
        self.permanent = permanent
        self.retry_after = retry_after

    def __repr__(self):
        return "Failure(error_type=%r, message=%r, permanent=%r, retry_after=%r, traceback=%d chars)" % (
            self.error_type, self.message, self.permanent, self.retry_after, len(self.traceback))


def _describe(exc):
    """ "ZeroDivisionError: division by zero", as the traceback's last line."""
    return "".join(_traceback.format_exception_only(type(exc), exc)).strip()


def _script_path():
    """(the path Python was handed for the plugin script, its real path), or
    None. omniq-runner executes a plugin from the descriptor it checked, so
    a script's interpreter gets /proc/self/fd/N as the script's path, and
    tracebacks would name that for the script's own frames. Resolved when
    this module is imported, while the descriptor is certainly open."""
    argv0 = sys.argv[0] if sys.argv else ""
    if not re.fullmatch(r"/(proc/self|dev)/fd/[0-9]+", argv0):
        return None
    try:
        real = os.path.realpath(argv0)
    except OSError:
        return None
    if real == argv0 or real.endswith(" (deleted)") or not os.path.isfile(real):
        return None
    return argv0, real


_SCRIPT_PATH = _script_path()


def _real_paths(tb):
    """tb with the plugin script's descriptor path replaced by its real path."""
    if _SCRIPT_PATH is None:
        return tb
    fd_path, real = _SCRIPT_PATH
    return tb.replace('File "%s"' % fd_path, 'File "%s"' % real)


def deadline_failure(thread):
    """The timeout of an attempt whose handler runs on thread past its
    deadline, with that thread's stack now as its traceback; None when the
    handler has just returned (its thread has ended, or runs only the
    SDK's code)."""
    frame = sys._current_frames().get(thread.ident)
    if frame is None:
        return None
    frames = _traceback.extract_stack(frame)
    # From the handler on: past the thread's start and the SDK's frames
    # that call the handler (not those the handler calls, task.wait()).
    sdk = os.path.dirname(os.path.abspath(__file__)) + os.sep
    first = next((i for i, f in enumerate(frames) if f.filename.startswith(sdk)), 0)
    while first < len(frames) and frames[first].filename.startswith(sdk):
        first += 1
    if first >= len(frames):
        return None
    stack = "Stack of the handler's thread at its deadline (most recent call last):\n" + \
        "".join(_traceback.format_list(frames[first:]))
    return Failure(TIMEOUT, "task did not finish by its deadline",
                   traceback=truncate_traceback(_real_paths(stack)))


def truncate_traceback(text, limit=MAX_TRACEBACK_BYTES):
    """Bounds text to limit bytes of UTF-8, keeping its head and its tail
    (where a Python traceback names the exception)."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    marker = b"\n... (traceback truncated) ...\n"
    keep = max(limit - len(marker), 0)
    head, tail = keep // 4, keep - keep // 4
    return (data[:head] + marker + data[len(data) - tail:]).decode("utf-8", "ignore")


# The directory of the SDK's own modules, whose frames (invoke, the
# middleware chain) come before the handler's in a traceback.
_SDK_DIR = os.path.dirname(os.path.abspath(__file__)) + os.sep


def _from_handler(tb):
    """tb from its first frame outside the SDK on: where the handler's code
    begins; tb itself when every frame is the SDK's."""
    t = tb
    while t is not None and t.tb_frame.f_code.co_filename.startswith(_SDK_DIR):
        t = t.tb_next
    return t or tb


def failure_of(exc, *, timed_out=False, cancelled=False):
    """Classifies exc, raised by a handler.

    The error type is the one the handler named, else "timeout" when the
    attempt's deadline has passed (timed_out) or "cancelled" when the task
    was cancelled, else the exception's class name ("handler_error" for a
    HandlerError built from a message).
    """
    tb = _real_paths("".join(_traceback.format_exception(type(exc), exc, _from_handler(exc.__traceback__))))
    if isinstance(exc, HandlerError):
        cause = exc.__cause__
        error_type = exc.error_type or _own_type(exc)
        implicit = type(cause).__name__ if cause is not None else HANDLER_ERROR
        f = Failure(error_type or implicit, str(exc), exc.traceback if exc.traceback is not None else tb,
                    exc.permanent, exc.retry_after)
    else:
        error_type = None
        f = Failure(type(exc).__name__, _describe(exc), tb)
    if error_type is None:
        if timed_out:
            f.error_type = TIMEOUT
        elif cancelled:
            f.error_type = CANCELLED
    f.traceback = truncate_traceback(f.traceback)
    if not f.message:
        f.message = f.error_type
    return f
