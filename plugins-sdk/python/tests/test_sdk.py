"""Unit tests of omniq_plugin: python3 -m unittest discover -s tests.

The Go test plugins-sdk/python_sdk_test.go runs them against the installed
package, and runs tests/plugin_under_test.py under the runner's supervisor.
"""

import datetime
import logging
import os
import subprocess
import sys
import queue
import threading
import time
import unittest

import grpc

import omniq_plugin as omniq
from omniq_plugin import testing, trace
from omniq_plugin._serve import _Servicer
from omniq_plugin.pb import plugin_pb2 as pb
from omniq_plugin.pb import plugin_pb2_grpc as pb_grpc

TRACEPARENT = "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01"


async def _async_handler(task):
    return b""


class MuxTest(unittest.TestCase):
    def test_refuses_programming_errors(self):
        ok = lambda task: None  # noqa: E731
        cases = [
            ("duplicate", lambda m: (m.handle("a", ok), m.handle("a", ok)), "function 'a' is registered twice"),
            ("bad name", lambda m: m.handle("a.b", ok), "has '.' at character 1"),
            ("empty name", lambda m: m.handle("", ok), "function name is required"),
            ("long name", lambda m: m.handle("x" * 129, ok), "over the 128-byte limit"),
            ("not callable", lambda m: m.handle("a", "nope"), "not callable"),
            # An async def handler would fail every attempt with "returned
            # coroutine", and be retried: it is refused where it is written.
            ("async def", lambda m: m.handle("a", _async_handler), "is a coroutine function (async def)"),
            ("negative", lambda m: m.handle("a", ok, max_retries=-1), "max_retries must not be negative"),
        ]
        for name, do, want in cases:
            with self.subTest(name):
                with self.assertRaises(ValueError) as cm:
                    do(omniq.Mux())
                self.assertIn(want, str(cm.exception))

    def test_declares_specs_and_routes(self):
        m = omniq.Mux()

        @m.function("b", timeout=datetime.timedelta(seconds=3), max_retries=0, concurrency=2, description="bee")
        def b(task):
            return b"b:" + task.payload

        m.handle("a", lambda task: "a")
        specs = m.functions()
        self.assertEqual([s.name for s in specs], ["a", "b"])
        self.assertEqual((specs[1].timeout, specs[1].max_retries, specs[1].concurrency, specs[1].description),
                         (3.0, 0, 2, "bee"))
        self.assertIsNone(specs[0].max_retries)
        self.assertEqual(testing.run(m, function="b", payload=b"x").output, b"b:x")
        self.assertEqual(testing.run(m, function="a").output, b"a")
        f = testing.run(m, function="zzz").failure
        self.assertEqual((f.error_type, f.permanent, f.traceback), ("unknown_function", True, ""))
        self.assertIn("'zzz'", f.message)

    def test_middleware_wraps_outermost_first(self):
        m = omniq.Mux()
        order = []

        def mw(name):
            def wrap(next_handler):
                def h(task):
                    order.append(name)
                    return next_handler(task)
                return h
            return wrap

        m.use(mw("outer"), mw("inner"))
        m.handle("f", lambda task: order.append("handler"))
        testing.run(m, function="f")
        self.assertEqual(order, ["outer", "inner", "handler"])

    def test_outputs(self):
        self.assertEqual(testing.run(lambda t: None).output, b"")
        self.assertEqual(testing.run(lambda t: "é").output, "é".encode())
        self.assertEqual(testing.run(lambda t: bytearray(b"x")).output, b"x")
        f = testing.run(lambda t: 42, function="f").failure
        self.assertEqual(f.error_type, "TypeError")
        self.assertIn("returned int; want bytes, str or None", f.message)


