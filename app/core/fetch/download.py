"""Resumable, verified downloads: `.part` + sidecar, sha256 while streaming, Range/If-Range, retries, mirrors.

The rules:
- bytes stream into `<dest>.part`; a sidecar `<dest>.part.json` records URL, ETag, Last-Modified and size so a
  later run can resume; the file only becomes `<dest>` (``os.replace``) after size and sha256 match;
- resuming re-hashes the bytes already on disk and sends ``Range`` plus ``If-Range``; a ``200`` reply means the
  resource changed (or the server ignores ranges): we truncate and restart; a ``206`` whose ``Content-Range`` does
  not start where we asked is refused and the part discarded;
- ``Accept-Encoding: identity`` and raw reads, so the count and the hash describe the real file;
- bounded retries with exponential backoff per URL, then the next mirror; 404-like answers skip to the next mirror;
- cancel between chunks keeps the part for a later resume;
- HTTPS only, plain http only to loopback; redirects are followed by hand so every hop is checked; TLS
  verification is never turned off.
"""

from __future__ import annotations

import contextlib
import hashlib
import ipaddress
import json
import logging
import os
import queue
import re
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any
from urllib.parse import unquote, urljoin, urlsplit

import requests
import urllib3.exceptions

from app.core.errors import CancelledError, UsageError
from app.core.fetch.errors import ChecksumMismatch, DownloadError, InsecureURLError
from app.core.runner import CancelToken

log = logging.getLogger(__name__)

CHUNK_SIZE = 1 << 20
PROGRESS_INTERVAL_S = 0.1
MAX_REDIRECTS = 10
USER_AGENT = "lms-unlocked (+https://github.com/lms-unlocked)"
_CONTENT_RANGE_RE = re.compile(r"^\s*bytes\s+(\d+)-(\d+)/(\d+|\*)\s*$", re.IGNORECASE)
_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class DownloadProgress:
    """One progress report. `total` is None when the server does not say (indeterminate bar)."""

    url: str
    done: int
    total: int | None
    rate: float  # bytes per second over this attempt
    eta: float | None  # seconds left, None when unknown

    @property
    def fraction(self) -> float | None:
        return self.done / self.total if self.total else None


