"""A real threaded HTTP server on 127.0.0.1 for tests: Range, ETag, If-Range, Last-Modified and fault injection.

Usage::

    with LocalHTTPServer() as srv:
        srv.add("/a.7z", data_or_path, etag='"v1"')
        srv.set_fault("/a.7z", Fault(drop_after=1000, times=1))   # cut the first reply after 1000 body bytes
        url = srv.url("/a.7z")
        ...
        srv.requests  # every request seen: path, method, headers, status

Faults (each applies to the next `times` GET requests of that path; None = every request):
    status          answer with this status and a short body (404, 500, 416 ...)
    drop_after      send only this many body bytes, then close the connection
    ignore_range    always answer 200 with the whole body
    wrong_range_start  on a Range request, answer 206 with Content-Range starting at this wrong offset
    headers_delay   sleep this long before sending anything (trips a client's read timeout)
    chunk_delay     sleep between 16 KiB chunks (a slow server)
    drip            sleep this long between writes of 64 bytes (a server that trickles, never idle for long)
    no_length       send no Content-Length: the body ends when the connection closes (with drop_after:
                    a cut the client cannot tell from the end)
    body            replace the body (a server that now delivers different bytes)

The wizard's tests use the same class to serve a local catalog folder (`add_dir`).
"""

from __future__ import annotations

import email.utils
import hashlib
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any


@dataclass
class Fault:
    status: int | None = None
    drop_after: int | None = None
    ignore_range: bool = False
    wrong_range_start: int | None = None
    headers_delay: float = 0.0
    chunk_delay: float = 0.0
    drip: float = 0.0
    no_length: bool = False
    body: bytes | None = None
    times: int | None = 1


@dataclass
class Resource:
    data: bytes | None = None
    path: Path | None = None
    etag: str = ""
    last_modified: str = ""
    content_type: str = "application/octet-stream"

    def size(self) -> int:
        if self.data is not None:
            return len(self.data)
        assert self.path is not None
        return self.path.stat().st_size


@dataclass(frozen=True)
class RequestRecord:
    method: str
    path: str
    headers: Mapping[str, str]
    status: int = 0


@dataclass
class _State:
    resources: dict[str, Resource] = field(default_factory=dict)
    faults: dict[str, list[Fault]] = field(default_factory=dict)
    redirects: dict[str, str] = field(default_factory=dict)
    requests: list[RequestRecord] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def take_fault(self, path: str) -> Fault | None:
        with self.lock:
            faults = self.faults.get(path) or []
            if not faults:
                return None
            f = faults[0]
            if f.times is not None:
                f.times -= 1
                if f.times <= 0:
                    faults.pop(0)
            return f


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # quiet in tests
        pass

    def _record(self, status: int) -> None:
        st = self.server.state
        with st.lock:
            st.requests.append(
                RequestRecord(self.command, self.path.split("?", 1)[0], dict(self.headers.items()), status)
            )

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def do_GET(self) -> None:
        self._serve(head=False)

    def _plain(self, status: int, text: str) -> None:
        body = text.encode()
        self._record(status)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(body)

    def _serve(self, *, head: bool) -> None:
        st = self.server.state
        path = self.path.split("?", 1)[0]
        if path in st.redirects:
            self._record(302)
            self.send_response(302)
            self.send_header("Location", st.redirects[path])
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        res = st.resources.get(path)
        fault = st.take_fault(path) if not head else None
        if fault is not None and fault.headers_delay:
            time.sleep(fault.headers_delay)
        if fault is not None and fault.status is not None:
            self._plain(fault.status, f"injected {fault.status}\n")
            return
        if res is None:
            self._plain(404, "not found\n")
            return
        body = fault.body if fault is not None and fault.body is not None else None
        size = len(body) if body is not None else res.size()
        start, end, status = 0, size - 1, 200
        rng = self.headers.get("Range")
        if_range = self.headers.get("If-Range")
        honour = rng is not None and not (fault is not None and fault.ignore_range)
        if honour and if_range is not None and if_range not in (res.etag, res.last_modified):
            honour = False  # the client's copy is of another version: send everything (RFC 9110 §13.1.5)
        if honour and rng is not None and rng.startswith("bytes="):
            first, _, last = rng[len("bytes=") :].partition("-")
            try:
                start = int(first)
                end = int(last) if last else size - 1
            except ValueError:
                start, end = 0, size - 1
            if start >= size:
                self._plain(416, "range not satisfiable\n")
                return
            end = min(end, size - 1)
            status = 206
        self._record(status)
        self.send_response(status)
        self.send_header("Content-Type", res.content_type)
        self.send_header("Accept-Ranges", "bytes")
        if res.etag:
            self.send_header("ETag", res.etag)
        if res.last_modified:
            self.send_header("Last-Modified", res.last_modified)
        if status == 206:
            shown = start
            if fault is not None and fault.wrong_range_start is not None:
                shown = fault.wrong_range_start
            self.send_header("Content-Range", f"bytes {shown}-{end}/{size}")
        length = end - start + 1
        if fault is not None and fault.no_length:
            self.send_header("Connection", "close")
            self.close_connection = True
        else:
            self.send_header("Content-Length", str(length))
        self.end_headers()
        if head:
            return
        limit = length
        if fault is not None and fault.drop_after is not None:
            limit = min(limit, fault.drop_after)
        try:
            self._send_body(res, body, start, limit, fault)
        except (BrokenPipeError, ConnectionResetError):
            return
        if limit < length:
            # Cut the connection mid-body, as a flaky network would.
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(2)

    def _send_body(self, res: Resource, body: bytes | None, start: int, count: int, fault: Fault | None) -> None:
        delay = fault.chunk_delay if fault is not None else 0.0
        drip = fault.drip if fault is not None else 0.0
        if drip:
            data = body if body is not None else res.data if res.data is not None else res.path.read_bytes()  # type: ignore[union-attr]
            for i in range(start, start + count, 64):
                self.wfile.write(data[i : min(i + 64, start + count)])
                self.wfile.flush()
                time.sleep(drip)
            return
        if body is None and res.data is None and not delay:
            assert res.path is not None
            with res.path.open("rb") as f:
                self.wfile.flush()
                self.connection.sendfile(f, start, count)
            return
        data = body if body is not None else res.data
        if data is None:
            assert res.path is not None
            data = res.path.read_bytes()
        view = memoryview(data)[start : start + count]
        step = 16 * 1024 if delay else 1 << 20
        for i in range(0, len(view), step):
            self.wfile.write(view[i : i + step])
            if delay:
                self.wfile.flush()
                time.sleep(delay)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.state = _State()
        if tls is not None:
            import ssl

            ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            ctx.load_cert_chain(str(tls[0]), str(tls[1]))
            self.socket = ctx.wrap_socket(self.socket, server_side=True)


