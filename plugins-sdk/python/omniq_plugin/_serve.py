"""serve(): the plugin side of the protocol, over go-plugin's handshake.

Mirrors the Go SDK's serve.go and handshake.go. See plugins-sdk/README.md
("The protocol, for plugins in other languages") for the handshake.
"""

import base64
import datetime
import logging
import os
import queue
import signal
import sys
import tempfile
import threading
import time
import traceback
from concurrent import futures

import grpc

from . import _errors
from ._mux import Task, invoke
from .pb import plugin_pb2 as pb
from .pb import plugin_pb2_grpc as pb_grpc

#: The go-plugin magic cookie the runner sets; a plugin refuses to run without it.
MAGIC_COOKIE_KEY = "OMNIQ_PLUGIN_MAGIC_COOKIE"
MAGIC_COOKIE_VALUE = "9f6c1b2e-omniq-function-runner"
#: The OmniQ plugin protocol version this SDK speaks (the Go SDK's sdk.ProtocolVersion).
PROTOCOL_VERSION = 1
#: Environment variable through which the runner sets the gRPC message limit.
ENV_MAX_MESSAGE_BYTES = "OMNIQ_MAX_MESSAGE_BYTES"
#: The gRPC message limit when the runner sets none.
DEFAULT_MAX_MESSAGE_BYTES = 16 << 20
#: Tasks of a function run at once when it declares no concurrency (the runner's default).
DEFAULT_CONCURRENCY = 16


def _keep_stdout_for_handshake():
    """In a process omniq-runner started, points sys.stdout at sys.stderr
    and returns the standard output it replaced, kept for the handshake
    line; otherwise (run by hand, under unittest) changes nothing and
    returns None. The runner reads the first line of standard output as
    the handshake: a print() between the import of omniq_plugin and
    serve() (a start-up banner) would fail the plugin's start, so it goes
    to stderr, which the runner logs."""
    if os.environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
        return None
    out = sys.stdout
    sys.stdout = sys.stderr
    return out


_HANDSHAKE_OUT = _keep_stdout_for_handshake()

# A grpc.health.v1.HealthCheckResponse with status SERVING, encoded by hand
# so that no grpcio-health-checking package is needed.
_HEALTH_SERVING = b"\x08\x01"


def max_message_bytes():
    """The gRPC message size limit from the environment, or DEFAULT_MAX_MESSAGE_BYTES."""
    try:
        n = int(os.environ.get(ENV_MAX_MESSAGE_BYTES, ""))
    except ValueError:
        return DEFAULT_MAX_MESSAGE_BYTES
    return n if n > 0 else DEFAULT_MAX_MESSAGE_BYTES


class _Stream:
    """The events of one Execute call, from the handler's thread to the
    gRPC thread. Progress goes out at most once every _EVERY seconds (the
    latest report, held until then), and the first not before the attempt
    has run that long; the report still held when the handler ends goes
    with its outcome. A handler reporting in a loop costs the runner a
    message per _EVERY, as with the Go SDK, and never blocks nor grows
    memory (past 16 unsent events the latest replaces the last)."""

    _MAX_PENDING = 16
    _EVERY = 0.25  # seconds; the Go SDK's progressEvery

    def __init__(self):
        self._cv = threading.Condition()
        self._pending = []
        self._held = None  # the latest progress, until _due
        self._due = time.monotonic() + self._EVERY
        self._final = None
        self._closed = False

    def progress(self, fraction, message):
        ev = pb.ExecuteEvent(progress=pb.Progress(fraction=fraction, message=_text(message)))
        with self._cv:
            if self._closed or self._final is not None:
                return
            now = time.monotonic()
            if now < self._due:
                self._held = ev
            else:
                self._held = None
                self._due = now + self._EVERY
                if len(self._pending) >= self._MAX_PENDING:
                    self._pending[-1] = ev
                else:
                    self._pending.append(ev)
            self._cv.notify()

    def finish(self, ev):
        """Sends ev as the outcome, unless one was sent (the deadline's,
        then the handler's late return)."""
        with self._cv:
            if self._final is not None:
                return
            self._final = ev
            self._cv.notify()

    def close(self):
        with self._cv:
            self._closed = True
            self._cv.notify()

    def _ready(self):
        """Whether there is something to send; moves the held progress to
        the pending events once it is due. Called with _cv held."""
        if self._pending or self._final is not None or self._closed:
            return True
        if self._held is not None and time.monotonic() >= self._due:
            self._pending.append(self._held)
            self._held = None
            self._due = time.monotonic() + self._EVERY
            return True
        return False

    def events(self):
        while True:
            with self._cv:
                while not self._ready():
                    self._cv.wait(None if self._held is None else max(self._due - time.monotonic(), 0))
                pending, self._pending = self._pending, []
                final, closed = self._final, self._closed
                held = None
                if final is not None:
                    held, self._held = self._held, None
            yield from pending
            if final is not None:
                if held is not None:
                    yield held
                yield final
                return
            if closed:
                return


