"""W3C trace context for handlers, and OpenTelemetry when it is installed.

The runner passes the task's trace context to the plugin in the
ExecuteRequest's headers, under "traceparent" and "tracestate" (W3C Trace
Context). A handler reads it as ``task.traceparent``, ``task.tracestate`` and
``task.trace_context`` (parsed). When the ``opentelemetry`` package
(opentelemetry-api) is importable, the SDK runs each handler inside a span
whose parent is that context, so spans the handler starts join the task's
trace; ``task.span`` is that span. OpenTelemetry is optional: without it,
nothing is traced and nothing fails.
"""

import collections
import re

TRACEPARENT = "traceparent"
TRACESTATE = "tracestate"

_TRACEPARENT_RE = re.compile(r"^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})(-.*)?$")


class TraceParent(collections.namedtuple("TraceParent", "version trace_id span_id flags")):
    """A parsed W3C traceparent header: lowercase hex fields; flags is an int."""

    __slots__ = ()

    @property
    def sampled(self):
        """Whether the caller sampled the trace (flag 0x01)."""
        return bool(self.flags & 1)


def parse_traceparent(value):
    """Parses a W3C traceparent ("00-<32 hex trace id>-<16 hex span id>-<2 hex flags>").

    Returns a TraceParent, or None when value is missing or invalid (as a
    W3C propagator ignores an invalid header): wrong shape, upper-case hex,
    version ff, an all-zero trace or span id, or extra fields on version 00.
    """
    if not value:
        return None
    m = _TRACEPARENT_RE.match(value.strip())
    if m is None:
        return None
    version, trace_id, span_id, flags, rest = m.groups()
    if version == "ff" or (version == "00" and rest):
        return None
    if trace_id == "0" * 32 or span_id == "0" * 16:
        return None
    return TraceParent(version, trace_id, span_id, int(flags, 16))


try:  # OpenTelemetry is optional: Debian has no python3-opentelemetry.
    from opentelemetry import trace as _otel_trace
    from opentelemetry.trace import Status as _Status, StatusCode as _StatusCode
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator as _Propagator
except ImportError:  # pragma: no cover - depends on the machine
    _otel_trace = None

#: Whether the opentelemetry package was importable.
OTEL_AVAILABLE = _otel_trace is not None


class _NoSpan:
    """Stands in for a span when OpenTelemetry is absent or disabled."""

    def __enter__(self):
        return None

    def __exit__(self, *exc):
        return False


def start_span(task, tracer_provider=None):
    """Returns a context manager running the handler of task inside an
    OpenTelemetry span (kind CONSUMER, parent: the task's trace context),
    yielding the span; a no-op yielding None without OpenTelemetry."""
    if _otel_trace is None:
        return _NoSpan()
    carrier = {k: v for k, v in ((TRACEPARENT, task.traceparent), (TRACESTATE, task.tracestate)) if v}
    parent = _Propagator().extract(carrier=carrier)
    tracer = _otel_trace.get_tracer("omniq_plugin", tracer_provider=tracer_provider)
    return tracer.start_as_current_span(
        "omniq.execute " + task.function, context=parent, kind=_otel_trace.SpanKind.CONSUMER,
        attributes={"omniq.task.id": task.id, "omniq.task.function": task.function,
                    "omniq.task.attempt": task.attempt, "omniq.task.retry_count": task.retry_count},
        record_exception=False, set_status_on_exception=False)


def record_failure(span, failure, exc=None):
    """Marks span as failed with the TaskError's fields as attributes."""
    if span is None or _otel_trace is None:
        return
    if exc is not None:
        span.record_exception(exc)
    span.set_attribute("omniq.error.type", failure.error_type)
    span.set_attribute("omniq.error.message", failure.message)
    span.set_attribute("omniq.error.is_retryable", not failure.permanent)
    span.set_status(_Status(_StatusCode.ERROR, failure.message))