class ErrorsTest(unittest.TestCase):
    def fail_with(self, exc_factory, **task):
        def h(t):
            raise exc_factory()
        return testing.run(h, **task).failure

    def test_classification(self):
        cases = [
            # name, raise, error_type, permanent, retry_after, message
            ("plain exception", lambda: ZeroDivisionError("division by zero"), "ZeroDivisionError", False, None,
             "ZeroDivisionError: division by zero"),
            ("message", lambda: omniq.HandlerError("db down"), "handler_error", False, None, "db down"),
            ("permanent", lambda: omniq.permanent(KeyError("k")), "KeyError", True, None, "KeyError: 'k'"),
            ("typed", lambda: omniq.with_type("ValidationError", "bad"), "ValidationError", False, None, "bad"),
            ("composed", lambda: omniq.retry_after(2, omniq.permanent(omniq.with_type("T", "x"))), "T", True, 2.0,
             "x"),
            ("timedelta", lambda: omniq.retry_after(datetime.timedelta(milliseconds=1500), "busy"), "handler_error",
             False, 1.5, "busy"),
        ]
        for name, make, typ, perm, after, msg in cases:
            with self.subTest(name):
                f = self.fail_with(make)
                self.assertEqual((f.error_type, f.permanent, f.retry_after, f.message), (typ, perm, after, msg))
                self.assertIn("Traceback (most recent call last)", f.traceback)

    def test_a_handler_error_subclass_names_the_type(self):
        # A subclass of HandlerError is an error type of the handler's own,
        # as any other exception's class is, also through the helpers.
        class CardDeclined(omniq.HandlerError):
            pass
        cases = [
            ("raised", lambda: CardDeclined("insufficient funds"), "CardDeclined", False),
            ("permanent", lambda: omniq.permanent(CardDeclined("insufficient funds")), "CardDeclined", True),
            ("own flag", lambda: CardDeclined("insufficient funds", permanent=True), "CardDeclined", True),
            ("typed wins", lambda: omniq.with_type("Declined", CardDeclined("insufficient funds")), "Declined", False),
            ("named type wins", lambda: CardDeclined("insufficient funds", error_type="X"), "X", False),
        ]
        for name, make, typ, perm in cases:
            with self.subTest(name):
                f = self.fail_with(make)
                self.assertEqual((f.error_type, f.permanent, f.message), (typ, perm, "insufficient funds"))

    def test_traceback_keeps_the_cause(self):
        def h(task):
            try:
                {}["missing"]
            except KeyError as err:
                raise omniq.permanent(err)
        f = testing.run(h).failure
        self.assertIn("KeyError: 'missing'", f.traceback)
        self.assertIn("direct cause", f.traceback)
        self.assertIn(", in h", f.traceback)

    def test_traceback_starts_at_the_handler(self):
        # The SDK's frames that call the handler (invoke, the middleware
        # chain) came first in every traceback, above the handler's own.
        m = omniq.Mux()
        m.use(lambda h: lambda t: h(t))

        def boom(t):
            return 1 / 0
        m.handle("f", boom)
        for handler in (boom, m):
            f = testing.run(handler, function="f").failure
            first = f.traceback.splitlines()[1]
            self.assertTrue(first.startswith('  File "%s"' % __file__), "%r: first frame %r" % (handler, first))
            self.assertNotIn("omniq_plugin", f.traceback, handler)
            self.assertIn(", in boom", f.traceback)

    def test_with_traceback_replaces_it(self):
        f = self.fail_with(lambda: omniq.with_traceback("line 1\nline 2", "script failed"))
        self.assertEqual((f.traceback, f.message), ("line 1\nline 2", "script failed"))

    def test_traceback_is_bounded(self):
        f = self.fail_with(lambda: omniq.with_traceback("x" * 100000 + "THE END", "big"))
        self.assertLessEqual(len(f.traceback.encode()), omniq.MAX_TRACEBACK_BYTES)
        self.assertTrue(f.traceback.endswith("THE END"))

    def test_helpers_refuse_nonsense(self):
        with self.assertRaises(ValueError):
            omniq.retry_after(-1, "x")
        with self.assertRaises(ValueError):
            omniq.with_type("", "x")
        self.assertEqual(omniq.RUNNER_ONLY_TYPES, {"plugin_crash", "timeout", "plugin_unavailable", "invalid_task", "cancelled", "interrupted"})
        for typ in sorted(omniq.RUNNER_ONLY_TYPES):
            with self.assertRaises(ValueError) as cm:
                omniq.with_type(typ, "x")
            self.assertIn(repr(typ) + ", a type only the runner assigns", str(cm.exception))
            # HandlerError(error_type=...) is with_type all at once: it
            # refuses them too, rather than letting the runner record
            # handler_error where the handler meant its own type.
            with self.assertRaises(ValueError) as cm:
                omniq.HandlerError("x", error_type=typ, permanent=True)
            self.assertIn(repr(typ) + ", a type only the runner assigns", str(cm.exception))
        with self.assertRaises(TypeError):
            omniq.permanent(42)

    def test_deadline_and_cancellation(self):
        # How the plugin classifies an exception raised once the deadline
        # has passed (which the runner takes in the moment before its own
        # deadline comes; testing.run reports the runner's timeout).
        def invoke_raising(exc_factory):
            def h(t):
                raise exc_factory()
            return omniq.invoke(h, omniq.Task("f", deadline=time.time() - 1)).failure
        f = invoke_raising(lambda: RuntimeError("late"))
        self.assertEqual((f.error_type, f.message), ("timeout", "RuntimeError: late"))
        task = omniq.Task("f")
        task.cancel()

        def h(t):
            self.assertTrue(t.wait(60))  # returns at once: cancelled
            raise RuntimeError("stopped")
        self.assertEqual(testing.run(h, task).failure.error_type, "cancelled")
        # A type the handler names wins.
        f = invoke_raising(lambda: omniq.with_type("Mine", "late"))
        self.assertEqual(f.error_type, "Mine")

    def test_a_handler_that_returns_after_its_deadline_fails_with_a_timeout(self):
        # The plugin sends the timeout at the deadline and the runner
        # records it without waiting for the handler, whatever the handler
        # returns or raises a moment later; testing.run gave such a handler
        # its own outcome: a test passed that production fails.
        def late_result(t):
            t.wait()  # until the deadline
            return b"late"

        def late_own_type(t):
            t.wait()
            raise omniq.with_type("Mine", "late")

        for h in (late_result, late_own_type):
            out = testing.run(h, timeout=0.05)
            f = out.failure
            self.assertIsNotNone(f, "%s: %r; want a timeout" % (h.__name__, out.output))
            self.assertEqual((f.error_type, f.message, out.output), ("timeout", "task did not finish by its deadline", None),
                             h.__name__)
        # One that returns before its deadline keeps its own outcome.
        self.assertEqual(self.fail_with(lambda: omniq.with_type("Mine", "early")).error_type, "Mine")

    def test_a_handler_that_never_returns_fails_with_a_timeout(self):
        # The plugin reports a timeout at the deadline and the runner kills
        # it 2 s later; testing.run waited for the handler for good.
        def hung(t):
            while True:
                time.sleep(0.05)

        done = []
        runner = threading.Thread(target=lambda: done.append(testing.run(hung, deadline=time.time() + 0.1)), daemon=True)
        runner.start()
        runner.join(60)  # a bound on the test, not a timing under test
        self.assertTrue(done, "testing.run did not return for a handler that never returns")
        f = done[0].failure
        self.assertEqual((f.error_type, f.message), ("timeout", "task did not finish by its deadline"))
        self.assertIn("in hung", f.traceback)
        self.assertIn("time.sleep(0.05)", f.traceback)

    def test_the_deadline_is_the_callers_timeout_else_the_functions_else_the_runners_default(self):
        # testing.run gave every attempt 60 s, whatever the caller or the
        # function said. The deadline is each one's, as the runner's would
        # be: compared with the clock read before and after the run, not
        # with a duration.
        seen = []

        def h(t):
            seen.append(t.deadline)
        m = omniq.Mux()
        m.handle("slow", h, timeout=datetime.timedelta(minutes=20))
        m.handle("plain", h)
        for handler, fields, want in [
            (h, {"timeout": 7}, 7.0),
            (h, {"timeout": datetime.timedelta(seconds=90)}, 90.0),
            (m, {"function": "slow", "timeout": 3}, 3.0),
            (m, {"function": "slow"}, 1200.0),
            (m, {"function": "plain"}, testing.DEFAULT_TIMEOUT),
            (h, {}, testing.DEFAULT_TIMEOUT),
        ]:
            seen.clear()
            before = time.time()
            out = testing.run(handler, **fields)
            after = time.time()
            self.assertIsNone(out.failure, fields)
            self.assertTrue(before + want <= seen[0] <= after + want,
                            "%r: deadline %s, want %s s from the run" % (fields, seen[0], want))
        self.assertEqual(testing.DEFAULT_TIMEOUT, 300.0)  # runner.DefaultTimeout

    def test_a_timeout_stops_a_hung_handler(self):
        def hung(t):
            while True:
                time.sleep(0.05)
        done = []
        runner = threading.Thread(target=lambda: done.append(testing.run(hung, timeout=0.1)), daemon=True)
        runner.start()
        runner.join(60)  # a bound on the test, not a timing under test
        self.assertTrue(done, "testing.run(timeout=0.1) did not return for a handler that never returns")
        self.assertEqual(done[0].failure.error_type, "timeout")

    def test_popen_stops_what_the_command_started_when_the_task_ends(self):
        # A handler that killed its shell at a cancellation or the deadline
        # left the shell's child running, with nothing to stop it but the
        # plugin's end. task.popen kills the command's whole group.
        import tempfile

        def gone(pid):
            try:
                with open("/proc/%d/stat" % pid) as f:
                    return f.read().rsplit(")", 1)[1].split()[0] == "Z"
            except FileNotFoundError:
                return True

        for how in ["deadline", "cancellation"]:
            with tempfile.TemporaryDirectory() as tmp:
                pid_file = os.path.join(tmp, "pid")

                def h(t):
                    p = t.popen(["sh", "-c", "sleep 300 & echo $! > %s; wait" % pid_file], stdout=subprocess.PIPE)
                    p.communicate()
                    raise RuntimeError("the command ended")

                task = omniq.Task("f", deadline=time.time() + (1 if how == "deadline" else 60))
                done = []
                runner = threading.Thread(target=lambda: done.append(testing.run(h, task)), daemon=True)
                runner.start()
                pid = None
                bound = time.time() + 30  # a bound on the test, not a timing under test
                while pid is None and time.time() < bound:
                    try:
                        with open(pid_file) as f:
                            text = f.read()
                        if text.endswith("\n"):
                            pid = int(text)
                    except FileNotFoundError:
                        pass
                    time.sleep(0.01)
                self.assertIsNotNone(pid, "%s: the command did not start" % how)
                if how == "cancellation":
                    task.cancel()
                runner.join(30)
                self.assertTrue(done, "%s: testing.run did not return" % how)
                f = done[0].failure
                self.assertEqual((f.error_type, f.message), {
                    "deadline": ("timeout", "task did not finish by its deadline"),
                    "cancellation": ("cancelled", "RuntimeError: the command ended")}[how], how)
                while not gone(pid) and time.time() < bound:
                    time.sleep(0.01)
                alive = not gone(pid)
                if alive:
                    os.kill(pid, 9)
                self.assertFalse(alive, "%s: the shell's child %d still runs after the handler returned" % (how, pid))
        with self.assertRaises(ValueError):
            omniq.Task("f").popen(["true"], start_new_session=False)

    def test_a_bad_timeout_is_refused_naming_it(self):
        for bad in [0, -1, float("nan"), float("inf"), "10", True, datetime.timedelta(0)]:
            with self.assertRaises(ValueError) as cm:
                testing.run(lambda t: None, timeout=bad)
            self.assertIn("timeout", str(cm.exception))
            self.assertIn(repr(bad) if not isinstance(bad, datetime.timedelta) else "0", str(cm.exception))
        with self.assertRaises(ValueError) as cm:
            testing.run(lambda t: None, deadline=time.time() + 5, timeout=5)
        self.assertIn("both a deadline", str(cm.exception))
        with self.assertRaises(ValueError) as cm:
            testing.run(lambda t: None, omniq.Task("f"), payload=b"ignored")
        self.assertIn("payload", str(cm.exception))

    def test_progress_is_captured(self):
        def h(task):
            task.report_progress(0.5, "half")
            task.report_progress(1, "done")
        self.assertEqual(testing.run(h).progress, [(0.5, "half"), (1.0, "done")])
        omniq.Task("f").report_progress(1, "ignored")  # no reporter: nothing happens