def _text(s):
    """s as protobuf can send it: lone surrogates (a payload decoded with
    "surrogateescape" puts them in messages) become U+FFFD, as the Go SDK
    does with bytes that are not UTF-8."""
    try:
        s.encode("utf-8")
        return s
    except UnicodeEncodeError:
        return s.encode("utf-16", "surrogatepass").decode("utf-16", "replace")


def _failure_event(f):
    retry_ms = int(round(f.retry_after * 1000)) if f.retry_after else 0
    return pb.ExecuteEvent(failure=pb.Failure(error_type=_text(f.error_type), message=_text(f.message),
                                              traceback=_text(f.traceback), permanent=f.permanent,
                                              retry_after_ms=retry_ms))


def _at_deadline(thread, stream, task, attempt):
    """At the deadline of an attempt whose handler runs on thread: unless
    the handler has returned, reads that thread's stack, then passes the
    task's deadline (which wakes a handler waiting in task.wait()), and
    sends a timeout with that stack as its traceback."""
    with attempt.lock:
        if attempt.returned:
            return
        f = _errors.deadline_failure(thread)
        task._expire()
        stream.finish(_failure_event(f or _errors.Failure(_errors.TIMEOUT, "task did not finish by its deadline")))


class _Attempt:
    """Whether an attempt's handler has returned, under a lock its deadline
    also takes: one of the two comes first."""

    __slots__ = ("lock", "returned")

    def __init__(self):
        self.lock = threading.Lock()
        self.returned = False


