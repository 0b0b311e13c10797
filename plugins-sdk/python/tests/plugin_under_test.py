#!/usr/bin/env python3
"""A plugin the Go tests (plugins-sdk/python_sdk_test.go) run under the
runner's supervisor: one function per behaviour of the SDK."""

import json
import logging
import os
import sys
import time

import omniq_plugin as omniq

# A start-up banner, as plugin authors write: printed before serve(), it
# must reach the runner's log, not the handshake the runner reads from
# standard output (python_sdk_test.go, "logging").
print("plugin_under_test imported")

mux = omniq.Mux()


@mux.function("py_upper", timeout=5, max_retries=0, concurrency=3, description="upper-cases its payload")
def upper(task):
    task.report_progress(0.5, "shouting")
    return task.payload.upper()


@mux.function("py_divide")
def divide(task):
    a, b = task.payload.decode().split("/")
    return str(int(a) / int(b))


@mux.function("py_permanent")
def reject(task):
    try:
        json.loads(task.payload)
    except ValueError as err:
        raise omniq.permanent(omniq.with_type("ValidationError", err))
    return b"ok"


@mux.function("py_busy")
def busy(task):
    raise omniq.retry_after(2.5, "the backend is busy")


@mux.function("py_crash")
def crash(task):
    print("py_crash: exiting on purpose", file=sys.stderr, flush=True)
    os._exit(7)


@mux.function("py_hang")
def hang(task):
    while True:
        time.sleep(3600)


@mux.function("py_deadline")
def deadline(task):
    left = task.time_left()  # the runner passes the attempt's deadline
    return "deadline in the future" if left and left > 0 else "no deadline: %r" % (task.deadline,)


@mux.function("py_trace")
def trace(task):
    tc = task.trace_context
    return json.dumps({
        "traceparent": task.traceparent, "tracestate": task.tracestate,
        "trace_id": tc and tc.trace_id, "span_id": tc and tc.span_id, "sampled": tc and tc.sampled,
        "span": task.span is not None, "task_id": task.id, "attempt": task.attempt,
    })


@mux.function("py_log")
def log(task):
    print("py_log printed", task.payload.decode())
    logging.getLogger("pyplugin").warning("py_log warned %s", task.payload.decode())
    return "logged"


if __name__ == "__main__":
    omniq.serve(mux, name="plugin-under-test", version="1")
