"""Download throughput with sha256 vs `curl` from the same loopback server, in the same run (issue #5).

Serves one file (default 200 MB of random bytes) from tests/httpserver.py on 127.0.0.1, in a separate
process (sendfile, so the server is not the bottleneck and does not share our GIL), and times, alternating,
N runs of:
- ours: `download_file()` (requests, raw stream, sha256 while streaming, .part + sidecar, verify, rename);
- curl: `curl -s -o FILE URL` (no hashing at all);
- curl + sha256sum: curl, then `sha256sum` on the file (what a careful script would do), for context.
Prints medians and the ratio ours/curl (goal >= 0.8x). Run: .venv/bin/python bench/download.py [--mb 200] [-n 5]
"""

from __future__ import annotations

import argparse
import hashlib
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from app.core.fetch.download import download_file


def make_payload(path: Path, mb: int) -> str:
    h = hashlib.sha256()
    with path.open("wb") as f:
        for _ in range(mb):
            chunk = os.urandom(1 << 20)
            h.update(chunk)
            f.write(chunk)
    return h.hexdigest()


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--mb", type=int, default=200)
    ap.add_argument("-n", type=int, default=5)
    args = ap.parse_args()
    curl = shutil.which("curl")
    sha256sum = shutil.which("sha256sum")
    if curl is None:
        print("curl not found (scripts/test.sh installs it)")
        return 1
    with tempfile.TemporaryDirectory() as td:
        tmp = Path(td)
        src = tmp / "payload.bin"
        sha = make_payload(src, args.mb)
        size = src.stat().st_size
        ours: list[float] = []
        plain: list[float] = []
        hashed: list[float] = []
        server = subprocess.Popen(
            [sys.executable, "-m", "tests.httpserver", str(tmp)],
            cwd=Path(__file__).resolve().parents[1],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert server.stdout is not None
            url = server.stdout.readline().strip() + "payload.bin"
            for i in range(args.n):
                dest = tmp / f"ours-{i}.bin"
                t = time.perf_counter()
                res = download_file([url], dest, sha256=sha, size=size)
                ours.append(time.perf_counter() - t)
                assert res.sha256 == sha
                dest.unlink()

                dest = tmp / f"curl-{i}.bin"
                t = time.perf_counter()
                subprocess.run([curl, "-s", "-o", str(dest), url], check=True)
                plain.append(time.perf_counter() - t)
                if sha256sum:
                    t2 = time.perf_counter()
                    out = subprocess.run([sha256sum, str(dest)], check=True, capture_output=True, text=True).stdout
                    hashed.append(plain[-1] + time.perf_counter() - t2)
                    assert out.split()[0] == sha
                dest.unlink()
        finally:
            server.terminate()
            server.wait()
    mbps = lambda s: size / s / 2**20  # noqa: E731
    mo, mp = statistics.median(ours), statistics.median(plain)
    print(f"file: {size / 2**20:.0f} MiB from a server process on 127.0.0.1 (sendfile), "
          f"{args.n} runs each, alternating")
    print(f"ours (requests + sha256 + verify + rename): median {mo:.3f} s = {mbps(mo):.0f} MiB/s  runs {_fmt(ours)}")
    print(f"curl -s -o (no hash):                      median {mp:.3f} s = {mbps(mp):.0f} MiB/s  runs {_fmt(plain)}")
    if hashed:
        mh = statistics.median(hashed)
        print(f"curl + sha256sum:                          median {mh:.3f} s = {mbps(mh):.0f} MiB/s")
    ratio = mp / mo
    print(f"throughput ratio ours/curl (medians): {ratio:.2f}x (goal >= 0.8x: {'met' if ratio >= 0.8 else 'NOT met'})")
    print(f"throughput ratio ours/curl (best runs, least disturbed by other load): {min(plain) / min(ours):.2f}x")
    if hashed:
        print(f"throughput ratio ours/(curl + sha256sum): {statistics.median(hashed) / mo:.2f}x")
    return 0


def _fmt(xs: list[float]) -> str:
    return " ".join(f"{x:.3f}" for x in xs)


if __name__ == "__main__":
    raise SystemExit(main())
