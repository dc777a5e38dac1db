"""An OTLP/HTTP receiver on loopback for the tests (traces or metrics): what a collector would be sent."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

from kev.kafka.embedded import free_port


class OtlpHttpReceiver:
    """Decodes every protobuf request POSTed to ``PATH`` as ``REQUEST`` and hands it to :meth:`record`;
    anything else is answered 400 and not recorded."""

    PATH: ClassVar[str]
    REQUEST: ClassVar[Any]  # the ExportXServiceRequest message class
    RESPONSE: ClassVar[Any]  # the ExportXServiceResponse message class

    def __init__(self) -> None:
        self.lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:  # noqa: N802 (http.server's name)
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                ok = (
                    self.path == receiver.PATH
                    and self.headers.get("content-type") == "application/x-protobuf"
                )
                if ok:
                    receiver.record(receiver.REQUEST.FromString(body))
                answer = receiver.RESPONSE().SerializeToString()
                self.send_response(200 if ok else 400)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", free_port()), Handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}{self.PATH}"

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()

    def record(self, request: Any) -> None:
        raise NotImplementedError