class TraceTest(unittest.TestCase):
    def test_parse_traceparent(self):
        tp = omniq.parse_traceparent(TRACEPARENT)
        self.assertEqual(tp, ("00", "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7", 1))
        self.assertTrue(tp.sampled)
        self.assertIsNotNone(omniq.parse_traceparent("01-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00-x"))
        for bad in [None, "", "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7",
                    "00-4BF92F3577B34DA6A3CE929D0E0E4736-00f067aa0ba902b7-01",
                    "ff-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",
                    "00-00000000000000000000000000000000-00f067aa0ba902b7-01",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-0000000000000000-01",
                    "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01-extra"]:
            with self.subTest(bad):
                self.assertIsNone(omniq.parse_traceparent(bad))

    def test_a_header_named_twice_in_two_cases_reads_as_in_the_go_sdk(self):
        # Go's Task.Header takes the smallest of the names that match
        # without regard to case; the order they came in must not matter.
        for headers in ({"x-key": "lower", "X-Key": "upper"}, {"X-Key": "upper", "x-key": "lower"}):
            task = omniq.Task("f", headers=headers)
            self.assertEqual(task.header("X-KEY"), "upper", headers)
            self.assertEqual(task.header("x-key"), "lower", headers)
            self.assertEqual(task.header("X-key"), "upper", headers)

    def test_task_exposes_the_headers(self):
        task = omniq.Task("f", headers={"traceparent": TRACEPARENT, "tracestate": "congo=t61rcWkgMzE"})
        self.assertEqual(task.traceparent, TRACEPARENT)
        self.assertEqual(task.tracestate, "congo=t61rcWkgMzE")
        self.assertEqual(task.trace_context.span_id, "00f067aa0ba902b7")
        self.assertEqual(omniq.Task("f", headers={"Traceparent": TRACEPARENT}).traceparent, TRACEPARENT)
        empty = omniq.Task("f")
        self.assertIsNone(empty.traceparent)
        self.assertIsNone(empty.trace_context)

    @unittest.skipUnless(trace.OTEL_AVAILABLE, "the opentelemetry package is not installed "
                         "(Debian has no python3-opentelemetry); the span path is not tested")
    def test_handler_runs_in_a_span_whose_parent_is_the_task(self):
        try:
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import SimpleSpanProcessor
            from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        except ImportError:
            self.skipTest("opentelemetry-api is installed but not opentelemetry-sdk (for the in-memory exporter)")
        from opentelemetry import trace as otel_trace
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        seen = {}

        def h(task):
            seen["current"] = otel_trace.get_current_span()
            raise omniq.permanent(omniq.with_type("ValidationError", "bad"))

        task = omniq.Task("f", id="t1", headers={"traceparent": TRACEPARENT})
        f = testing.run(h, task, tracer_provider=provider).failure
        self.assertEqual(f.error_type, "ValidationError")
        spans = exporter.get_finished_spans()
        self.assertEqual(len(spans), 1)
        span = spans[0]
        self.assertIs(seen["current"], task.span)
        self.assertEqual(format(span.context.trace_id, "032x"), "4bf92f3577b34da6a3ce929d0e0e4736")
        self.assertEqual(format(span.parent.span_id, "016x"), "00f067aa0ba902b7")
        self.assertEqual(span.attributes["omniq.task.id"], "t1")
        self.assertEqual(span.attributes["omniq.task.function"], "f")
        self.assertEqual(span.attributes["omniq.error.type"], "ValidationError")
        self.assertEqual(span.attributes["omniq.error.message"], "bad")
        self.assertIs(span.attributes["omniq.error.is_retryable"], False)
        self.assertFalse(span.status.is_ok)