def make_self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A throw-away self-signed certificate for 127.0.0.1 / localhost: (cert.pem, key.pem)."""
    import datetime
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "lms-unlocked test server")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder.mkdir(parents=True, exist_ok=True)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


class LocalHTTPServer:
    """The server plus helpers to register files, faults and redirects.

    Args:
        tls: (cert.pem, key.pem) to serve https instead of http (see `make_self_signed_cert`).
    """

    def __init__(self, tls: tuple[Path, Path] | None = None) -> None:
        self._scheme = "https" if tls is not None else "http"
        self._server = _Server(tls)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,), name="test-http", daemon=True)

    def __enter__(self) -> LocalHTTPServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    def url(self, path: str) -> str:
        return f"{self._scheme}://127.0.0.1:{self.port}{path}"

    def add(
        self,
        path: str,
        content: bytes | Path,
        *,
        etag: str | None = None,
        last_modified: str | None = None,
        content_type: str = "application/octet-stream",
    ) -> Resource:
        """Serve `content` (bytes, or a file streamed from disk) at `path`; ETag defaults to a content hash."""
        if isinstance(content, Path):
            res = Resource(path=content, content_type=content_type)
            default_etag = f'"{content.stat().st_size:x}-{content.stat().st_mtime_ns:x}"'
        else:
            res = Resource(data=content, content_type=content_type)
            default_etag = '"' + hashlib.sha256(content).hexdigest()[:16] + '"'
        res.etag = default_etag if etag is None else etag
        res.last_modified = email.utils.formatdate(time.time(), usegmt=True) if last_modified is None else last_modified
        self._server.state.resources[path] = res
        return res

    def add_dir(self, folder: Path, prefix: str = "/") -> None:
        """Serve every file under `folder` at `prefix` + its relative path."""
        for p in sorted(folder.rglob("*")):
            if p.is_file():
                self.add(prefix.rstrip("/") + "/" + p.relative_to(folder).as_posix(), p)

    def resource(self, path: str) -> Resource:
        return self._server.state.resources[path]

    def set_fault(self, path: str, *faults: Fault) -> None:
        """Queue faults for the next requests of `path` (in order)."""
        with self._server.state.lock:
            self._server.state.faults.setdefault(path, []).extend(faults)

    def clear_faults(self, path: str | None = None) -> None:
        with self._server.state.lock:
            if path is None:
                self._server.state.faults.clear()
            else:
                self._server.state.faults.pop(path, None)

    def redirect(self, path: str, location: str) -> None:
        self._server.state.redirects[path] = location

    @property
    def requests(self) -> list[RequestRecord]:
        with self._server.state.lock:
            return list(self._server.state.requests)

    def requests_for(self, path: str, method: str = "GET") -> list[RequestRecord]:
        return [r for r in self.requests if r.path == path and r.method == method]


def main() -> None:
    """`python -m tests.httpserver FOLDER`: serve FOLDER on 127.0.0.1 (prints the base URL, then serves)."""
    import sys

    folder = Path(sys.argv[1])
    srv = LocalHTTPServer()
    srv.add_dir(folder)
    srv.start()
    sys.stdout.write(srv.url("/") + "\n")
    sys.stdout.flush()
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        srv.stop()


if __name__ == "__main__":
    main()
