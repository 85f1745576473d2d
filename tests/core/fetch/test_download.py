"""Downloads against a real HTTP server on 127.0.0.1 with injected faults.

After every scenario the destination folder is checked: the final file only when verified, a `.part`
(+ sidecar) only where a later resume is expected, nothing else.
"""

from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path

import pytest

from app.core.errors import CancelledError, UsageError
from app.core.fetch.download import (
    DownloadProgress,
    RetryPolicy,
    cached_download,
    check_url,
    download_file,
    part_path,
    sidecar_path,
)
from app.core.fetch.errors import ChecksumMismatch, DownloadError, InsecureURLError
from app.core.runner import CancelToken
from tests.httpserver import Fault, LocalHTTPServer

FAST = RetryPolicy(attempts=3, backoff_s=0.01, max_backoff_s=0.02, connect_timeout_s=2, read_timeout_s=2)
PAYLOAD = os.urandom(3 * 1024 * 1024 + 123)
SHA = hashlib.sha256(PAYLOAD).hexdigest()


def files_in(d: Path) -> set[str]:
    return {p.name for p in d.iterdir()} if d.exists() else set()


def test_plain_download_verifies_and_reports_progress(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    http_server.add("/b.7z", PAYLOAD)
    seen: list[DownloadProgress] = []
    res = download_file(
        [http_server.url("/b.7z")], tmp_path / "b.7z", sha256=SHA, size=len(PAYLOAD), progress=seen.append, policy=FAST
    )
    assert (tmp_path / "b.7z").read_bytes() == PAYLOAD
    assert res.sha256 == SHA and res.size == len(PAYLOAD) and not res.resumed
    assert files_in(tmp_path) == {"b.7z"}
    assert seen[-1].done == len(PAYLOAD) and seen[-1].total == len(PAYLOAD) and seen[-1].eta == 0
    assert seen[-1].rate > 0
    req = http_server.requests_for("/b.7z")[0]
    assert req.headers.get("Accept-Encoding") == "identity"
    assert "Range" not in req.headers


def test_drop_mid_body_then_resume_with_range_and_if_range(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    res_ = http_server.add("/b.7z", PAYLOAD, etag='"v1"')
    http_server.set_fault("/b.7z", Fault(drop_after=1_000_000))
    res = download_file([http_server.url("/b.7z")], tmp_path / "b.7z", sha256=SHA, policy=FAST)
    assert res.resumed and (tmp_path / "b.7z").read_bytes() == PAYLOAD
    reqs = http_server.requests_for("/b.7z")
    assert len(reqs) == 2
    assert reqs[1].headers["Range"] == "bytes=1000000-"
    assert reqs[1].headers["If-Range"] == res_.etag
    assert reqs[1].status == 206
    assert files_in(tmp_path) == {"b.7z"}


def test_interrupted_run_leaves_part_and_sidecar_then_later_run_resumes(
    http_server: LocalHTTPServer, tmp_path: Path
) -> None:
    http_server.add("/b.7z", PAYLOAD, etag='"v1"')
    # Every attempt of the first run is cut off: the run fails but keeps what it got.
    http_server.set_fault("/b.7z", Fault(drop_after=500_000, times=1), Fault(status=503, times=None))
    dest = tmp_path / "b.7z"
    with pytest.raises(DownloadError) as ei:
        download_file([http_server.url("/b.7z")], dest, sha256=SHA, policy=FAST)
    assert "HTTP 503" in ei.value.details
    assert files_in(tmp_path) == {"b.7z.part", "b.7z.part.json"}
    assert part_path(dest).stat().st_size == 500_000
    meta = json.loads(sidecar_path(dest).read_text())
    assert meta == {
        "url": http_server.url("/b.7z"),
        "etag": '"v1"',
        "last_modified": http_server.resource("/b.7z").last_modified,
        "total": len(PAYLOAD),
    }
    http_server.clear_faults()
    res = download_file([http_server.url("/b.7z")], dest, sha256=SHA, policy=FAST)
    assert res.resumed and dest.read_bytes() == PAYLOAD
    assert http_server.requests_for("/b.7z")[-1].headers["Range"] == "bytes=500000-"
    assert files_in(tmp_path) == {"b.7z"}


def test_server_ignoring_range_restarts_from_zero(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    http_server.add("/b.7z", PAYLOAD)
    http_server.set_fault("/b.7z", Fault(drop_after=700_000), Fault(ignore_range=True))
    res = download_file([http_server.url("/b.7z")], tmp_path / "b.7z", sha256=SHA, policy=FAST)
    reqs = http_server.requests_for("/b.7z")
    assert [r.status for r in reqs] == [200, 200]
    assert "Range" in reqs[1].headers
    assert not res.resumed  # the 200 body replaced the partial bytes
    assert (tmp_path / "b.7z").read_bytes() == PAYLOAD
    assert files_in(tmp_path) == {"b.7z"}


def test_wrong_content_range_discards_part_and_downloads_fresh(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    http_server.add("/b.7z", PAYLOAD)
    http_server.set_fault("/b.7z", Fault(drop_after=700_000), Fault(wrong_range_start=0))
    res = download_file([http_server.url("/b.7z")], tmp_path / "b.7z", sha256=SHA, policy=FAST)
    reqs = http_server.requests_for("/b.7z")
    assert [r.status for r in reqs] == [200, 206, 200]
    assert "Range" not in reqs[2].headers
    assert any("Content-Range" in e for e in res.errors)
    assert (tmp_path / "b.7z").read_bytes() == PAYLOAD
    assert files_in(tmp_path) == {"b.7z"}


def test_etag_changed_between_attempts_gets_full_body(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    http_server.add("/b.7z", PAYLOAD, etag='"v1"')
    http_server.set_fault("/b.7z", Fault(drop_after=800_000, times=1), Fault(status=500, times=None))
    dest = tmp_path / "b.7z"
    with pytest.raises(DownloadError):
        download_file([http_server.url("/b.7z")], dest, sha256=SHA, policy=FAST)
    # The server was redeployed: same bytes, new ETag. If-Range no longer matches -> 200 and a restart.
    http_server.clear_faults()
    http_server.resource("/b.7z").etag = '"v2"'
    res = download_file([http_server.url("/b.7z")], dest, sha256=SHA, policy=FAST)
    last = http_server.requests_for("/b.7z")[-1]
    assert last.headers["If-Range"] == '"v1"' and last.status == 200
    assert not res.resumed and dest.read_bytes() == PAYLOAD
    assert files_in(tmp_path) == {"b.7z"}


def test_content_changed_under_resume_is_caught_by_sha_and_retried_fresh(
    http_server: LocalHTTPServer, tmp_path: Path
) -> None:
    """Without validators the resume is blind; the sha256 catches the mix and one fresh try fixes it."""
    other = bytes(reversed(PAYLOAD))
    http_server.add("/b.7z", other, etag="", last_modified="")
    http_server.set_fault("/b.7z", Fault(drop_after=600_000, times=1), Fault(status=500, times=None))
    dest = tmp_path / "b.7z"
    with pytest.raises(DownloadError):
        download_file([http_server.url("/b.7z")], dest, sha256=SHA, policy=FAST)
    assert part_path(dest).exists()
    http_server.clear_faults()
    http_server.add("/b.7z", PAYLOAD, etag="", last_modified="")
    res = download_file([http_server.url("/b.7z")], dest, sha256=SHA, policy=FAST)
    assert dest.read_bytes() == PAYLOAD and not res.resumed
    assert any("after resuming" in e for e in res.errors)
    assert files_in(tmp_path) == {"b.7z"}


def test_wrong_sha256_leaves_nothing(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    http_server.add("/b.7z", PAYLOAD)
    with pytest.raises(ChecksumMismatch) as ei:
        download_file([http_server.url("/b.7z")], tmp_path / "b.7z", sha256="0" * 64, policy=FAST)
    assert ei.value.actual == SHA and ei.value.expected == "0" * 64
    assert files_in(tmp_path) == set()
    assert len(http_server.requests_for("/b.7z")) == 1  # a wrong file is not fetched again from the same URL


def test_wrong_size_is_refused_before_the_body(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    http_server.add("/b.7z", PAYLOAD)
    with pytest.raises(DownloadError) as ei:
        download_file([http_server.url("/b.7z")], tmp_path / "b.7z", sha256=SHA, size=10, policy=FAST)
    assert "catalog says 10" in ei.value.details
    assert files_in(tmp_path) == set()


def test_404_falls_back_to_mirror_500_retries_bounded(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    http_server.add("/mirror/b.7z", PAYLOAD)
    http_server.set_fault("/flaky/b.7z", Fault(status=500, times=None))
    urls = [http_server.url("/missing/b.7z"), http_server.url("/flaky/b.7z"), http_server.url("/mirror/b.7z")]
    res = download_file(urls, tmp_path / "b.7z", sha256=SHA, policy=FAST)
    assert res.url == urls[2]
    assert len(http_server.requests_for("/missing/b.7z")) == 1  # 404: no retry
    assert len(http_server.requests_for("/flaky/b.7z")) == FAST.attempts  # bounded
    assert any("HTTP 404" in e for e in res.errors) and any("HTTP 500" in e for e in res.errors)
    assert files_in(tmp_path) == {"b.7z"}


def test_all_urls_fail_raises_with_every_reason(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    with pytest.raises(DownloadError) as ei:
        download_file([http_server.url("/a"), http_server.url("/b")], tmp_path / "x", sha256=SHA, policy=FAST)
    assert ei.value.details.count("HTTP 404") == 2
    assert files_in(tmp_path) == set()


def test_read_timeout_is_retried(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    http_server.add("/b.7z", PAYLOAD)
    http_server.set_fault("/b.7z", Fault(headers_delay=1.5))
    policy = RetryPolicy(attempts=2, backoff_s=0.01, read_timeout_s=0.5)
    res = download_file([http_server.url("/b.7z")], tmp_path / "b.7z", sha256=SHA, policy=policy)
    assert any("timed out" in e.lower() for e in res.errors), res.errors
    assert (tmp_path / "b.7z").read_bytes() == PAYLOAD


def test_slow_server_cancel_keeps_part_then_resume(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    http_server.add("/b.7z", PAYLOAD, etag='"v1"')
    http_server.set_fault("/b.7z", Fault(chunk_delay=0.01))
    token = CancelToken()
    dest = tmp_path / "b.7z"

    def on_progress(p: DownloadProgress) -> None:
        if p.done >= 100_000:
            token.cancel()

    with pytest.raises(CancelledError):
        download_file([http_server.url("/b.7z")], dest, sha256=SHA, progress=on_progress, cancel=token, policy=FAST)
    assert files_in(tmp_path) == {"b.7z.part", "b.7z.part.json"}
    kept = part_path(dest).stat().st_size
    assert 100_000 <= kept < len(PAYLOAD)
    res = download_file([http_server.url("/b.7z")], dest, sha256=SHA, policy=FAST)
    assert res.resumed and dest.read_bytes() == PAYLOAD
    assert http_server.requests_for("/b.7z")[-1].headers["Range"] == f"bytes={kept}-"


def test_cancel_from_another_thread(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    http_server.add("/b.7z", PAYLOAD)
    http_server.set_fault("/b.7z", Fault(chunk_delay=0.02))
    token = CancelToken()
    threading.Timer(0.3, token.cancel).start()
    with pytest.raises(CancelledError):
        download_file([http_server.url("/b.7z")], tmp_path / "b.7z", sha256=SHA, cancel=token, policy=FAST)
    assert "b.7z" not in files_in(tmp_path)


def test_cache_hit_is_reverified_and_corrupt_cache_refetched(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    http_server.add("/b.7z", PAYLOAD)
    cache = tmp_path / "cache"
    first = cached_download([http_server.url("/b.7z")], sha256=SHA, size=len(PAYLOAD), cache_root=cache, policy=FAST)
    assert first.path == cache / "downloads" / SHA / "b.7z" and not first.from_cache
    second = cached_download([http_server.url("/b.7z")], sha256=SHA, cache_root=cache, policy=FAST)
    assert second.from_cache and len(http_server.requests_for("/b.7z")) == 1
    # Flip one byte in the cached file: the hit is detected as corrupt and fetched again.
    data = bytearray(first.path.read_bytes())
    data[12345] ^= 0xFF
    first.path.write_bytes(bytes(data))
    third = cached_download([http_server.url("/b.7z")], sha256=SHA, cache_root=cache, policy=FAST)
    assert not third.from_cache and third.path.read_bytes() == PAYLOAD
    assert len(http_server.requests_for("/b.7z")) == 2
    assert files_in(first.path.parent) == {"b.7z"}


def test_redirect_to_plain_http_elsewhere_is_refused(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    http_server.redirect("/r", "http://example.com/b.7z")
    with pytest.raises(InsecureURLError):
        download_file([http_server.url("/r")], tmp_path / "b.7z", sha256=SHA, policy=FAST)
    http_server.add("/b.7z", PAYLOAD)
    http_server.redirect("/ok", "/b.7z")
    assert download_file([http_server.url("/ok")], tmp_path / "b.7z", sha256=SHA, policy=FAST).size == len(PAYLOAD)


@pytest.mark.parametrize(
    ("url", "ok"),
    [
        ("https://example.com/a.7z", True),
        ("http://127.0.0.1:8000/a", True),
        ("http://127.5.0.1/a", True),
        ("http://localhost/a", True),
        ("http://[::1]:80/a", True),
        ("http://example.com/a.7z", False),
        ("http://10.0.0.1/a", False),
        ("ftp://example.com/a", False),
        ("file:///etc/passwd", False),
    ],
)
def test_url_policy(url: str, ok: bool) -> None:
    if ok:
        check_url(url)
    else:
        with pytest.raises(InsecureURLError):
            check_url(url)


def test_bad_sha256_argument_is_a_usage_error(tmp_path: Path) -> None:
    with pytest.raises(UsageError) as ei:
        download_file(["https://example.com/x"], tmp_path / "x", sha256="abc")
    assert ei.value.exit_code == 2


def test_resume_across_mirrors_uses_range_without_if_range(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    """ETags of different servers are not comparable: the resume on a mirror sends Range only; sha256 guards it."""
    http_server.add("/a/b.7z", PAYLOAD, etag='"a"')
    http_server.add("/m/b.7z", PAYLOAD, etag='"m"')
    http_server.set_fault("/a/b.7z", Fault(drop_after=900_000, times=1), Fault(status=404, times=None))
    res = download_file([http_server.url("/a/b.7z"), http_server.url("/m/b.7z")], tmp_path / "b.7z", sha256=SHA,
                        policy=FAST)
    assert res.url == http_server.url("/m/b.7z") and res.resumed
    req = http_server.requests_for("/m/b.7z")[0]
    assert req.headers["Range"] == "bytes=900000-" and "If-Range" not in req.headers
    assert (tmp_path / "b.7z").read_bytes() == PAYLOAD
    assert files_in(tmp_path) == {"b.7z"}


def test_unwritable_destination_is_a_clear_error(http_server: LocalHTTPServer, tmp_path: Path) -> None:
    http_server.add("/b.7z", PAYLOAD)
    dest_dir = tmp_path / "ro"
    dest_dir.mkdir()
    (dest_dir / "b.7z.part").mkdir()  # the part path cannot be opened as a file (stands in for a full/readonly disk)
    with pytest.raises(DownloadError, match="Cannot write the download"):
        download_file([http_server.url("/b.7z")], dest_dir / "b.7z", sha256=SHA, policy=FAST)


def test_https_with_untrusted_certificate_is_refused_then_trusted_ca_works(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real TLS server with a self-signed certificate: verification stays on, so it fails until trusted."""
    from tests.httpserver import make_self_signed_cert

    cert, key = make_self_signed_cert(tmp_path / "tls")
    with LocalHTTPServer(tls=(cert, key)) as srv:
        srv.add("/b.7z", PAYLOAD)
        url = srv.url("/b.7z")
        assert url.startswith("https://127.0.0.1:")
        with pytest.raises(DownloadError) as ei:
            download_file([url], tmp_path / "b.7z", sha256=SHA, policy=FAST)
        assert "certificate verify failed" in ei.value.details
        assert srv.requests == []  # no HTTP request got through the failed handshake
        assert files_in(tmp_path) == {"tls"}
        # A user behind a company proxy adds their CA the standard way; verification itself stays on.
        monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert))
        res = download_file([url], tmp_path / "b.7z", sha256=SHA, policy=FAST)
        assert res.size == len(PAYLOAD)