class _Servicer(pb_grpc.PluginServicer):
    """The omniq.plugin.v1.Plugin service on top of a Mux."""

    def __init__(self, mux, name, version, tracer_provider):
        self._mux = mux
        self._name = name
        self._version = version
        self._tracer_provider = tracer_provider
        self._lock = threading.Lock()
        self._running = {}  # task id -> attempts in flight

    def Describe(self, request, context):
        resp = pb.DescribeResponse(plugin_name=self._name, plugin_version=self._version, supports_session=True)
        for f in self._mux.functions():
            resp.functions.add(
                name=f.name, default_timeout_ms=int(round((f.timeout or 0) * 1000)),
                max_retries=f.max_retries or 0, has_max_retries=f.max_retries is not None,
                concurrency=f.concurrency, description=f.description)
        return resp

    def Status(self, request, context):
        with self._lock:
            return pb.StatusResponse(running_task_ids=sorted(self._running))

    def Execute(self, request, context):
        task, stream = self._attempt(request)

        def cancelled():  # the call ended: cancelled by the runner, or done
            task.cancel()
            stream.close()

        if not context.add_callback(cancelled):
            return
        self._launch(task, stream)
        yield from stream.events()

    def Session(self, request_iterator, context):
        """Runs the attempts the runner sends on one long-lived stream, each
        in its own thread, and yields their events tagged with their call
        ids; the end of the stream cancels every attempt still running."""
        out = queue.Queue()
        calls = {}  # call id -> (task, stream)
        lock = threading.Lock()
        limit = max_message_bytes() - 1024  # room for the envelope

        def forward(call_id, stream):
            for ev in stream.events():
                if ev.ByteSize() > limit:
                    if ev.WhichOneof("event") == "progress":
                        continue  # too large to send: dropped, as the Go SDK does
                    ev = _failure_event(_errors.Failure(
                        _errors.HANDLER_ERROR, "omniq_plugin: the task's outcome is %d bytes, over the plugin "
                        "message limit of %d bytes" % (ev.ByteSize(), limit), permanent=True))
                out.put(pb.SessionEvent(call_id=call_id, event=ev))
            with lock:
                calls.pop(call_id, None)

        def read():
            try:
                for req in request_iterator:
                    op = req.WhichOneof("op")
                    if op == "execute":
                        task, stream = self._attempt(req.execute)
                        with lock:
                            calls[req.call_id] = (task, stream)
                        self._launch(task, stream)
                        threading.Thread(target=forward, args=(req.call_id, stream), daemon=True,
                                         name="omniq-session-%d" % req.call_id).start()
                    elif op == "cancel":
                        with lock:
                            call = calls.get(req.call_id)
                        if call is not None:
                            # The handler sees it; its outcome (cancelled)
                            # still ends the attempt's events.
                            call[0].cancel()
            except Exception:  # noqa: BLE001 - the stream broke: end the session
                pass
            finally:
                with lock:
                    running = list(calls.values())
                for task, stream in running:
                    task.cancel()
                    stream.close()
                out.put(None)

        threading.Thread(target=read, daemon=True, name="omniq-session-reader").start()
        while True:
            ev = out.get()
            if ev is None:
                return
            yield ev

    def _attempt(self, request):
        """The task of one ExecuteRequest and the stream its events go to."""
        stream = _Stream()
        deadline = request.deadline_unix_nano / 1e9 if request.deadline_unix_nano > 0 else None
        task = Task(request.function, request.payload, id=request.task_id, headers=dict(request.headers),
                    attempt=request.attempt, retry_count=request.retry_count, deadline=deadline,
                    progress=stream.progress)
        return task, stream

    def _launch(self, task, stream):
        """Runs the attempt in its own thread."""
        self._track(task.id, 1)
        threading.Thread(target=self._run, args=(task, stream), name="omniq-task-" + task.id, daemon=True).start()

    def _run(self, task, stream):
        ev = None
        timer = None
        attempt = _Attempt()
        if task.deadline is not None:
            # At the deadline the runner records a timeout without waiting
            # for the handler: send it with where the handler was then,
            # read before the handler is told (see _at_deadline).
            task._manage_expiry()
            timer = threading.Timer(max(task.deadline - time.time(), 0.0), _at_deadline,
                                    args=(threading.current_thread(), stream, task, attempt))
            timer.daemon = True
            timer.start()
        try:
            outcome = invoke(self._mux, task, self._tracer_provider)
            if outcome.failure is not None:
                ev = _failure_event(outcome.failure)
            else:
                ev = pb.ExecuteEvent(result=pb.Result(output=outcome.output))
        except BaseException as exc:  # noqa: B902 - the stream must end with an outcome
            ev = _failure_event(_errors.failure_of(exc))
        finally:
            with attempt.lock:  # after the deadline's timeout, if it came first
                attempt.returned = True
            if timer is not None:
                timer.cancel()
            self._track(task.id, -1)
            stream.finish(ev if ev is not None else _failure_event(
                _errors.Failure(_errors.HANDLER_ERROR, "omniq_plugin: the handler's outcome was lost")))

    def _track(self, task_id, delta):
        with self._lock:
            n = self._running.get(task_id, 0) + delta
            if n > 0:
                self._running[task_id] = n
            else:
                self._running.pop(task_id, None)


def _self_signed_certificate():
    """A fresh key and certificate for "localhost", as go-plugin's AutoMTLS
    expects of a plugin: returns (key PEM, certificate PEM, certificate DER)."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=3650))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                                         data_encipherment=False, key_agreement=True, key_cert_sign=True,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM), cert.public_bytes(serialization.Encoding.DER)


def _refuse(message):
    print(message, file=sys.stderr)
    sys.exit(1)


class LogFormatter(logging.Formatter):
    """Formats a log record as "[LEVEL] name: message", with the level
    prefixes the runner reads from a plugin's stderr ([DEBUG], [INFO],
    [WARN], [ERROR]; CRITICAL is written [ERROR]), so that the runner logs
    the line at that level. serve() puts it on the root logger when the
    plugin has configured no logging handler; a plugin that configures
    logging itself can use it in its own handler."""

    _LEVELS = {"WARNING": "WARN", "CRITICAL": "ERROR", "FATAL": "ERROR"}

    def __init__(self, fmt="%(name)s: %(message)s", datefmt=None):
        super().__init__(fmt, datefmt)

    def format(self, record):
        return "[%s] %s" % (self._LEVELS.get(record.levelname, record.levelname), super().format(record))


def _output_to_runner():
    """Once the handshake line is out: print() goes to stderr, which the
    runner logs (what the process writes to stdout from then on is
    discarded), and the logging module, unless the plugin configured it,
    writes there in the runner's level format."""
    sys.stdout = sys.stderr
    if not logging.root.handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(LogFormatter())
        logging.root.addHandler(handler)


