#!/usr/bin/python3
"""An OmniQ plugin in Python, written from the .proto and the handshake alone.

It serves two functions:

  py_upper   returns its payload in upper case, reporting progress;
  py_divide  divides the numbers of its payload ("a/b"); dividing by zero
             raises, and the Python traceback becomes the TaskError's.

Needs grpcio, protobuf and cryptography (Debian: python3-grpcio,
python3-protobuf, python3-cryptography). plugin_pb2.py is generated from
plugins-sdk/proto with:

  protoc -I proto/omniq/plugin/v1 --python_out=examples/python plugin.proto

See plugins-sdk/README.md for the handshake this follows.
"""

import base64
import datetime
import os
import signal
import sys
import tempfile
import threading
import time
import traceback
from concurrent import futures

import grpc
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import plugin_pb2 as pb  # noqa: E402

MAGIC_COOKIE_KEY = "OMNIQ_PLUGIN_MAGIC_COOKIE"
MAGIC_COOKIE_VALUE = "9f6c1b2e-omniq-function-runner"
PROTOCOL_VERSION = 1

running = set()
running_lock = threading.Lock()


def upper(task, progress):
    progress(0.5, "shouting")
    return task.payload.upper()


def divide(task, progress):
    a, b = task.payload.decode().split("/")
    return str(int(a) / int(b)).encode()


FUNCTIONS = {"py_upper": upper, "py_divide": divide}


class Failure(Exception):
    """Raised by a handler to choose the error type and permanence."""

    def __init__(self, message, error_type="handler_error", permanent=False):
        super().__init__(message)
        self.error_type, self.permanent = error_type, permanent


def describe(request, context):
    return pb.DescribeResponse(
        plugin_name="python-example", plugin_version="1",
        functions=[pb.FunctionSpec(name=n, concurrency=4) for n in sorted(FUNCTIONS)])


def execute(request, context):
    handler = FUNCTIONS.get(request.function)
    if handler is None:
        yield pb.ExecuteEvent(failure=pb.Failure(
            error_type="unknown_function", permanent=True,
            message="this plugin does not serve function %r" % request.function))
        return
    events = []

    def progress(fraction, message):
        events.append(pb.ExecuteEvent(progress=pb.Progress(fraction=fraction, message=message)))

    with running_lock:
        running.add(request.task_id)
    try:
        output = handler(request, progress)
        for e in events:
            yield e
        yield pb.ExecuteEvent(result=pb.Result(output=output))
    except Failure as f:
        yield pb.ExecuteEvent(failure=pb.Failure(
            error_type=f.error_type, message=str(f), permanent=f.permanent))
    except Exception as e:  # any other exception: its type and traceback
        yield pb.ExecuteEvent(failure=pb.Failure(
            error_type=type(e).__name__, message="%s: %s" % (type(e).__name__, e),
            traceback=traceback.format_exc()))
    finally:
        with running_lock:
            running.discard(request.task_id)


def status(request, context):
    with running_lock:
        return pb.StatusResponse(running_task_ids=sorted(running))


def self_signed_certificate():
    """A fresh key and certificate for localhost, as go-plugin's AutoMTLS expects."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.utcnow()
    cert = (x509.CertificateBuilder()
            .subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(minutes=1))
            .not_valid_after(now + datetime.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(digital_signature=True, key_encipherment=False, content_commitment=False,
                                         data_encipherment=False, key_agreement=True, key_cert_sign=True,
                                         crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH,
                                                  x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(key, hashes.SHA256()))
    key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return key_pem, cert.public_bytes(serialization.Encoding.PEM), cert.public_bytes(serialization.Encoding.DER)


def unary(fn, request_type, response_type):
    return grpc.unary_unary_rpc_method_handler(
        fn, request_deserializer=request_type.FromString, response_serializer=response_type.SerializeToString)


def main():
    if os.environ.get(MAGIC_COOKIE_KEY) != MAGIC_COOKIE_VALUE:
        print("This is an OmniQ plugin: omniq-runner starts it. Put it in the plugins directory.", file=sys.stderr)
        sys.exit(1)
    if str(PROTOCOL_VERSION) not in os.environ.get("PLUGIN_PROTOCOL_VERSIONS", "").split(","):
        print("omniq-runner speaks plugin protocol versions %s; this plugin speaks %d"
              % (os.environ.get("PLUGIN_PROTOCOL_VERSIONS"), PROTOCOL_VERSION), file=sys.stderr)
        sys.exit(1)
    max_message = int(os.environ.get("OMNIQ_MAX_MESSAGE_BYTES", 16 << 20))
    stop = threading.Event()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=[
        ("grpc.max_receive_message_length", max_message), ("grpc.max_send_message_length", max_message)])
    server.add_generic_rpc_handlers([
        grpc.method_handlers_generic_handler("omniq.plugin.v1.Plugin", {
            "Describe": unary(describe, pb.DescribeRequest, pb.DescribeResponse),
            "Execute": grpc.unary_stream_rpc_method_handler(
                execute, request_deserializer=pb.ExecuteRequest.FromString,
                response_serializer=pb.ExecuteEvent.SerializeToString),
            "Status": unary(status, pb.StatusRequest, pb.StatusResponse),
        }),
        # go-plugin asks the plugin to shut down through this service
        # (its messages are empty, so no generated code is needed).
        grpc.method_handlers_generic_handler("plugin.GRPCController", {
            "Shutdown": grpc.unary_unary_rpc_method_handler(
                lambda request, context: (stop.set(), b"")[1],
                request_deserializer=lambda b: b, response_serializer=lambda b: b),
        }),
    ])

    # AutoMTLS: serve TLS with our own certificate and accept only the
    # runner's client certificate, handed over in PLUGIN_CLIENT_CERT.
    key_pem, cert_pem, cert_der = self_signed_certificate()
    client_ca = os.environ["PLUGIN_CLIENT_CERT"].encode()
    credentials = grpc.ssl_server_credentials([(key_pem, cert_pem)], root_certificates=client_ca,
                                              require_client_auth=True)
    sock_dir = os.environ.get("PLUGIN_UNIX_SOCKET_DIR") or tempfile.gettempdir()
    sock = os.path.join(sock_dir, "omniq-python-%d.sock" % os.getpid())
    server.add_secure_port("unix:" + sock, credentials)
    server.start()

    cert = base64.b64encode(cert_der).decode().rstrip("=")
    print("1|%d|unix|%s|grpc|%s" % (PROTOCOL_VERSION, sock, cert), flush=True)

    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    while not stop.wait(1):
        if os.getppid() == 1:  # the runner is gone
            break
    server.stop(grace=1)


if __name__ == "__main__":
    main()