ProgressFn = Callable[[DownloadProgress], None]


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try: attempts per URL, exponential backoff, socket timeouts."""

    attempts: int = 4
    backoff_s: float = 0.5
    max_backoff_s: float = 8.0
    connect_timeout_s: float = 15.0
    read_timeout_s: float = 30.0
    # a server that drips a byte now and then never trips read_timeout_s: fewer than stall_min_bytes in any
    # stall_window_s is a stall (the attempt is retried, resuming where it stopped)
    stall_window_s: float = 60.0
    stall_min_bytes: int = 16 * 1024

    def delay(self, attempt: int) -> float:
        return float(min(self.max_backoff_s, self.backoff_s * (2**attempt)))


@dataclass(frozen=True)
class DownloadResult:
    path: Path
    sha256: str
    size: int
    url: str  # the URL that delivered the bytes ("" for a cache hit)
    from_cache: bool = False
    resumed: bool = False  # some bytes came from an earlier, interrupted attempt
    attempts: int = 1
    errors: tuple[str, ...] = ()  # what went wrong before it worked (retries, mirrors)


# --- URL policy --------------------------------------------------------------------------------------------------


def is_loopback_host(host: str) -> bool:
    if host.lower() in ("localhost", "localhost."):
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_url(url: str) -> None:
    """Refuse anything but https, and plain http to anything but a loopback address.

    Raises:
        InsecureURLError: the URL may not be used.
    """
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if scheme == "https" and host:
        return
    if scheme == "http" and host and is_loopback_host(host):
        return
    if scheme == "http":
        raise InsecureURLError(
            f"Refusing plain http download from {host or url!r}.",
            context=url,
            hint="Use an https:// URL (plain http is only allowed for 127.0.0.1/localhost), "
            "or download the file yourself and pass the local path.",
        )
    raise InsecureURLError(
        f"Unsupported URL {url!r}.",
        context=url,
        hint="Give an https:// URL or a local file/folder path.",
    )


def is_url(text: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", text))


def filename_from_url(url: str, default: str = "download") -> str:
    """The last path segment of a URL, made safe to use as a file name."""
    name = unquote(urlsplit(url).path.rsplit("/", 1)[-1])
    name = re.sub(r"[^A-Za-z0-9._@+-]", "_", name).strip("._")
    return name or default


def normalise_sha256(value: str | None) -> str | None:
    if value is None:
        return None
    v = value.strip().lower()
    if v.startswith("sha256:"):
        v = v[len("sha256:") :]
    if not _SHA256_RE.match(v):
        raise UsageError(
            f"{value!r} is not a sha256 (64 hex digits).",
            hint="Copy the sha256 from the release page or the catalog, e.g. --sha256 3a7bd3e2…",
        )
    return v


# --- sidecar ------------------------------------------------------------------------------------------------------


def part_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part")


def sidecar_path(dest: Path) -> Path:
    return dest.with_name(dest.name + ".part.json")


@dataclass(frozen=True)
class _PartState:
    url: str = ""
    etag: str = ""
    last_modified: str = ""
    total: int | None = None


def _read_sidecar(path: Path) -> _PartState | None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    total = data.get("total")
    return _PartState(
        url=str(data.get("url", "")),
        etag=str(data.get("etag", "")),
        last_modified=str(data.get("last_modified", "")),
        total=total if isinstance(total, int) else None,
    )


def _write_sidecar(path: Path, state: _PartState) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(
        json.dumps(
            {"url": state.url, "etag": state.etag, "last_modified": state.last_modified, "total": state.total},
            indent=2,
        ),
        encoding="utf-8",
    )
    os.replace(tmp, path)


def discard_part(dest: Path) -> None:
    """Forget an interrupted download (its bytes can no longer be trusted)."""
    for p in (part_path(dest), sidecar_path(dest)):
        with contextlib.suppress(FileNotFoundError):
            p.unlink()


def hash_file(path: Path, *, cancel: CancelToken | None = None) -> tuple[str, int]:
    """sha256 and size of a file, read in chunks."""
    h = hashlib.sha256()
    n = 0
    with path.open("rb") as f:
        while chunk := f.read(CHUNK_SIZE):
            if cancel is not None:
                cancel.raise_if_cancelled()
            h.update(chunk)
            n += len(chunk)
    return h.hexdigest(), n


class _Sink:
    """Writes and hashes chunks on two worker threads, so receiving, writing and hashing overlap.

    hashlib, file writes and socket reads all release the GIL on large buffers, so the three run in
    parallel; chunks are immutable bytes shared by both workers; bounded queues keep memory at a few MiB.
    """

    def __init__(self, f: IO[bytes], hasher: Any) -> None:
        self._error: BaseException | None = None
        self._queues: list[queue.Queue[bytes | None]] = []
        self._threads: list[threading.Thread] = []
        for name, fn in (("write", f.write), ("hash", hasher.update)):
            q: queue.Queue[bytes | None] = queue.Queue(maxsize=8)
            t = threading.Thread(target=self._run, args=(q, fn), name=f"download-{name}", daemon=True)
            self._queues.append(q)
            self._threads.append(t)
            t.start()

    def _run(self, q: queue.Queue[bytes | None], fn: Callable[[bytes], Any]) -> None:
        while (chunk := q.get()) is not None:
            if self._error is not None:
                continue
            try:
                fn(chunk)
            except BaseException as exc:  # disk full, ...: reported by put()/close() in the caller's thread
                self._error = exc

    def put(self, chunk: bytes) -> None:
        if self._error is not None:
            raise self._error
        for q in self._queues:
            q.put(chunk)

    def close(self) -> None:
        for q in self._queues:
            q.put(None)
        for t in self._threads:
            t.join()
        if self._error is not None:
            raise self._error


# --- one attempt ---------------------------------------------------------------------------------------------------


class _Retry(Exception):
    """Transient failure: try the same URL again after a backoff (the part is kept)."""


class _NextMirror(Exception):
    """This URL will not work (404, wrong file): go to the next mirror."""


class _Restart(Exception):
    """The part cannot be resumed from (bad Content-Range, 416): discard it and retry at once."""


def _open(
    session: requests.Session, url: str, headers: dict[str, str], policy: RetryPolicy
) -> tuple[requests.Response, str]:
    """GET with redirects followed by hand so that every hop passes `check_url`."""
    current = url
    for _ in range(MAX_REDIRECTS + 1):
        check_url(current)
        resp = session.get(
            current,
            headers=headers,
            stream=True,
            allow_redirects=False,
            timeout=(policy.connect_timeout_s, policy.read_timeout_s),
        )
        if resp.is_redirect:
            location = resp.headers.get("Location", "")
            resp.close()
            current = urljoin(current, location)
            continue
        return resp, current
    raise _NextMirror(f"more than {MAX_REDIRECTS} redirects")


def _iter_raw(resp: requests.Response) -> Iterator[bytes]:
    """Whatever has arrived, at most CHUNK_SIZE at a time (``read1``: a slow server cannot hold one read for
    a whole chunk, so the stall check runs as bytes come in)."""
    raw: Any = resp.raw
    while chunk := raw.read1(CHUNK_SIZE, decode_content=False):
        yield chunk


@dataclass
class _Attempt:
    url: str
    dest: Path
    sha256: str | None
    size: int | None
    policy: RetryPolicy
    session: requests.Session
    progress: ProgressFn | None
    cancel: CancelToken | None

    def run(self) -> DownloadResult:
        part, meta = part_path(self.dest), sidecar_path(self.dest)
        hasher = hashlib.sha256()
        offset = 0
        state = _read_sidecar(meta) if part.exists() else None
        headers = {"Accept-Encoding": "identity", "User-Agent": USER_AGENT}
        if part.exists() and part.stat().st_size > 0 and ((state is not None and state.url == self.url) or self.sha256):
            # Re-hash what is already there: the final sha256 must cover every byte of the file.
            with part.open("rb") as f:
                while chunk := f.read(CHUNK_SIZE):
                    hasher.update(chunk)
                    offset += len(chunk)
            if self.size is not None and offset > self.size:
                raise _Restart(f"partial file ({offset} bytes) is larger than the expected {self.size} bytes")
            if self.size is not None and offset == self.size:
                return self._finish(hasher, offset, resumed=True)
            headers["Range"] = f"bytes={offset}-"
            if state is not None and state.url == self.url:
                # Only a strong ETag may be used in If-Range (RFC 9110 §13.1.5); else the date.
                if state.etag and not state.etag.startswith("W/"):
                    headers["If-Range"] = state.etag
                elif state.last_modified:
                    headers["If-Range"] = state.last_modified
        resumed_from = offset
        try:
            resp, final_url = _open(self.session, self.url, headers, self.policy)
        except requests.exceptions.SSLError as exc:
            # Not transient, and never worked around: the server is not who it claims to be (or the clock is off).
            raise _NextMirror(f"TLS certificate verification failed: {exc}") from exc
        except requests.RequestException as exc:
            raise _Retry(f"cannot connect: {exc}") from exc
        with resp:
            status = resp.status_code
            if status in (401, 403, 404, 410):
                raise _NextMirror(f"HTTP {status} {resp.reason}")
            if status == 416:
                raise _Restart("server refused the resume range (HTTP 416)")
            if status == 429 or status >= 500:
                raise _Retry(f"HTTP {status} {resp.reason}")
            if status not in (200, 206):
                raise _NextMirror(f"unexpected HTTP {status} {resp.reason}")
            total: int | None
            if status == 206:
                if offset == 0:
                    raise _Restart("server sent a partial reply (206) to a request without Range")
                m = _CONTENT_RANGE_RE.match(resp.headers.get("Content-Range", ""))
                if not m or int(m.group(1)) != offset:
                    raise _Restart(
                        f"server answered the resume at byte {offset} with Content-Range "
                        f"{resp.headers.get('Content-Range', '(none)')!r}"
                    )
                total = int(m.group(3)) if m.group(3) != "*" else None
                mode = "ab"
            else:
                if offset:
                    log.info("%s: resume not honoured (200), restarting from zero", self.url)
                hasher = hashlib.sha256()
                offset = resumed_from = 0
                length = resp.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                mode = "wb"
            if total is not None and self.size is not None and total != self.size:
                raise _NextMirror(f"server has a file of {total} bytes, the catalog says {self.size}")
            _write_sidecar(
                meta,
                _PartState(
                    url=self.url,
                    etag=resp.headers.get("ETag", ""),
                    last_modified=resp.headers.get("Last-Modified", ""),
                    total=total if total is not None else self.size,
                ),
            )
            if final_url != self.url:
                log.info("%s redirected to %s", self.url, final_url)
            done = self._stream(resp, part, mode, hasher, offset, total)
        if total is not None and done != total:
            raise _Retry(f"connection closed after {done} of {total} bytes")
        return self._finish(hasher, done, resumed=resumed_from > 0)

    def _stream(
        self, resp: requests.Response, part: Path, mode: str, hasher: Any, offset: int, total: int | None
    ) -> int:
        done = offset
        start = window_start = time.monotonic()
        window_bytes = 0
        last_report = 0.0
        with part.open(mode) as f:
            sink = _Sink(f, hasher)
            try:
                for chunk in _iter_raw(resp):
                    if self.cancel is not None and self.cancel.cancelled:
                        raise CancelledError(
                            "The download was cancelled.",
                            context=self.url,
                            hint="Run the same command again to resume where it stopped.",
                        )
                    sink.put(chunk)
                    done += len(chunk)
                    window_bytes += len(chunk)
                    now = time.monotonic()
                    if now - window_start >= self.policy.stall_window_s:
                        if window_bytes < self.policy.stall_min_bytes:
                            raise _Retry(
                                f"the download stalled: {window_bytes} bytes in the last {now - window_start:.0f} s "
                                f"(at {done} bytes); the server or the network is too slow"
                            )
                        window_start, window_bytes = now, 0
                    if self.progress is not None and now - last_report >= PROGRESS_INTERVAL_S:
                        last_report = now
                        self._report(done, offset, total, now - start)
            except (
                requests.RequestException,
                urllib3.exceptions.HTTPError,
                ConnectionError,
                TimeoutError,
            ) as exc:
                raise _Retry(f"connection lost after {done} bytes: {exc}") from exc
            finally:
                sink.close()  # every byte received is on disk (and hashed) before the part is left for a resume
        if self.progress is not None:
            self._report(done, offset, total, time.monotonic() - start)
        return done

    def _report(self, done: int, offset: int, total: int | None, elapsed: float) -> None:
        assert self.progress is not None
        rate = (done - offset) / elapsed if elapsed > 0 else 0.0
        eta = (total - done) / rate if total is not None and rate > 0 else None
        self.progress(DownloadProgress(url=self.url, done=done, total=total, rate=rate, eta=eta))

    def _finish(self, hasher: Any, size: int, *, resumed: bool) -> DownloadResult:
        part = part_path(self.dest)
        actual = str(hasher.hexdigest())
        if self.size is not None and size != self.size:
            discard_part(self.dest)
            raise ChecksumMismatch(
                f"Downloaded {size} bytes, expected {self.size}.",
                expected=str(self.size),
                actual=str(size),
                context=self.url,
            )
        if self.sha256 is not None and actual != self.sha256:
            discard_part(self.dest)
            raise ChecksumMismatch(
                "The downloaded file does not have the expected sha256" + (" (after resuming)." if resumed else "."),
                expected=self.sha256,
                actual=actual,
                resumed=resumed,
                context=self.url,
                hint="The server or a mirror delivers a different file. Nothing was installed.",
            )
        # No fsync: a file torn by a power cut is caught when the cache hit is re-verified (sha256).
        os.replace(part, self.dest)
        with contextlib.suppress(FileNotFoundError):
            sidecar_path(self.dest).unlink()
        return DownloadResult(path=self.dest, sha256=actual, size=size, url=self.url, resumed=resumed)


# --- public API ----------------------------------------------------------------------------------------------------


def download_file(
    urls: Sequence[str],
    dest: Path,
    *,
    sha256: str | None,
    size: int | None = None,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    policy: RetryPolicy | None = None,
    session: requests.Session | None = None,
) -> DownloadResult:
    """Download the first URL that works into `dest`, verified.

    Args:
        urls: the main URL first, then mirrors.
        dest: final path; `<dest>.part` and `<dest>.part.json` are kept next to it while in progress.
        sha256: expected hex digest (None: not verified, the digest is only reported).
        size: expected size in bytes, if known.
        progress: called at most every 0.1 s with a DownloadProgress.
        cancel: checked between chunks; cancelling keeps the part for a later resume.
        policy: retries, backoff and timeouts.
        session: a requests session (tests, connection reuse).

    Returns:
        DownloadResult for `dest`.

    Raises:
        InsecureURLError: a URL is not https (or http to loopback).
        ChecksumMismatch: the bytes do not match (the part is removed; nothing reaches `dest`).
        DownloadError: every URL failed after its retries.
        CancelledError: `cancel` was triggered (the part is kept).
    """
    if not urls:
        raise DownloadError("No URL to download from.")
    for u in urls:
        check_url(u)
    expected = normalise_sha256(sha256)
    policy = policy or RetryPolicy()
    dest.parent.mkdir(parents=True, exist_ok=True)
    own_session = session is None
    sess = session or requests.Session()
    errors: list[str] = []
    mismatch: ChecksumMismatch | None = None
    attempts = 0
    try:
        for url in urls:
            attempt = 0
            while attempt < policy.attempts:
                if cancel is not None:
                    cancel.raise_if_cancelled()
                attempts += 1
                try:
                    result = _Attempt(url, dest, expected, size, policy, sess, progress, cancel).run()
                except _Restart as exc:
                    errors.append(f"{url}: {exc}; restarting from zero")
                    discard_part(dest)
                    attempt += 1
                    continue
                except _Retry as exc:
                    errors.append(f"{url}: {exc}")
                    attempt += 1
                    if attempt < policy.attempts:
                        delay = policy.delay(attempt - 1)
                        if cancel is not None and cancel.wait(delay):
                            cancel.raise_if_cancelled()
                        elif cancel is None:
                            time.sleep(delay)
                    continue
                except _NextMirror as exc:
                    errors.append(f"{url}: {exc}")
                    break
                except OSError as exc:  # our side: disk full, permissions (network errors are handled above)
                    raise DownloadError(
                        f"Cannot write the download to {dest.parent}: {exc.strerror or exc}.",
                        context=str(dest),
                        hint="Free some disk space (or fix the folder's permissions) and run the same command "
                        "again; it resumes from what is already downloaded.",
                    ) from exc
                except ChecksumMismatch as exc:
                    errors.append(f"{url}: {exc.message} expected {exc.expected}, got {exc.actual}")
                    mismatch = exc
                    if exc.resumed:
                        # Old bytes may have come from a different version of the file: one fresh try.
                        attempt += 1
                        continue
                    break
                return DownloadResult(
                    path=result.path,
                    sha256=result.sha256,
                    size=result.size,
                    url=result.url,
                    resumed=result.resumed,
                    attempts=attempts,
                    errors=tuple(errors),
                )
    finally:
        if own_session:
            sess.close()
    details = "\n".join(errors)
    if mismatch is not None:
        mismatch.details = details
        raise mismatch
    last = errors[-1] if errors else "no attempt made"
    raise DownloadError(
        f"Could not download {filename_from_url(urls[0])} from {len(urls)} location(s); last error: {last}",
        context=urls[0],
        hint="Check the network connection and try again; an interrupted download resumes where it stopped.",
        details=details,
    )


def cache_dir_for_downloads(cache_root: Path) -> Path:
    return cache_root / "downloads"


def cached_download(
    urls: Sequence[str],
    *,
    sha256: str | None,
    size: int | None = None,
    filename: str | None = None,
    cache_root: Path,
    progress: ProgressFn | None = None,
    cancel: CancelToken | None = None,
    policy: RetryPolicy | None = None,
    session: requests.Session | None = None,
) -> DownloadResult:
    """Download into the cache, or reuse a cached copy after re-verifying it.

    Verified files live in `<cache>/downloads/<sha256>/<filename>`. Without a sha256 a file goes to
    `<cache>/downloads/unverified/<url hash>/<filename>` and is never reused as a cache hit.
    """
    if not urls:
        raise DownloadError("No URL to download from.")
    expected = normalise_sha256(sha256)
    name = filename or filename_from_url(urls[0])
    base = cache_dir_for_downloads(cache_root)
    if expected is None:
        key = hashlib.sha256(urls[0].encode()).hexdigest()[:16]
        dest = base / "unverified" / key / name
        with contextlib.suppress(FileNotFoundError):
            dest.unlink()
    else:
        dest = base / expected / name
        if dest.is_file():
            actual, n = hash_file(dest, cancel=cancel)
            if actual == expected and (size is None or n == size):
                return DownloadResult(path=dest, sha256=actual, size=n, url="", from_cache=True, attempts=0)
            log.warning("cached %s is corrupt (sha256 %s); downloading it again", dest, actual)
            dest.unlink()
    return download_file(
        urls, dest, sha256=expected, size=size, progress=progress, cancel=cancel, policy=policy, session=session
    )


def fetch_small(
    url: str,
    *,
    max_bytes: int,
    policy: RetryPolicy | None = None,
    session: requests.Session | None = None,
) -> bytes | None:
    """GET a small document (a catalog, a signature) into memory; None when the server says 404/410.

    Raises:
        InsecureURLError: not https (or loopback http), also for any redirect hop.
        DownloadError: after bounded retries, or when the body is larger than `max_bytes`.
    """
    policy = policy or RetryPolicy()
    own = session is None
    sess = session or requests.Session()
    errors: list[str] = []
    try:
        for attempt in range(policy.attempts):
            if attempt:
                time.sleep(policy.delay(attempt - 1))
            try:
                resp, _ = _open(sess, url, {"User-Agent": USER_AGENT}, policy)
                with resp:
                    if resp.status_code in (404, 410):
                        return None
                    if resp.status_code == 429 or resp.status_code >= 500:
                        errors.append(f"HTTP {resp.status_code}")
                        continue
                    if resp.status_code != 200:
                        errors.append(f"HTTP {resp.status_code}")
                        break
                    body = bytearray()
                    for chunk in resp.iter_content(64 * 1024):
                        body += chunk
                        if len(body) > max_bytes:
                            raise DownloadError(
                                f"{url} is larger than {max_bytes} bytes; refusing to read it.", context=url
                            )
                    return bytes(body)
            except (requests.RequestException, _NextMirror) as exc:
                errors.append(str(exc))
    finally:
        if own:
            sess.close()
    raise DownloadError(
        f"Could not fetch {url}.",
        context=url,
        hint="Check the network connection, or use a local catalog file or folder.",
        details="\n".join(errors),
    )
