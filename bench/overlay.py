"""Overlay vs whole-folder publishing: archive size, and time from "Download" to an installed backend (issue #17).

Both shapes of the *same* backend are published with `publish` (7z, LZMA2 as released) and installed the way a
user gets them: signed catalog served by tests/httpserver.py on 127.0.0.1, `plan_from_catalog` + `execute_obtain`
into a fresh LM Studio home that has the official pack, cold download cache each run. Baseline = the whole folder.

1. Real data (only where ../shared/lmstudio-real exists; never copied into the repository): LM Studio's official
   Windows 1.48.0 CPU pack as rebuilt by theIvanR (the `avx` folder, standing in for the official template: its
   LM Studio binaries are the official ones) and the `noavx` folder built from it (ggml-base.dll and ggml-cpu.dll
   rebuilt) as "our" backend. Sizes are real; the install runs the install check (forced: a Windows pack judged on
   this Linux host) but no smoke test (a 1.x pack has no program of its own, and these are Windows binaries).
2. Stand-in (always): the 2.x Linux pack of tests/core/fetch/overlay_packs.py (real gcc-built ggml/llama ELF
   libraries, LM Studio's other binaries stood in by small text files, a stand-in llama-server): the time includes
   the smoke test for both shapes (the whole folder's smoke test is run on the installed folder, the same test).

Run: .venv/bin/python bench/overlay.py [-n 5]
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.core.builder.smoke import plan_smoke, require_smoke, run_smoke  # noqa: E402
from app.core.builder.tinymodel import shipped_model  # noqa: E402
from app.core.fetch.obtain import execute_obtain, plan_from_catalog  # noqa: E402
from app.core.fetch.publish import publish  # noqa: E402
from app.core.hardware.probe import probe_hardware  # noqa: E402
from app.core.lmstudio.clone import copy_tree_exact  # noqa: E402
from tests.conftest import FIXTURES, HWDATA, LMSTUDIO_REAL  # noqa: E402
from tests.httpserver import LocalHTTPServer  # noqa: E402
from tests.lmstudio_homes import make_home  # noqa: E402

KEY = FIXTURES / "TEST-ONLY-catalog-signing.key"
PUB = FIXTURES / "TEST-ONLY-catalog-signing.pub"
IVY = HWDATA / "cpuinfo" / "ivybridge-i5-3570k.txt"


def mib(n: int) -> str:
    return f"{n / 2**20:.2f} MiB" if n >= 2**20 else f"{n / 1024:.1f} KiB"


def install_time(catalog: Path, official: Path, tmp: Path, entry: str, *, force: bool, smoke_after: bool) -> float:
    """Seconds from loading the catalog (the wizard's "Download") to an installed (and smoke-tested) backend."""
    home = make_home(tmp, backends=[], vendor=())
    copy_tree_exact(official, home / "extensions" / "backends" / official.name)
    report = probe_hardware(cpuinfo_path=IVY)
    with LocalHTTPServer() as srv:
        srv.add_dir(catalog, "/c")
        t0 = time.perf_counter()
        plan = plan_from_catalog(srv.url("/c/catalog.json"), home=home, report=report, public_key_path=PUB,
                                 entry_ident=entry, force=force)
        res = execute_obtain(plan, cache_root=tmp / "cache")
        if smoke_after:  # the whole folder's path has no smoke test of its own: run the same one on what was installed
            info = json.loads((res.install.dest / "backend-manifest.json").read_text())
            rel = info["engine_protocol_server"]["executable_relative_path"]
            r = run_smoke(plan_smoke(res.install.dest, shipped_model(), kind="server", program=rel, n_tokens=8))
            require_smoke(r, folder=res.install.dest)
        return time.perf_counter() - t0


def compare(label: str, built: Path, template: Path, tmp: Path, n: int, *, force: bool, smoke: bool,
            prepare_full: Callable[[Path], Path]) -> None:
    full_dir = tmp / "full"
    full = publish(prepare_full(built), full_dir, key_path=KEY, audit=False)
    over_dir = tmp / "overlay"
    over = publish(built, over_dir, template=template, key_path=KEY, audit=False)
    unpacked = sum(p.stat().st_size for p in built.rglob("*") if p.is_file() and not p.is_symlink())
    print(f"\n== {label}")
    print(f"folder unpacked           {mib(unpacked)}")
    print(f"whole-folder archive      {mib(full.entry.size)}  (baseline)")
    print(f"overlay archive           {mib(over.entry.size)}  = {over.entry.size / full.entry.size:.3f}x the baseline"
          f" ({full.entry.size / over.entry.size:.1f}x smaller); files: {len(over.entry.base['replaced'])} replaced"
          f" of {len(over.entry.base['files'])}, LM Studio's kept files carried as sha256 only")
    t_full: list[float] = []
    t_over: list[float] = []
    for i in range(n):  # alternating, each with a cold cache and a fresh home
        t_full.append(install_time(full_dir, template, tmp / f"f{i}", full.entry.ident, force=force, smoke_after=smoke))
        t_over.append(install_time(over_dir, template, tmp / f"o{i}", over.entry.ident, force=force, smoke_after=False))
    mf, mo = statistics.median(t_full), statistics.median(t_over)
    what = "download -> installed + smoke-tested" if smoke else "download -> installed (install check, no smoke)"
    print(f"{what}, median of {n}:")
    print(f"  whole folder {mf:.2f} s (baseline)   overlay {mo:.2f} s   ratio overlay/baseline {mo / mf:.2f}x")
    print(f"  runs whole: {', '.join(f'{t:.2f}' for t in t_full)}   overlay: {', '.join(f'{t:.2f}' for t in t_over)}")


def without_provenance(built: Path) -> Path:
    """The same folder published whole: `publish --full` refuses a clone of an official pack, so the bench hands it a
    copy without our marker (a measurement only; such an archive is never released)."""
    copy = built.parent / "as-whole" / built.name
    shutil.copytree(built, copy, symlinks=True)
    (copy / "unlocked-install.json").unlink()
    return copy


def real_data(tmp: Path, n: int) -> None:
    from tests.core.fetch.overlay_packs import real_windows_pair

    template, built = real_windows_pair(LMSTUDIO_REAL, tmp)
    compare("real data: Windows 1.48.0 CPU pack (theIvanR's folders, ../shared/lmstudio-real)", built, template,
            tmp, n, force=True, smoke=False, prepare_full=without_provenance)


def stand_in(tmp: Path, n: int) -> None:
    from tests.core.fetch.overlay_packs import built_backend, official_pack

    pack = official_pack(tmp / "templates", tmp / "libs")
    built = built_backend(tmp / "built", pack, tmp / "libs")
    compare("stand-in: 2.x Linux CPU pack (gcc-built ELF libraries, stand-in LM Studio binaries and server)",
            built, pack, tmp, n, force=False, smoke=True, prepare_full=without_provenance)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("-n", type=int, default=5)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as td:
        if (LMSTUDIO_REAL / "llama.cpp-win-x86_64-avx-1.48.0.7z").is_file():
            real_data(Path(td) / "real", args.n)
        else:
            print(f"(real data skipped: {LMSTUDIO_REAL} is absent)")
        stand_in(Path(td) / "standin", args.n)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
