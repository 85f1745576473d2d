"""Prove the GPU paths on a real NVIDIA machine: NVML + Vulkan probe, CUDA variant build, GPU smoke test.

Run it through bench/gpu_device.sh on any Linux machine with an NVIDIA GPU, nvcc, cmake and ninja. It writes
everything it captured and measured under --out:

  nvidia-smi-query.csv, nvidia-smi.txt, nvidia-smi-q.txt   the driver's own view (fixtures for the tests)
  probe.json                                                our HardwareReport (NVML + Vulkan + CPU)
  compare.json                                              NVML vs nvidia-smi, Vulkan vs nvidia-smi
  build-cuda.json / build-cuda.log                          `lms-unlocked build --variant cuda-avx1 ...` (the CLI)
  negative-smoke.json                                       CPU-only libraries under the CUDA smoke check (must fail)
  speed.json                                                llama-simple tokens/s, CUDA folder vs CPU build, same tag
  summary.json                                              timings and verdicts

The "official" template is a stand-in (LM Studio's closed CUDA pack cannot be had): the real 2.14.0 Linux CUDA
manifest (bench/gpu_device_template/), a display-data naming the llama.cpp commit we build, our own AVX2 CPU build of
the same tag in place of LM Studio's libraries, and an empty placeholder libggml-cuda.so in place of the official
CUDA library, which the variant build replaces.
"""

from __future__ import annotations

import argparse
import concurrent.futures
import json
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from app.core.builder.execute import run_build  # noqa: E402
from app.core.builder.plan import plan_build  # noqa: E402
from app.core.builder.prereq import find_tools  # noqa: E402
from app.core.builder.source import prepare_source  # noqa: E402
from app.core.builder.tinymodel import shipped_model  # noqa: E402
from app.core.hardware.nvidia import SMI_QUERY_FIELDS, parse_smi_csv, smi_query_argv  # noqa: E402
from app.core.hardware.probe import probe_hardware  # noqa: E402

COMMIT = "0c1e57098"
TEMPLATE_NAME = "llama.cpp-linux-x86_64-nvidia-cuda-avx2"
TEMPLATE_VERSION = "2.14.0"
SPEED_RE = re.compile(r"decoded (\d+) tokens in ([\d.]+) s, speed: ([\d.]+) t/s")


def sh(argv: list[str], out: Path | None = None, **kw: object) -> subprocess.CompletedProcess[str]:
    try:
        r = subprocess.run(argv, capture_output=True, text=True, errors="replace", check=False, **kw)  # type: ignore[call-overload]
    except OSError as exc:
        r = subprocess.CompletedProcess(argv, 127, "", str(exc))
    if out is not None:
        out.write_text(r.stdout + (("\n[stderr]\n" + r.stderr) if r.stderr.strip() else ""), encoding="utf-8")
    return r


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def capture_driver_view(out: Path) -> str:
    q = sh(smi_query_argv(SMI_QUERY_FIELDS), out / "nvidia-smi-query.csv")
    sh(["nvidia-smi"], out / "nvidia-smi.txt")
    sh(["nvidia-smi", "-q"], out / "nvidia-smi-q.txt")
    return q.stdout


def compare(report_d: dict[str, object], smi_csv: str) -> dict[str, object]:
    smi = parse_smi_csv(smi_csv, SMI_QUERY_FIELDS)
    nv = report_d["nvidia_gpus"]
    vk = [d for d in report_d["vulkan_devices"] if d["vendor_id"] == 0x10DE]  # type: ignore[index]
    res: dict[str, object] = {"smi": [g.__dict__ for g in smi], "nvml": nv, "vulkan_nvidia": vk}
    ok_nvml = bool(nv) and all(
        a["name"] == b.name
        and a["compute_capability"] == b.compute_capability
        and a["driver_version"] == b.driver_version
        for a, b in zip(nv, smi, strict=False)  # type: ignore[arg-type]
    )
    ok_vk = bool(vk) and bool(smi) and all(
        d["device_type"] == "discrete" and d["driver_version"].startswith(smi[0].driver_version.split(".")[0])
        for d in vk
    )
    res["nvml_matches_smi"] = ok_nvml
    res["vulkan_matches_smi"] = ok_vk
    return res


