"""`build` (a backend for this or another machine, from source), `audit` (ISA audit), `smoke` (prove it runs),
`toolchain` (the portable CMake/Ninja/zig from PyPI: list, fetch, remove)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from app.cli_cmds.common import add_home_flag, add_json_flag, add_report_source_flags, emit_json, out
from app.core.errors import UsageError


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    b = sub.add_parser(
        "build",
        help="build an LM Studio backend from llama.cpp source for this (or another) CPU/GPU",
        description="Clone an official LM Studio backend and replace its ggml libraries with ones built from the "
        "same llama.cpp tag for the target CPU/GPU; audit, package and smoke-test the result.",
    )
    b.add_argument("--variant", required=True, help="cpu-avx1, noavx, vulkan-avx1, cuda-avx1, cuda-avx1-kepler, ...")
    t = b.add_mutually_exclusive_group()
    t.add_argument(
        "--template",
        metavar="NAME@VERSION",
        help="an installed official backend to clone (default: the newest installed official backend "
        "of the variant's GPU framework, as the wizard picks it)",
    )
    t.add_argument("--template-dir", metavar="DIR", help="an official backend folder to clone")
    b.add_argument("--tag", help="llama.cpp tag bNNNN (default: the one the template was built from)")
    b.add_argument("--source", metavar="DIR|ARCHIVE", help="offline llama.cpp source folder or archive")
    add_report_source_flags(b)
    b.add_argument("--generic", action="store_true", help="generic flags for the variant instead of this CPU's")
    b.add_argument("--out", metavar="DIR", help="where to put the backend folder (default: user data dir)")
    b.add_argument("--install", action="store_true", help="install it into LM Studio afterwards (transactional)")
    b.add_argument("--plan-only", action="store_true", help="show the exact plan (commands, dirs) and stop")
    b.add_argument("--jobs", type=int, metavar="N", help="parallel compile jobs (default: all cores)")
    b.add_argument("--force", action="store_true", help="build although --tag differs from the template's")
    b.add_argument("--no-smoke", action="store_true", help="skip the smoke test")
    b.add_argument("--qemu-cpu", metavar="MODEL", help="smoke-test under qemu-x86_64 -cpu MODEL (e.g. IvyBridge)")
    b.add_argument("--replace-server", action="store_true", help="2.x: also build and replace llama-server")
    b.add_argument(
        "--portable-toolchain",
        choices=("auto", "always", "never"),
        default="auto",
        help="portable CMake/Ninja/zig from PyPI: for what this system lacks (auto), always, or never",
    )
    add_home_flag(b)
    b.add_argument("--json", action="store_true", help="JSON result on stdout; progress events (NDJSON) on stderr")
    b.set_defaults(handler=run_build_cmd)

    a = sub.add_parser(
        "audit",
        help="which instruction sets each binary of a backend folder uses",
        description="Disassemble every ELF/PE binary (capstone) and count SSE4.x, AVX, F16C, FMA, BMI, AVX2, "
        "AVX-512 instructions; with --report/--cpuinfo, fail (exit 1) when a llama.cpp binary uses an "
        "instruction set that CPU lacks.",
    )
    a.add_argument("path", help="backend folder or single binary")
    add_report_source_flags(a)
    a.add_argument("--jobs", type=int, metavar="N", help="parallel processes")
    add_json_flag(a)
    a.set_defaults(handler=run_audit_cmd)

    s = sub.add_parser(
        "smoke",
        help="prove a backend folder runs: generate tokens with a tiny model",
        description="Compile our small host program (seconds), let it load the folder's own llama library "
        "(libllama.so / llama.dll) with the ggml libraries next to it and generate tokens with a tiny model; "
        "Windows folders run under Wine on Linux. In a folder we built the verdict is kept in its "
        "unlocked-install.json, and `install` refuses a folder whose smoke test failed (unless --force).",
    )
    s.add_argument("path", help="backend folder")
    s.add_argument("--framework", choices=("cpu", "vulkan", "cuda"), default="cpu")
    s.add_argument("--server", action="store_true", help="use the folder's llama-server (2.x)")
    s.add_argument("--program", help="run this program of the folder instead (e.g. llama-simple, llama-server)")
    s.add_argument(
        "--source", metavar="DIR", help="llama.cpp source of the folder's tag: compile the host against its llama.h"
    )
    s.add_argument("--model", help="GGUF model (default: the shipped tiny model)")
    s.add_argument("--qemu-cpu", metavar="MODEL", help="run under qemu-x86_64 -cpu MODEL")
    s.add_argument("-n", type=int, default=16, dest="n_tokens")
    add_json_flag(s)
    s.set_defaults(handler=run_smoke_cmd)

    tc = sub.add_parser(
        "toolchain",
        help="the portable build toolchain (CMake, Ninja, zig from PyPI): list, fetch, remove",
        description="Builds use the system's CMake, Ninja and C/C++ compiler when present; what is missing can "
        "come from pinned, sha256-verified PyPI wheels kept in the app's cache.",
    )
    tc.add_argument("action", choices=("list", "fetch", "remove"))
    tc.add_argument("packages", nargs="*", metavar="PACKAGE", help="cmake, ninja, ziglang (default: all)")
    add_json_flag(tc)
    tc.set_defaults(handler=run_toolchain_cmd)


def run_toolchain_cmd(args: argparse.Namespace) -> int:
    from app.core.builder.toolchain import PORTABLE, fetch_portable, portable_status, remove_portable
    from app.core.paths import user_cache_dir

    names = tuple(args.packages) or PORTABLE
    bad = [n for n in names if n not in PORTABLE]
    if bad:
        raise UsageError(f"Unknown toolchain package: {', '.join(bad)}.", hint=f"Use {', '.join(PORTABLE)}.")
    cache = user_cache_dir()
    if args.action == "remove":
        removed = remove_portable(cache, names)
        if args.json:
            emit_json({"ok": True, "removed": removed})
        else:
            out("\n".join(f"removed {r}" for r in removed) or "nothing to remove")
        return 0
    if args.action == "fetch":
        todo = [st for st in portable_status(cache) if st.wheel.package in names and not st.installed]
        if not args.json:
            for st in todo:
                out(
                    f"downloading {st.wheel.file}: {st.wheel.size / 1e6:.1f} MB "
                    f"({st.wheel.unpacked_bytes / 1e6:.0f} MB unpacked), sha256 {st.wheel.sha256[:16]}…"
                )
        res = fetch_portable(names, cache)
        if args.json:
            emit_json(
                {
                    "ok": True,
                    "fetched": [
                        {
                            "package": r.wheel.package,
                            "version": r.wheel.version,
                            "path": str(r.exe),
                            "reused": r.reused,
                            "download_seconds": round(r.download_seconds, 2),
                            "unpack_seconds": round(r.unpack_seconds, 2),
                        }
                        for r in res
                    ],
                }
            )
        else:
            for r in res:
                how = (
                    "already there"
                    if r.reused
                    else (f"downloaded in {r.download_seconds:.1f} s, unpacked in {r.unpack_seconds:.1f} s")
                )
                out(f"{r.wheel.package} {r.wheel.version}: {r.exe} ({how})")
        return 0
    rows = [st for st in portable_status(cache) if st.wheel.package in names]
    if args.json:
        emit_json(
            {
                "ok": True,
                "packages": [
                    {
                        "package": st.wheel.package,
                        "version": st.wheel.version,
                        "installed": st.installed,
                        "path": st.path,
                        "download_bytes": st.wheel.size,
                        "disk_bytes": st.disk_bytes,
                        "sha256": st.wheel.sha256,
                    }
                    for st in rows
                ],
            }
        )
    else:
        for st in rows:
            state = (
                f"installed ({st.disk_bytes / 1e6:.0f} MB): {st.path}"
                if st.installed
                else (f"not fetched ({st.wheel.size / 1e6:.1f} MB download)")
            )
            out(f"{st.wheel.package} {st.wheel.version}: {state}")
    return 0


def _template(args: argparse.Namespace) -> Any:
    from app.core.builder.plan import parse_variant
    from app.core.hardware.system import lmstudio_platform
    from app.core.lmstudio.backends import find_backend, list_backends, read_backend
    from app.core.lmstudio.home import resolve_home
    from app.core.recommend import pick_build_template

    if args.template_dir:
        d = Path(args.template_dir)
        if not (d / "backend-manifest.json").is_file():
            raise UsageError(
                f"{d} is not a backend folder (no backend-manifest.json).",
                hint="Give an official LM Studio backend folder.",
            )
        return read_backend(d)
    if args.template:
        return find_backend(resolve_home(args.home), args.template)
    home = resolve_home(args.home)
    return pick_build_template(list_backends(home), parse_variant(args.variant).framework, lmstudio_platform())


def run_build_cmd(args: argparse.Namespace) -> int:
    from app.core.builder.pipeline import prepare_job, run_job
    from app.core.hardware.probe import report_from_sources

    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1.")
    if args.plan_only and args.install:
        raise UsageError("--plan-only and --install exclude each other.")
    template = _template(args)
    report = (
        None if args.generic and not (args.report or args.cpuinfo) else report_from_sources(args.report, args.cpuinfo)
    )
    last = [-1]

    def download_progress(p: Any) -> None:
        from app.core.fetch.download import filename_from_url

        pct = int(p.fraction * 100) if p.fraction is not None else -1
        if pct // 10 != last[0] // 10:
            last[0] = pct
            name = filename_from_url(p.url)
            if args.json:
                event({"event": "download", "file": name, "done": p.done, "total": p.total})
            else:
                size = f"{p.done / 1e6:.1f} MB" + (f" of {p.total / 1e6:.1f} MB" if p.total else "")
                sys.stderr.write(f"downloading {name}: {size}\n")

    job = prepare_job(
        progress=download_progress,
        template=template,
        variant=args.variant,
        report=report,
        tag=args.tag,
        source=Path(args.source) if args.source else None,
        generic=args.generic,
        jobs=args.jobs,
        out_dir=Path(args.out) if args.out else None,
        force=args.force,
        replace_server=args.replace_server,
        fetch=not args.plan_only,
        portable=args.portable_toolchain,
    )
    if args.plan_only:
        if args.json:
            emit_json({"ok": True, "plan": job.to_dict()})
        else:
            d = job.to_dict()
            out(
                f"template:   {d['template']}  (llama.cpp {d['llama_cpp']['tag'] or ''} "
                f"{d['llama_cpp']['commit'] or ''})"
            )
            out(
                f"variant:    {d['variant']}  ISA {' '.join(d['isa']) or '(x86-64 baseline)'}  manifest ISE "
                f"{d['manifest_ise']}"
            )
            out(f"source:     {d['llama_cpp']['source']}")
            out(f"build dir:  {d['build_dir']}")
            out(f"configure:  {' '.join(d['configure'])}")
            out(f"build:      {' '.join(d['build'])}")
            out(f"output:     {d['out_dir']}")
            tc = d.get("toolchain") or {}
            for r in tc.get("reasons", []):
                out(f"toolchain:  {r}")
            for w in d["downloads"]:
                size = f"{w['bytes'] / 1e6:.1f} MB" if w["bytes"] else w.get("note", "size unknown")
                out(f"download:   {w['what']} ({size}) from {w['from']}")
            est = d["estimate"]
            out(
                f"estimate:   {_duration(est['low_seconds'])} to {_duration(est['high_seconds'])} on "
                f"{est['cores']} cores ({est['basis']})"
            )
            for m in d["missing_prerequisites"]:
                out(f"missing:    {m['what']} ({m['why']}): {m['how']}")
            for n in d["notes"] + d["warnings"]:
                out(f"note:       {n}")
        return 0

    def line(s: str) -> None:
        if not args.json:
            out(s)

    def step(s: str) -> None:
        if args.json:
            event({"event": "step", "step": s})
        else:
            out(f"== {s}")

    last_pct = [-1]

    def progress(p: Any) -> None:
        if args.json and p.total:
            pct = int(100 * p.done / p.total)
            if pct != last_pct[0]:
                last_pct[0] = pct
                event(
                    {
                        "event": "progress",
                        "label": p.label,
                        "done": p.done,
                        "total": p.total,
                        "eta_s": round(p.eta, 1) if getattr(p, "eta", None) is not None else None,
                    }
                )

    # Before anything runs: how long, and what will be downloaded (plain words; NDJSON with --json).
    d = job.to_dict()
    if args.json:
        event({"event": "plan", "estimate": d["estimate"], "downloads": d["downloads"], "out_dir": d["out_dir"]})
    else:
        est = d["estimate"]
        out(f"== estimate: {_duration(est['low_seconds'])} to {_duration(est['high_seconds'])} on {est['cores']} cores")
        for w in d["downloads"]:
            if w["bytes"]:
                out(f"== will download {w['what']} ({w['bytes'] / 1e6:.1f} MB) from {w['from']}")
    res = run_job(
        job,
        on_line=line,
        on_step=step,
        on_progress=progress,
        download_progress=download_progress,
        smoke=not args.no_smoke,
        qemu_cpu=args.qemu_cpu,
    )
    result: dict[str, Any] = {
        "ok": True,
        "folder": str(res.package.folder),
        "name": res.package.name,
        "replaced": list(res.package.replaced),
        "audit": "passed",
        "seconds": res.extra.get("seconds"),
        "qemu_cpu": args.qemu_cpu,
        "plan": job.to_dict(),
    }
    if res.smoke is not None:
        result["smoke"] = {**res.smoke.to_dict(), "qemu_cpu": args.qemu_cpu}
    if args.install:
        from app.core.lmstudio.home import resolve_home
        from app.core.lmstudio.install import execute_install, plan_install
        from app.core.lmstudio.provenance import read_provenance

        ip = plan_install(resolve_home(args.home), res.package.folder)
        if ip.blocked:
            raise UsageError(ip.blocked)
        ir = execute_install(ip, provenance=read_provenance(res.package.folder) or {})
        result["installed"] = str(ir.dest)
    if args.json:
        event({"event": "done", "ok": True})
        emit_json(result)
    else:
        for ln in proof_lines(res, args.qemu_cpu):
            out(ln)
        if "installed" in result:
            out(f"installed -> {result['installed']}")
    return 0


def _duration(seconds: float) -> str:
    return f"{seconds:.0f} s" if seconds < 90 else f"{seconds / 60:.0f} min"


def event(obj: dict[str, Any]) -> None:
    """One NDJSON progress event on stderr (`build --json`)."""
    import json

    sys.stderr.write(json.dumps(obj, ensure_ascii=False) + "\n")
    sys.stderr.flush()


def proof_lines(res: Any, qemu_cpu: str | None) -> list[str]:
    """The end of `build`'s human output: what was proven, how long it took, where the folder is."""
    sm = res.smoke
    plan = res.job.plan
    if sm is None:
        smoke = "smoke test: skipped (--no-smoke): the folder is NOT proven to run"
    else:
        where = {"wine": "under Wine"}.get(sm.runner, "on this CPU" if sm.runner == "native" else f"under {sm.runner}")
        smoke = f"smoke test: passed {where}: {sm.tokens} tokens generated through the folder's own llama library"
    isa = " ".join(plan.isa) or "x86-64 baseline"
    return [
        f"built {res.package.name} for {plan.target_os} ({'generic' if plan.generic else 'tailored'}: {isa})",
        smoke,
        f"ISA audit: passed (nothing beyond {isa})",
        f"time: {res.extra.get('seconds', 0):.0f} s",
        f"folder: {res.package.folder}",
    ]


