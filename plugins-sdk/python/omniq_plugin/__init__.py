"""omniq_plugin: serve OmniQ functions from a Python process.

A plugin is an executable file in the runner's plugins directory::

    #!/usr/bin/env python3
    import omniq_plugin as omniq

    mux = omniq.Mux()

    @mux.function("shout", timeout=10, max_retries=3, concurrency=4,
                  description="upper-cases its payload")
    def shout(task):
        task.report_progress(0.5, "shouting")
        if not task.payload:
            raise omniq.permanent(omniq.with_type("ValidationError", "empty payload"))
        return task.payload.upper()

    if __name__ == "__main__":
        omniq.serve(mux, name="shout", version="1.0.0")

Handlers take a Task and return bytes, str or None. Any exception fails the
attempt, reported with its Python traceback: its error_type is the
exception's class name ("ZeroDivisionError"), retryable. Raise what
permanent(), with_type(), retry_after() and with_traceback() return to steer
retries (they compose), as the Go SDK's helpers do. See README.md.
"""

from ._errors import (CANCELLED, HANDLER_ERROR, MAX_TRACEBACK_BYTES, RUNNER_ONLY_TYPES, TIMEOUT, UNKNOWN_FUNCTION,
                      Failure, HandlerError, failure_of, permanent, retry_after, with_traceback, with_type)
from ._mux import MAX_FUNCTION_NAME_BYTES, FunctionSpec, Mux, Outcome, Task, invoke, validate_function_name
from ._serve import (DEFAULT_MAX_MESSAGE_BYTES, ENV_MAX_MESSAGE_BYTES, MAGIC_COOKIE_KEY, MAGIC_COOKIE_VALUE,
                     PROTOCOL_VERSION, LogFormatter, max_message_bytes, serve)
from .trace import TraceParent, parse_traceparent

#: This package's version.
__version__ = "0.1.0"

__all__ = [
    "CANCELLED", "HANDLER_ERROR", "MAX_TRACEBACK_BYTES", "RUNNER_ONLY_TYPES", "TIMEOUT", "UNKNOWN_FUNCTION", "Failure", "HandlerError",
    "failure_of", "permanent", "retry_after", "with_traceback", "with_type",
    "MAX_FUNCTION_NAME_BYTES", "FunctionSpec", "Mux", "Outcome", "Task", "invoke", "validate_function_name",
    "DEFAULT_MAX_MESSAGE_BYTES", "ENV_MAX_MESSAGE_BYTES", "MAGIC_COOKIE_KEY", "MAGIC_COOKIE_VALUE",
    "PROTOCOL_VERSION", "LogFormatter", "max_message_bytes", "serve", "TraceParent", "parse_traceparent",
]