class ServicerTest(unittest.TestCase):
    """The gRPC service over a real (insecure, loopback) gRPC server."""

    def setUp(self):
        from concurrent import futures
        self.mux = omniq.Mux()
        self.release = threading.Event()
        self.started = threading.Event()
        self.seen = {}

        def slow(task):
            task.report_progress(0.25, "started")
            self.started.set()
            self.seen["cancelled"] = task.wait(60)
            self.release.set()
            return b"never sent"

        self.mux.handle("slow", slow, concurrency=1)
        self.mux.handle("echo", lambda t: t.payload, timeout=1.5, max_retries=2, description="echoes")
        self.server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
        pb_grpc.add_PluginServicer_to_server(_Servicer(self.mux, "test", "9", None), self.server)
        port = self.server.add_insecure_port("127.0.0.1:0")
        self.server.start()
        self.channel = grpc.insecure_channel("127.0.0.1:%d" % port)
        self.stub = pb_grpc.PluginStub(self.channel)

    def tearDown(self):
        self.channel.close()
        self.server.stop(None).wait()

    def test_describe(self):
        resp = self.stub.Describe(pb.DescribeRequest(), timeout=10)
        self.assertEqual((resp.plugin_name, resp.plugin_version), ("test", "9"))
        echo = [f for f in resp.functions if f.name == "echo"][0]
        self.assertEqual((echo.default_timeout_ms, echo.max_retries, echo.has_max_retries, echo.description),
                         (1500, 2, True, "echoes"))
        slow = [f for f in resp.functions if f.name == "slow"][0]
        self.assertEqual((slow.has_max_retries, slow.concurrency), (False, 1))

    def test_text_that_is_not_unicode_is_sent_replaced(self):
        # A payload decoded with "surrogateescape" puts lone surrogates in
        # the handler's messages; protobuf cannot send them as they are.
        def bad(task):
            task.report_progress(0.5, "at caf" + "\udce9")
            raise ValueError("bad input caf" + "\udce9")
        self.mux.handle("bad", bad)
        events = list(self.stub.Execute(pb.ExecuteRequest(task_id="t", function="bad"), timeout=10))
        self.assertEqual([e.WhichOneof("event") for e in events], ["progress", "failure"])
        self.assertEqual(events[0].progress.message, "at caf\ufffd")
        self.assertEqual(events[1].failure.error_type, "ValueError")
        self.assertIn("bad input caf\ufffd", events[1].failure.message)

    def test_progress_in_a_loop_goes_out_at_most_every_quarter_second(self):
        # Every report went to the runner: a handler reporting in a loop
        # sent thousands a second, each a message the runner reads (the
        # Go SDK sends the latest at most every 250 ms).
        def busy(task):
            end, n = time.monotonic() + 0.7, 0
            while time.monotonic() < end:
                n += 1
                task.report_progress(0.5, "report %d" % n)
            task.report_progress(1, "last")
            return b"done"
        self.mux.handle("busy", busy)
        events = list(self.stub.Execute(pb.ExecuteRequest(task_id="b", function="busy"), timeout=10))
        kinds = [e.WhichOneof("event") for e in events]
        self.assertEqual(kinds[-1], "result")
        progress = [e.progress.message for e in events if e.WhichOneof("event") == "progress"]
        self.assertTrue(1 <= len(progress) <= 5, "%d progress events in 0.7 s: %s" % (len(progress), progress[:8]))
        self.assertEqual(progress[-1], "last")  # the one held goes with the outcome

    def test_execute_streams_progress_then_the_result(self):
        events = list(self.stub.Execute(pb.ExecuteRequest(task_id="t", function="echo", payload=b"hi"), timeout=10))
        self.assertEqual(len(events), 1)
        self.assertEqual(events[0].result.output, b"hi")

    def test_a_timeout_says_where_a_handler_that_honours_its_deadline_was(self):
        # The plugin read the handler's stack at the deadline, when a
        # handler that honours it (task.wait(), task.done()) returns: the
        # two raced, the stack was mostly gone, and the handler's own late
        # outcome went instead, with no traceback. The stack is now read a
        # moment before the deadline and its timeout goes first.
        def honours(task):
            task.wait()  # until the deadline
            return b"late"
        self.mux.handle("honours", honours)
        for i in range(5):
            deadline_ns = int((time.time() + 0.2) * 1e9)
            events = list(self.stub.Execute(pb.ExecuteRequest(task_id="h%d" % i, function="honours",
                                                              deadline_unix_nano=deadline_ns), timeout=10))
            last = events[-1]
            self.assertEqual(last.WhichOneof("event"), "failure", "attempt %d: %s" % (i + 1, last))
            self.assertEqual(last.failure.error_type, "timeout")
            self.assertIn("in honours", last.failure.traceback, "attempt %d" % (i + 1))
            f = testing.run(honours, timeout=0.1).failure
            self.assertEqual(f.error_type, "timeout")
            self.assertIn("in honours", f.traceback, "testing.run, attempt %d" % (i + 1))

    def test_progress_arrives_while_the_handler_runs_and_cancel_reaches_it(self):
        call = self.stub.Execute(pb.ExecuteRequest(task_id="slow-1", function="slow"), timeout=60)
        first = next(call)  # sent while the handler still runs
        self.assertEqual((first.progress.fraction, first.progress.message), (0.25, "started"))
        self.assertTrue(self.started.wait(10))
        self.assertEqual(list(self.stub.Status(pb.StatusRequest(), timeout=10).running_task_ids), ["slow-1"])
        call.cancel()
        self.assertTrue(self.release.wait(10), "the handler did not see the cancellation")
        self.assertTrue(self.seen["cancelled"])
        deadline = time.time() + 10
        while self.stub.Status(pb.StatusRequest(), timeout=10).running_task_ids and time.time() < deadline:
            time.sleep(0.01)  # polling a condition with a deadline
        self.assertEqual(list(self.stub.Status(pb.StatusRequest(), timeout=10).running_task_ids), [])