def run_audit_cmd(args: argparse.Namespace) -> int:
    from app.core.builder.audit import audit_folder, audit_violations, describe_count

    p = Path(args.path)
    if not p.exists():
        raise UsageError(f"{p} does not exist.", hint="Give a backend folder or a binary.")
    fa = audit_folder(p, jobs=args.jobs)
    violations = []
    target = None
    if args.report or args.cpuinfo:
        from app.core.hardware.probe import report_from_sources

        rep = report_from_sources(args.report, args.cpuinfo)
        target = list(rep.cpu.isa) if rep.cpu else []
        violations = audit_violations(fa, target)
    if args.json:
        emit_json(
            {
                "ok": not violations,
                "folder": fa.folder,
                "seconds": round(fa.seconds, 3),
                "target_isa": target,
                "binaries": [
                    {
                        "path": b.path,
                        "format": b.format,
                        "counted": b.counted,
                        "instructions": b.instructions,
                        "counts": b.counts,
                        "guarded": b.guarded,
                        "skipped": b.skipped,
                    }
                    for b in fa.binaries
                ],
                "violations": [
                    {
                        "file": v.file,
                        "extension": v.extension,
                        "count": v.count,
                        "guarded": v.guarded,
                        "examples": list(v.examples),
                    }
                    for v in violations
                ],
            }
        )
    else:
        for b in fa.binaries:
            counts = ", ".join(describe_count(b, k) for k in b.counts) or "baseline x86-64 only"
            tag = "" if b.counted else "  (LM Studio/runtime file, not judged)"
            out(f"{b.path}: {counts}{tag}")
        out(f"audited {len(fa.binaries)} binaries in {fa.seconds:.1f} s")
        for v in violations:
            out(f"VIOLATION: {v.describe()}")
        if target is not None and not violations:
            out("OK: nothing uses an instruction set the target CPU lacks")
    return 1 if violations else 0