def serve(mux, *, name="", version="", tracer_provider=None):
    """Serves mux's functions to the omniq-runner that started this process,
    and returns when the runner stops the plugin (a Shutdown call, SIGTERM,
    or the runner gone).

    name and version are reported to the runner for its logs.
    tracer_provider is the OpenTelemetry TracerProvider for the handlers'
    spans; None means the global one (see omniq_plugin.trace).

    Run by hand instead of by the runner, it explains and exits with status
    1; so it does with no function registered. Call it from the main thread.

    Once serving, print() writes to stderr, and the logging module (unless
    the plugin configured a handler) writes "[WARN] name: message" lines
    there (LogFormatter): the runner logs each line, at that level.
    """
    functions = mux.functions()
    if not functions:
        _refuse("omniq plugin: no functions registered")
    if os.environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
        _refuse("This is an OmniQ plugin (functions: %s); omniq-runner starts it, it does not run on its own.\n"
                "Make it executable and put it in the runner's plugins directory (bin/plugins for `make run`);\n"
                "see plugins-sdk/python/README.md." % ", ".join(f.name for f in functions))
    offered = os.environ.get("PLUGIN_PROTOCOL_VERSIONS", "")
    if str(PROTOCOL_VERSION) not in [v.strip() for v in offered.split(",")]:
        _refuse("omniq plugin: omniq-runner speaks plugin protocol versions %r; this plugin (omniq_plugin) speaks %d"
                % (offered, PROTOCOL_VERSION))

    limit = max_message_bytes()
    workers = sum(f.concurrency or DEFAULT_CONCURRENCY for f in functions) + 8  # + Describe, Status, health
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="omniq-grpc"), options=[
        ("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", limit)])
    pb_grpc.add_PluginServicer_to_server(_Servicer(mux, name, version, tracer_provider), server)
    stop = threading.Event()
    raw = {"request_deserializer": lambda b: b, "response_serializer": lambda b: b}
    server.add_generic_rpc_handlers([
        # go-plugin asks the plugin to shut down through this service (its
        # messages are empty, so no generated code is needed).
        grpc.method_handlers_generic_handler("plugin.GRPCController", {
            "Shutdown": grpc.unary_unary_rpc_method_handler(lambda req, ctx: (stop.set(), b"")[1], **raw)}),
        grpc.method_handlers_generic_handler("grpc.health.v1.Health", {
            "Check": grpc.unary_unary_rpc_method_handler(lambda req, ctx: _HEALTH_SERVING, **raw)}),
    ])

    sock_dir = os.environ.get("PLUGIN_UNIX_SOCKET_DIR") or tempfile.gettempdir()
    sock = os.path.join(sock_dir, "omniq-python-%d.sock" % os.getpid())
    if os.path.exists(sock):
        os.unlink(sock)
    client_cert = os.environ.get("PLUGIN_CLIENT_CERT")
    if client_cert:
        # AutoMTLS: serve TLS with our own certificate and accept only the
        # runner's client certificate, handed over in PLUGIN_CLIENT_CERT.
        key_pem, cert_pem, cert_der = _self_signed_certificate()
        credentials = grpc.ssl_server_credentials([(key_pem, cert_pem)], root_certificates=client_cert.encode(),
                                                  require_client_auth=True)
        server.add_secure_port("unix:" + sock, credentials)
        cert_field = "|" + base64.b64encode(cert_der).decode().rstrip("=")
    else:
        server.add_insecure_port("unix:" + sock)
        cert_field = ""
    server.start()
    # go-plugin's handshake line: core version | app version | network | address | protocol | certificate.
    print("1|%d|unix|%s|grpc%s" % (PROTOCOL_VERSION, sock, cert_field), file=_HANDSHAKE_OUT or sys.stdout, flush=True)
    _output_to_runner()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
    parent = os.getppid()
    while not stop.wait(1):
        if os.getppid() != parent:  # re-parented: the runner is gone
            print("omniq plugin: the runner is gone, exiting", file=sys.stderr)
            break
    server.stop(grace=2).wait()
    try:
        os.unlink(sock)
    except OSError:
        pass