def make_template(dest: Path, cpu_bin: Path) -> Path:
    dest.mkdir(parents=True, exist_ok=True)
    for p in sorted(cpu_bin.iterdir()):
        if p.is_symlink():
            (dest / p.name).symlink_to(p.readlink())
        elif p.is_file():
            shutil.copy2(p, dest / p.name)
    # Placeholder standing in for the official pack's CUDA library (replaced by the variant build).
    # Versioned like every ggml library of an official Linux pack: .so -> .so.0 -> real file (SONAME .so.0).
    real = "libggml-cuda.so.0.0.0"
    sh(["cc", "-shared", "-fPIC", "-Wl,-soname,libggml-cuda.so.0", "-o", str(dest / real), "-x", "c", "/dev/null"])
    (dest / "libggml-cuda.so.0").symlink_to(real)
    (dest / "libggml-cuda.so").symlink_to("libggml-cuda.so.0")
    m = json.loads((REPO / "bench" / "gpu_device_template" / "linux-x86_64-cuda-k40k80-2.14.0.backend-manifest.json")
                   .read_text())
    m["name"] = TEMPLATE_NAME
    m["cpu"]["instruction_set_extensions"] = ["AVX2"]
    (dest / "backend-manifest.json").write_text(json.dumps(m, indent=2) + "\n")
    dd = [["en", {"langKey": "en", "displayName": "CUDA llama.cpp (Linux)", "description": "stand-in template",
                  "releaseNotes": [{"version": TEMPLATE_VERSION, "releaseNotes": f"- llama.cpp commit {COMMIT}\n"}]}]]
    (dest / "display-data.json").write_text(json.dumps(dd, indent=2) + "\n")
    return dest