def run_smoke_cmd(args: argparse.Namespace) -> int:
    from app.core.builder.pipeline import smoke_existing_folder
    from app.core.builder.smoke import plan_smoke, require_qemu, run_smoke, smoke_record
    from app.core.builder.tinymodel import shipped_model
    from app.core.lmstudio.provenance import record_smoke

    folder = Path(args.path)
    if not folder.is_dir():
        raise UsageError(f"{folder} is not a folder.")
    model = Path(args.model) if args.model else shipped_model()
    require_qemu(args.qemu_cpu)
    if args.server or args.program:
        plan = plan_smoke(
            folder,
            model,
            framework=args.framework,
            kind="server" if args.server else "simple",
            program=args.program,
            qemu_cpu=args.qemu_cpu,
            n_tokens=args.n_tokens,
        )
        r = run_smoke(plan)
        record: dict[str, object] = {**r.to_dict(), **smoke_record(r, plan), "qemu_cpu": args.qemu_cpu}
    else:
        r = smoke_existing_folder(
            folder,
            model,
            source=Path(args.source) if args.source else None,
            framework=args.framework,
            qemu_cpu=args.qemu_cpu,
            n_tokens=args.n_tokens,
        )
        ran = f"qemu -cpu {args.qemu_cpu}" if args.qemu_cpu else ("Wine" if r.runner == "wine" else "this computer")
        record = {**r.to_dict(), "kind": "host", "framework": args.framework, "cpu": ran, "qemu_cpu": args.qemu_cpu}
    recorded = record_smoke(folder, record)
    if args.json:
        emit_json({**r.to_dict(), "recorded_in_provenance": recorded})
    else:
        where = "" if r.runner == "native" else f" ({r.runner})"
        out(
            f"{'OK' if r.ok else 'FAILED'}: {r.tokens} tokens in {r.seconds:.1f} s{where}"
            + (f" — {r.reason}" if r.reason else "")
        )
        if recorded:
            out(f"kept in {folder / 'unlocked-install.json'} (install refuses a folder whose smoke test failed)")
        for p in r.loaded:
            out(f"  loaded {p}")
    return 0 if r.ok else 1