class SessionTest(ServicerTest):
    """Session: many attempts over one stream, each event tagged with its
    call id; cancel stops one attempt; the end of the stream, all."""

    def test_describe_declares_session(self):
        self.assertTrue(self.stub.Describe(pb.DescribeRequest(), timeout=10).supports_session)

    def test_attempts_share_one_stream(self):
        requests = queue.Queue()
        call = self.stub.Session(iter(requests.get, None), timeout=60)
        for i in range(1, 21):
            requests.put(pb.SessionRequest(call_id=i, execute=pb.ExecuteRequest(
                task_id="t%d" % i, function="echo", payload=b"p%d" % i)))
        results = {}
        while len(results) < 20:
            ev = next(call)
            self.assertEqual(ev.event.WhichOneof("event"), "result")
            results[ev.call_id] = ev.event.result.output
        self.assertEqual(results, {i: b"p%d" % i for i in range(1, 21)})
        # Cancel reaches the handler of that attempt only.
        requests.put(pb.SessionRequest(call_id=99, execute=pb.ExecuteRequest(task_id="slow-1", function="slow")))
        first = next(call)
        self.assertEqual((first.call_id, first.event.progress.message), (99, "started"))
        self.assertTrue(self.started.wait(10))
        requests.put(pb.SessionRequest(call_id=99, cancel=pb.Cancel()))
        self.assertTrue(self.release.wait(10), "the handler did not see the cancellation")
        self.assertTrue(self.seen["cancelled"])
        last = next(call)  # the handler returned: its outcome ends the attempt's events
        self.assertEqual((last.call_id, last.event.WhichOneof("event")), (99, "result"))
        requests.put(pb.SessionRequest(call_id=100, execute=pb.ExecuteRequest(task_id="e", function="echo", payload=b"x")))
        after = next(call)
        self.assertEqual((after.call_id, after.event.result.output), (100, b"x"))
        requests.put(None)  # the runner closes its side: the session ends
        self.assertEqual(list(call), [])


