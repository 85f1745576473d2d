"""Benchmark: the ISA audit with runtime-dispatch analysis vs the plain linear sweep (issue #12).

    .venv/bin/python bench/audit_dispatch.py [--runs 3] [BINARY_OR_FOLDER ...]

Without arguments it audits LM Studio's real 1.48.0 AVX folder (extracted from ../shared/lmstudio-real to a
temporary folder, never into the repository) when present. For each binary both variants are measured in the
same run, alternating (`audit_binary(dispatch=False)` is the baseline: what the audit cost before #12), and the
minimum of `--runs` rounds is reported with the ratio. Asserts nothing.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.core.builder.audit import audit_binary, find_binaries  # noqa: E402

SHARED_AVX = REPO.parent / "shared" / "lmstudio-real" / "llama.cpp-win-x86_64-avx-1.48.0.7z"


def binaries(args: list[str], tmp: Path) -> list[Path]:
    out: list[Path] = []
    for a in args:
        p = Path(a)
        out += find_binaries(p) if p.is_dir() else [p]
    if not args and SHARED_AVX.is_file():
        import py7zr

        with py7zr.SevenZipFile(SHARED_AVX) as z:
            z.extractall(tmp)
        out = find_binaries(tmp)
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("paths", nargs="*")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        files = binaries(a.paths, Path(tmp))
        if not files:
            print("nothing to audit: give binaries or folders (../shared/lmstudio-real is absent)")
            return 2
        print(f"{'binary':42s} {'MB':>5s} {'sweep s':>8s} {'dispatch s':>10s} {'ratio':>6s}  guarded/total (AVX2)")
        tot0 = tot1 = 0.0
        for f in files:
            base: list[float] = []
            disp: list[float] = []
            b = None
            for _ in range(a.runs):
                t = time.perf_counter()
                audit_binary(f, dispatch=False)
                base.append(time.perf_counter() - t)
                t = time.perf_counter()
                b = audit_binary(f)
                disp.append(time.perf_counter() - t)
            assert b is not None
            t0, t1 = min(base), min(disp)
            tot0, tot1 = tot0 + t0, tot1 + t1
            g = f"{b.guarded.get('AVX2', 0)}/{b.uses('AVX2')}"
            size = f.stat().st_size / 1e6
            print(f"{f.name[:42]:42s} {size:5.2f} {t0:8.2f} {t1:10.2f} {t1 / max(t0, 1e-9):6.2f}  {g}")
        print(f"{'total':42s} {'':5s} {tot0:8.2f} {tot1:10.2f} {tot1 / max(tot0, 1e-9):6.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