def speed(folder: Path, exe: Path, model: Path, ngl: int, n: int = 128) -> dict[str, object]:
    argv = [str(exe), "-m", str(model), "-n", str(n), *(["-ngl", str(ngl)] if ngl else []), "Once upon a time"]
    runs = []
    for _ in range(3):
        r = sh(argv, cwd=str(folder))
        m = SPEED_RE.search(r.stdout + r.stderr)
        runs.append(float(m.group(3)) if m else None)
    vals = sorted(v for v in runs if v is not None)
    return {"argv": argv, "tokens_per_s_runs": runs, "median": vals[len(vals) // 2] if vals else None}


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", required=True)
    ap.add_argument("--src", required=True, help="llama.cpp source tree (commit 0c1e57098)")
    ap.add_argument("--work", default=str(REPO / ".devwork"))
    ap.add_argument("--jobs", type=int, default=os.cpu_count() or 4)
    a = ap.parse_args()
    out, work = Path(a.out), Path(a.work)
    out.mkdir(parents=True, exist_ok=True)
    work.mkdir(parents=True, exist_ok=True)
    os.environ["LMS_UNLOCKED_CACHE_DIR"] = str(work / "cache")
    summary: dict[str, object] = {}
    t0 = time.monotonic()

    log("driver view + probe")
    smi_csv = capture_driver_view(out)
    t = time.monotonic()
    report = probe_hardware()
    summary["probe_seconds"] = round(time.monotonic() - t, 3)
    (out / "probe.json").write_text(report.to_json(), encoding="utf-8")
    cmp = compare(report.to_dict(), smi_csv)
    (out / "compare.json").write_text(json.dumps(cmp, indent=2), encoding="utf-8")
    summary.update({k: cmp[k] for k in ("nvml_matches_smi", "vulkan_matches_smi")})
    summary["probe_errors"] = [e.__dict__ for e in report.errors]
    log(f"nvml==smi {cmp['nvml_matches_smi']}  vulkan==smi {cmp['vulkan_matches_smi']}")

    tools = find_tools()
    summary["nvcc"] = tools.nvcc
    summary["cuda_version"] = tools.cuda_version
    cache = work / "cache"
    src = Path(a.src)
    template = work / "template" / f"{TEMPLATE_NAME}-{TEMPLATE_VERSION}"
    if template.exists():
        shutil.rmtree(template)

    # Phase A: the CPU build for the template and the CUDA variant's build, side by side; the same plan the
    # `build` CLI makes below, so the CLI finds Ninja with nothing left to do and goes on to package + smoke.
    cpu_tree = prepare_source(tag=None, commit=COMMIT, cache_root=cache, source=src, features=frozenset())
    cuda_tree = prepare_source(tag=None, commit=COMMIT, cache_root=cache, source=src, features=frozenset({"cuda"}))
    common = dict(build_root=cache / "builds", cmake=tools.cmake or "cmake", ninja=tools.ninja, ccache=tools.ccache)
    cpu_plan = plan_build(report, "cpu-avx2", cpu_tree, jobs=max(2, a.jobs // 4), smoke_program=True,
                          **common)  # type: ignore[arg-type]
    cuda_plan = plan_build(report, "cuda-avx1", cuda_tree, jobs=a.jobs, smoke_program=True, nvcc=tools.nvcc,
                           cuda_version=tools.cuda_version, **common)  # type: ignore[arg-type]
    (out / "plan-cuda.json").write_text(json.dumps({
        "configure": list(cuda_plan.configure.argv), "build": list(cuda_plan.build.argv),
        "cuda_architectures": cuda_plan.cuda_architectures, "gpu_targets": list(cuda_plan.gpu_targets),
        "targets": list(cuda_plan.targets)}, indent=2), encoding="utf-8")
    log(f"CUDA plan: archs={cuda_plan.cuda_architectures} targets={cuda_plan.gpu_targets}")
    t = time.monotonic()
    with concurrent.futures.ThreadPoolExecutor(2) as ex:
        fut_cpu = ex.submit(run_build, cpu_plan)
        fut_cuda = ex.submit(run_build, cuda_plan)
        cpu_res = fut_cpu.result()
        log(f"CPU build done {time.monotonic() - t:.0f}s")
        cuda_res = fut_cuda.result()
    summary["build_seconds_parallel"] = round(time.monotonic() - t, 1)
    log(f"CUDA build done {summary['build_seconds_parallel']}s")
    make_template(template, Path(cpu_res.bin_dir))

    log("lms-unlocked build (CLI): package + smoke with every layer offloaded")
    dest = work / "built"
    if dest.exists():
        shutil.rmtree(dest)
    t = time.monotonic()
    r = sh([sys.executable, "-m", "app", "build", "--variant", "cuda-avx1", "--template-dir", str(template),
            "--source", str(src), "--report", str(out / "probe.json"), "--out", str(dest), "--jobs", str(a.jobs),
            "--json"], cwd=str(REPO))
    summary["cli_build_seconds"] = round(time.monotonic() - t, 1)
    summary["cli_build_rc"] = r.returncode
    (out / "build-cuda.json").write_text(r.stdout, encoding="utf-8")
    (out / "build-cuda.log").write_text(r.stderr, encoding="utf-8")
    log(f"CLI rc={r.returncode}")
    print(r.stdout[-3000:])
    print(r.stderr[-3000:])

    model = shipped_model()
    # Negative control: the template (CPU-only libraries) under the CUDA smoke check must FAIL (no silent CPU pass).
    from app.core.builder.smoke import plan_smoke, run_smoke

    neg = run_smoke(plan_smoke(template, model, framework="cuda", program="llama-simple"))
    (out / "negative-smoke.json").write_text(json.dumps(neg.__dict__, indent=2, default=list), encoding="utf-8")
    summary["negative_smoke_ok"] = neg.ok
    summary["negative_smoke_reason"] = neg.reason
    log(f"negative control ok={neg.ok} reason={neg.reason}")

    folders = sorted(p for p in dest.iterdir() if p.is_dir()) if dest.exists() else []
    if folders:
        folder = folders[0]
        summary["folder"] = folder.name
        summary["manifest"] = json.loads((folder / "backend-manifest.json").read_text())
        exe = folder / "llama-simple"
        copied = not exe.exists()
        if copied:
            shutil.copy2(Path(cuda_res.bin_dir) / "llama-simple", exe)
        pos = run_smoke(plan_smoke(folder, model, framework="cuda"))
        summary["smoke_ok"] = pos.ok
        summary["smoke_device_lines"] = list(pos.device_lines)
        (out / "smoke-cuda.log").write_text("\n".join(pos.log_tail), encoding="utf-8")
        summary["speed_gpu_tiny"] = speed(folder, exe, model, 99)
        summary["speed_cpu_tiny"] = speed(template, template / "llama-simple", model, 0)
        # A bigger random model (8 blocks, 2048 wide, f16, ~0.5 B parameters) where the GPU's work dominates.
        from app.core.builder.tinymodel import write_tiny_gguf

        big = work / "bench-f16.gguf"
        t = time.monotonic()
        write_tiny_gguf(big, quant="f16", embed=2048, blocks=8, ff=5632, heads=16, kv_heads=8)
        summary["bench_model"] = {"path": big.name, "bytes": big.stat().st_size,
                                  "seconds_to_write": round(time.monotonic() - t, 1),
                                  "shape": "llama, 8 blocks, embed 2048, ff 5632, 16 heads / 8 kv, f16"}
        summary["speed_gpu_bench"] = speed(folder, exe, big, 99, n=64)
        summary["speed_cpu_bench"] = speed(template, template / "llama-simple", big, 0, n=64)
        if copied:
            exe.unlink()
    summary["total_seconds"] = round(time.monotonic() - t0, 1)
    (out / "summary.json").write_text(json.dumps(summary, indent=2, default=str), encoding="utf-8")
    print(json.dumps(summary, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
