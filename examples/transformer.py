"""A tiny step for the Sequence and Parallel examples: any HTTP server that answers with an event will do.

    python examples/transformer.py            # listens on http://localhost:8082

POST /append/<word>   replies with the event, "<word>" appended to the "steps" list of its JSON data
POST /filter/even     replies with the event unchanged when its data's "n" is even, else 202 (no reply)
POST /filter/odd      the same for odd numbers

Events arrive in binary mode (``ce-*`` headers, the data as the body), as keventing always sends them.
"""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Step(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("content-length") or 0))
        try:
            data = json.loads(body or b"{}")
        except ValueError:
            self._answer(400, b"the example steps want JSON data\n")
            return
        parts = self.path.strip("/").split("/")
        if len(parts) == 2 and parts[0] == "append":
            data["steps"] = [*data.get("steps", []), parts[1]]
            self._reply(data)
        elif len(parts) == 2 and parts[0] == "filter" and parts[1] in ("even", "odd"):
            wanted = 0 if parts[1] == "even" else 1
            if isinstance(data.get("n"), int) and data["n"] % 2 == wanted:
                self._reply(data)
            else:
                self._answer(202, b"")
        else:
            self._answer(404, b"use /append/<word>, /filter/even or /filter/odd\n")

    def _reply(self, data: dict[str, object]) -> None:
        """200 with a CloudEvent: the received attributes, the new data."""
        body = json.dumps(data).encode()
        self.send_response(200)
        for name, value in self.headers.items():
            if name.lower().startswith("ce-"):
                self.send_header(name, value)
        self.send_header("content-type", "application/json")
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _answer(self, status: int, body: bytes) -> None:
        self.send_response(status)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        sys.stderr.write(f"{self.command} {self.path} -> {args[1] if len(args) > 1 else ''}\n")


if __name__ == "__main__":
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 8082
    print(f"example steps on http://localhost:{port}", flush=True)
    ThreadingHTTPServer(("127.0.0.1", port), Step).serve_forever()
