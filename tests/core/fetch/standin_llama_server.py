"""STAND-IN for a rebuilt llama-server (tests only): the default test run cannot build llama.cpp (the slow tests do).

It speaks the two endpoints the smoke test uses (app/core/builder/smoke.py): GET /health, and POST /completion
answering `n_predict` tokens. It loads no model and proves nothing about llama.cpp; it lets the overlay tests run the
real smoke-test machinery (a child process on 127.0.0.1, HTTP, process-tree kill) on a folder built from an overlay.
`STANDIN_SERVER_EXIT=N` in its environment makes it exit with code N before listening (a server that cannot run).
"""

import json
import os
import sys
from http.server import BaseHTTPRequestHandler, HTTPServer


class Handler(BaseHTTPRequestHandler):
    def log_message(self, fmt: str, *args: object) -> None:
        pass

    def _send(self, code: int, body: dict[str, object]) -> None:
        data = json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self) -> None:
        self._send(200 if self.path == "/health" else 404, {"status": "ok"})

    def do_POST(self) -> None:
        req = json.loads(self.rfile.read(int(self.headers.get("Content-Length", "0"))) or b"{}")
        n = int(req.get("n_predict", 0))
        self._send(200, {"content": " stand-in" * n, "tokens_predicted": n})


def main() -> None:
    if os.environ.get("STANDIN_SERVER_EXIT"):
        sys.exit(int(os.environ["STANDIN_SERVER_EXIT"]))
    port = int(sys.argv[sys.argv.index("--port") + 1])
    print(f"stand-in llama-server listening on 127.0.0.1:{port}", flush=True)
    HTTPServer(("127.0.0.1", port), Handler).serve_forever()


if __name__ == "__main__":
    main()