class LogFormatterTest(unittest.TestCase):
    def test_levels_are_the_prefixes_the_runner_reads(self):
        f = omniq.LogFormatter()
        for level, prefix in [(logging.DEBUG, "[DEBUG]"), (logging.INFO, "[INFO]"), (logging.WARNING, "[WARN]"),
                              (logging.ERROR, "[ERROR]"), (logging.CRITICAL, "[ERROR]")]:
            rec = logging.LogRecord("images", level, __file__, 1, "resized %s", ("a.png",), None)
            self.assertEqual(f.format(rec), prefix + " images: resized a.png")


class HandshakeTest(unittest.TestCase):
    def run_plugin(self, env):
        code = "import omniq_plugin as o; m = o.Mux(); m.handle('f', lambda t: None); o.serve(m)"
        return subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)

    def test_started_by_hand_it_explains_and_exits(self):
        env = {k: v for k, v in os.environ.items() if k != omniq.MAGIC_COOKIE_KEY}
        r = self.run_plugin(env)
        self.assertEqual(r.returncode, 1)
        self.assertIn("omniq-runner starts it", r.stderr)
        self.assertIn("functions: f", r.stderr)
        self.assertEqual(r.stdout, "")

    def test_refuses_another_protocol_version(self):
        env = dict(os.environ, **{omniq.MAGIC_COOKIE_KEY: omniq.MAGIC_COOKIE_VALUE, "PLUGIN_PROTOCOL_VERSIONS": "2"})
        r = self.run_plugin(env)
        self.assertEqual(r.returncode, 1)
        self.assertIn("speaks 1", r.stderr)


if __name__ == "__main__":
    unittest.main()
