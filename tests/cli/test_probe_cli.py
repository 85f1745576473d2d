"""`lms-unlocked probe` / `recommend` through the real console script, in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests import hostfacts
from tests.conftest import FIXTURES, REPO

SCRIPT = Path(sys.executable).parent / "lms-unlocked"
CPUINFO = FIXTURES / "hwdata" / "cpuinfo"
REPORTS = FIXTURES / "reports"


def _env(tmp_path: Path) -> dict[str, str]:
    xdg = tmp_path / "xdg"
    xdg.mkdir(exist_ok=True, mode=0o700)
    return {**os.environ, "XDG_RUNTIME_DIR": str(xdg), "HOME": str(tmp_path / "home"),
            "LMS_UNLOCKED_LOG_DIR": str(tmp_path / "log")}


def run(*args: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(SCRIPT), *args], capture_output=True, text=True, cwd=REPO, env=_env(tmp_path),
                          timeout=120, check=False)


def test_script_exists() -> None:
    assert SCRIPT.is_file(), "install the project: pip install -e '.[test]'"


def test_probe_human(tmp_path: Path) -> None:
    p = run("probe", tmp_path=tmp_path)
    assert p.returncode == 0, p.stderr
    assert p.stdout.startswith("Your ")
    assert "Usable instruction sets:" in p.stdout
    # what this host really has (vulkaninfo / nvidia-smi, independent of the probe) is what the text says
    for f in hostfacts.vulkan_devices(_env(tmp_path)) or []:
        line = next((ln for ln in p.stdout.splitlines() if f.name in ln), "")
        assert line, f"{f.name} missing from:\n{p.stdout}"
        if f.cpu_type:
            assert "not useful" in line  # a software rasteriser never runs models
    assert "NVIDIA GPUs:" in p.stdout
    nv = hostfacts.nvidia_gpu_names()
    for name in nv:
        assert any(name in ln and "compute capability" in ln for ln in p.stdout.splitlines()), p.stdout
    if not nv:
        assert "none: no NVIDIA GPU found" in p.stdout and "NVML" in p.stdout
    assert "Free disk:" in p.stdout and str(tmp_path / "home") in p.stdout  # the LM Studio home of this HOME
    other = tmp_path / "lms"
    other.mkdir()
    q = run("probe", "--no-gpu", "--home", str(other), tmp_path=tmp_path)
    assert q.returncode == 0 and "Free disk: " in q.stdout and f"at {other}\n" in q.stdout
    assert "GPUs: not probed" in q.stdout and "Vulkan devices:" not in q.stdout  # --no-gpu claims nothing


def test_probe_json_round_trips_into_recommend(tmp_path: Path) -> None:
    p = run("probe", "--json", tmp_path=tmp_path)
    assert p.returncode == 0, p.stderr
    report = json.loads(p.stdout)
    assert report["source"] == "live" and report["cpu"]["isa"]
    vk = hostfacts.vulkan_devices(_env(tmp_path))
    if vk is not None:
        assert sorted(d["name"] for d in report["vulkan_devices"]) == sorted(f.name for f in vk)
    assert sorted(g["name"] for g in report["nvidia_gpus"]) == sorted(hostfacts.nvidia_gpu_names())
    assert {e["kind"] for e in report["errors"]} <= {"absent"}
    saved = tmp_path / "report.json"
    saved.write_text(p.stdout, encoding="utf-8")
    r = run("recommend", "--json", "--report", str(saved), tmp_path=tmp_path)
    assert r.returncode == 0, r.stderr
    assert json.loads(r.stdout)["report"] == report


def test_probe_cpuinfo_file(tmp_path: Path) -> None:
    p = run("probe", "--cpuinfo", str(CPUINFO / "ivybridge-i5-3570k.txt"), tmp_path=tmp_path)
    assert p.returncode == 0, p.stderr
    first = p.stdout.splitlines()[0]
    assert first == "Your Intel Core i5-3570K (Ivy Bridge, 2012) has AVX (with F16C) but not AVX2."
    assert "NOT supported" in p.stdout
    j = json.loads(run("probe", "--json", "--cpuinfo", str(CPUINFO / "k10-opteron-6136.txt"),
                       tmp_path=tmp_path).stdout)
    assert j["cpu"]["microarchitecture"] == "k10" and "SSE4.2" not in j["cpu"]["isa"]


def test_recommend_json_shape(tmp_path: Path) -> None:
    p = run("recommend", "--json", "--report", str(REPORTS / "ivybridge-kepler.json"), tmp_path=tmp_path)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["ok"] is True and d["recommended"] == "vulkan-avx1" and d["official_supported"] is False
    assert [c["variant"] for c in d["candidates"]] == ["vulkan-avx1", "cuda", "cpu-avx1"]
    for c in d["candidates"]:
        assert c["reasons"] and isinstance(c["warnings"], list) and c["cmake_flags"][0] == "-DGGML_NATIVE=OFF"
    assert d["candidates"][1]["cuda"]["cuda_toolkit_max"] == "11.8"
    assert d["rejected"] == [{"variant": "noavx", "why_not": d["rejected"][0]["why_not"],
                              "label": d["rejected"][0]["label"], "reasons": d["rejected"][0]["reasons"]}]


@pytest.mark.parametrize(
    ("file", "recommended", "official"),
    [("haswell-i7-4770.txt", None, True), ("sandybridge-i5-2400.txt", "cpu-avx1", False),
     ("nehalem-bloomfield-i7-920.txt", "noavx", False)],
)
def test_recommend_cpuinfo(tmp_path: Path, file: str, recommended: str | None, official: bool) -> None:
    p = run("recommend", "--json", "--cpuinfo", str(CPUINFO / file), tmp_path=tmp_path)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert (d["recommended"], d["official_supported"]) == (recommended, official)


def test_recommend_human(tmp_path: Path) -> None:
    p = run("recommend", "--report", str(REPORTS / "ivybridge-gtx770.json"), tmp_path=tmp_path)
    assert p.returncode == 0, p.stderr
    assert "Recommended: " in p.stdout and "[recommended]" in p.stdout
    assert "Evaluation batch size' to 384" in p.stdout
    assert "Not suitable:" in p.stdout and "- noavx:" in p.stdout


def _bad_files(tmp: Path) -> dict[str, Path]:
    text = (CPUINFO / "ivybridge-i5-3570k.txt").read_text(encoding="utf-8")
    truncated = tmp / "truncated.txt"
    truncated.write_text(text[: text.index("flags") + 20], encoding="utf-8")
    binary = tmp / "binary.bin"
    binary.write_bytes(bytes(range(256)) * 4)
    return {"truncated": truncated, "binary": binary, "missing": tmp / "nope.txt",
            "unreadable": Path("/proc/self/mem"), "directory": tmp}


@pytest.mark.parametrize("kind", ["truncated", "binary", "missing", "unreadable", "directory"])
@pytest.mark.parametrize("command", ["probe", "recommend"])
def test_bad_cpuinfo_exit_2_without_traceback(tmp_path: Path, kind: str, command: str) -> None:
    path = _bad_files(tmp_path)[kind]
    p = run(command, "--cpuinfo", str(path), tmp_path=tmp_path)
    assert p.returncode == 2, (p.stdout, p.stderr)
    assert p.stderr.startswith("error: ") and "hint: " in p.stderr
    assert "Traceback" not in p.stderr + p.stdout
    if command == "probe":  # the --json error object is the same for both commands; check it once per kind
        return
    j = run(command, "--json", "--cpuinfo", str(path), tmp_path=tmp_path)
    assert j.returncode == 2
    d = json.loads(j.stdout)
    assert d["ok"] is False and d["error"] == "bad-input-file" and d["hint"]


def test_bad_report_file(tmp_path: Path) -> None:
    bad = tmp_path / "r.json"
    bad.write_text('{"schema_version": 1', encoding="utf-8")
    p = run("recommend", "--report", str(bad), tmp_path=tmp_path)
    assert p.returncode == 2 and "not a JSON hardware report" in p.stderr and "Traceback" not in p.stderr


def test_report_and_cpuinfo_are_exclusive(tmp_path: Path) -> None:
    p = run("recommend", "--report", "a", "--cpuinfo", "b", tmp_path=tmp_path)
    assert p.returncode == 2 and "not allowed with" in p.stderr


def test_recommend_this_machine(tmp_path: Path) -> None:
    flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags")).split()
    official = {"avx2", "fma", "f16c"} <= set(flags)
    p = run("recommend", "--json", tmp_path=tmp_path)
    assert p.returncode == 0, p.stderr
    d = json.loads(p.stdout)
    assert d["official_supported"] is official and d["report"]["source"] == "live"
    if official:
        assert d["recommended"] is None  # no NVIDIA GPU here, and lavapipe is not a useful GPU
