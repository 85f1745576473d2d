"""Crash doctor: recorded LM Studio crash texts (tests/fixtures/lmstudio-logs, each with its public source),
exit-code arithmetic (docs/lmstudio-contract.md §16.1), and the illegal-instruction → ISA audit link on a
home whose backend holds a real mingw-built DLL (AVX2 with no CPU check, or behind `__builtin_cpu_supports`).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from app.core.errors import InputFileError
from app.core.hardware.probe import probe_hardware
from app.core.hardware.report import HardwareReport
from app.core.lmstudio.crashlog import (
    collect_lmstudio_logs,
    decode_exit_code,
    diagnose_crash,
    lmstudio_log_locations,
    read_log_text,
    scan_log,
)
from app.core.lmstudio.home import resolve_home
from tests.conftest import FIXTURES, HWDATA, REPO
from tests.core.builder.conftest import AVX2_FLAGS, ISA_SOURCE, _compile
from tests.core.builder.test_audit_dispatch import DISPATCH_SOURCE
from tests.lmstudio_homes import make_home

RECORDED: dict[str, dict[str, Any]] = {
    r["id"]: r for r in json.loads((FIXTURES / "lmstudio-logs" / "recorded-crashes.json").read_text("utf-8"))
}
WIN_AVX2 = "llama.cpp-win-x86_64-avx2"


def _cpu(name: str) -> HardwareReport:
    return probe_hardware(cpuinfo_path=HWDATA / "cpuinfo" / f"{name}.txt")


IVY = _cpu("ivybridge-i5-3570k")


def test_every_recorded_text_names_its_source() -> None:
    assert len(RECORDED) >= 10
    for r in RECORDED.values():
        assert r["source"].startswith("https://github.com/") and r["text"] and r["what"]


@pytest.mark.parametrize(
    ("printed", "low", "high", "ill"),
    [
        ("18446744072635812000", 0xC0000401, 0xC0000BFF, "no"),  # abort range (0xC0000409)
        ("18446744072635810000", 0xC0000000, 0xC0000400, "possible"),  # includes 0xC000001D
        ("-1073740791", 0xC0000409, 0xC0000409, "no"),
        ("-1073741795", 0xC000001D, 0xC000001D, "yes"),
        ("0xC000001D", 0xC000001D, 0xC000001D, "yes"),
        ("0xc0000409", 0xC0000409, 0xC0000409, "no"),
        ("3221225477", 0xC0000005, 0xC0000005, "no"),
        ("132", 132, 132, "yes"),
        ("134", 134, 134, "no"),
    ],
)
def test_decode_exit_code(printed: str, low: int, high: int, ill: str) -> None:
    e = decode_exit_code(printed)
    assert e is not None
    assert (e.low, e.high, e.illegal_instruction) == (low, high, ill)


def test_rounded_codes_are_what_a_double_makes_of_the_statuses() -> None:
    # LM Studio's number is the unsigned 64-bit status through a double; every status in the range prints so.
    for status, printed in ((0xC0000409, "18446744072635812000"), (0xC000001D, "18446744072635810000")):
        u64 = (1 << 64) - (1 << 32) + status
        # JavaScript's Number -> string: the shortest digits that round-trip (Python's repr), padded with zeros.
        mantissa, exp = repr(float(u64)).split("e+")
        assert mantissa.replace(".", "").ljust(int(exp) + 1, "0") == printed
        e = decode_exit_code(printed)
        assert e is not None and e.low <= status <= e.high
        assert int(float(printed)) == int(float(u64))
    e = decode_exit_code("18446744072635812000")
    assert e is not None and "aborted" in e.meaning and "0xC0000409" in e.meaning
    assert decode_exit_code("not a number") is None


def test_recorded_load_errors_are_decoded() -> None:
    d = diagnose_crash(RECORDED["ui-load-abort"]["text"])
    assert d.illegal_instruction == "no" and "aborted" in d.headline
    assert any("batch size" in a for a in d.advice)
    d = diagnose_crash(RECORDED["ui-load-ambiguous"]["text"])
    assert d.illegal_instruction == "possible" and "ambiguous" in d.headline
    assert any("DLLs" in a for a in d.advice)
    # No backend known: the doctor says what it needs to judge the CPU side.
    assert any("--backend" in a for a in d.advice)
    d = diagnose_crash(RECORDED["main-log-crashed"]["text"])
    assert len(d.exit_codes) == 2 and all(c.low == 0xC0000401 for c in d.exit_codes)
    assert diagnose_crash(RECORDED["server-log-crashed"]["text"]).exit_codes[0].candidates[0][0] == 0xC0000409
    d = diagnose_crash(RECORDED["linux-sigabrt"]["text"])
    assert "SIGABRT" in d.headline
    assert "SIGTRAP" in diagnose_crash(RECORDED["linux-sigtrap"]["text"]).headline
    d = diagnose_crash(RECORDED["unknown-negative"]["text"])
    assert d.illegal_instruction == "no" and "no crash status" in d.headline
    d = diagnose_crash(RECORDED["bare-code"]["text"])
    assert d.illegal_instruction == "possible"


@pytest.mark.parametrize("key", ["linux-illegal-instruction", "windows-signed-illegal", "kernel-invalid-opcode"])
def test_recorded_illegal_instructions(key: str) -> None:
    d = diagnose_crash(RECORDED[key]["text"])
    assert d.illegal_instruction == "yes", d.to_json()
    assert "illegal instruction" in d.headline


def test_scan_points_at_lines() -> None:
    lines = scan_log(RECORDED["main-log-crashed"]["text"])
    assert [x.number for x in lines] == [2, 6]
    assert all(x.kind == "exit-code" for x in lines)
    assert scan_log("all fine\nnothing here") == []
    assert "no crash message" in diagnose_crash("").headline


def _home_with_ggml_cpu(tmp_path: Path, source: str, flags: tuple[str, ...]) -> Path:
    if shutil.which("x86_64-w64-mingw32-gcc") is None:
        pytest.skip("x86_64-w64-mingw32-gcc missing: scripts/test.sh installs gcc-mingw-w64-x86-64")
    prefs = [{"model_format": "gguf", "name": WIN_AVX2, "version": "1.48.0"}]
    home = make_home(tmp_path, backends=("win-cpu-1.48.0",), prefs=prefs)
    dll = _compile(tmp_path / "ggml-cpu.dll", source, flags, "pe")
    shutil.copy(dll, home / "extensions" / "backends" / f"{WIN_AVX2}-1.48.0" / "ggml-cpu.dll")
    return home


def test_illegal_instruction_is_tied_to_the_selected_backends_audit(tmp_path: Path) -> None:
    home = resolve_home(str(_home_with_ggml_cpu(tmp_path, ISA_SOURCE, AVX2_FLAGS)))
    text = "(Exit code: -1073741795). Unknown error. Try a different model and/or config."
    d = diagnose_crash(text, home=home, report=IVY)
    assert d.backend == f"{WIN_AVX2}@1.48.0" and d.audit is not None
    assert {v.extension for v in d.audit.violations} >= {"AVX2", "FMA"}
    assert {v.file for v in d.audit.violations} == {"ggml-cpu.dll"}
    assert d.headline.startswith(f"{WIN_AVX2}@1.48.0 uses ") and "outside any CPU check" in d.headline
    assert "AVX2" in d.headline and "your CPU lacks it → install cpu-avx1" in d.headline
    assert any("lms-unlocked build --variant cpu-avx1" in a for a in d.advice)
    # A CPU without AVX gets the noavx build.
    d = diagnose_crash(text, home=home, report=_cpu("westmere-arrandale-i5-m560"))
    assert d.headline.endswith("→ install noavx")
    # A Haswell has everything the DLL uses: the crash is not an unsupported instruction.
    d = diagnose_crash(text, home=home, report=_cpu("haswell-i7-4770"))
    assert d.audit is not None and d.audit.violations == ()
    assert any("probably not an unsupported instruction" in a for a in d.advice)
    # The ambiguous Windows code audits too; an abort does not.
    assert diagnose_crash(RECORDED["ui-load-ambiguous"]["text"], home=home, report=IVY).audit is not None
    assert diagnose_crash(RECORDED["ui-load-abort"]["text"], home=home, report=IVY).audit is None


def test_dispatched_avx2_is_no_culprit(tmp_path: Path) -> None:
    home = resolve_home(str(_home_with_ggml_cpu(tmp_path, DISPATCH_SOURCE, ())))
    d = diagnose_crash("Exit code: 0xC000001D", home=home, report=IVY)
    assert d.audit is not None and d.audit.violations == () and d.audit.guarded.get("AVX2", 0) >= 2
    assert any("behind one" in a for a in d.advice)


def test_backend_named_in_the_log_wins_over_the_selection(tmp_path: Path) -> None:
    home = resolve_home(str(_home_with_ggml_cpu(tmp_path, ISA_SOURCE, AVX2_FLAGS)))
    text = "loading with llama.cpp-win-x86_64-nothere@1.0.0\nExit code: 132"
    assert diagnose_crash(text, home=home, report=IVY).backend == f"{WIN_AVX2}@1.48.0"  # not installed: selection


def test_log_locations_and_reading(tmp_path: Path) -> None:
    env = {"APPDATA": str(tmp_path / "Roaming"), "USERPROFILE": str(tmp_path)}
    win = lmstudio_log_locations(None, platform="win32", env=env)
    assert win[0].path == tmp_path / "Roaming" / "LM Studio" / "logs" / "main.log" and win[0].confidence == "high"
    mac = lmstudio_log_locations(None, platform="darwin", env={"HOME": str(tmp_path)})
    assert {str(x.path.relative_to(tmp_path)) for x in mac} == {
        "Library/Application Support/LM Studio/logs/main.log",
        "Library/Logs/LM Studio/main.log",
    }
    home = resolve_home(str(make_home(tmp_path)))
    lin = lmstudio_log_locations(home, platform="linux", env={"HOME": str(tmp_path)})
    assert lin[-1].path == home.path / "server-logs"
    # A server log of the month with LM Studio's recorded line, and the app log: both read, newest last.
    day = home.path / "server-logs" / "2025-08" / "2025-08-25.1.log"
    day.parent.mkdir(parents=True)
    day.write_text(RECORDED["server-log-crashed"]["text"])
    text, files, looked = collect_lmstudio_logs(home, platform="linux", env={"HOME": str(tmp_path)})
    assert files == [day] and len(looked) == 2 and "18446744072635812000" in text
    with pytest.raises(InputFileError, match="not found"):
        read_log_text(tmp_path / "missing.log")
    with pytest.raises(InputFileError, match="not a file"):
        read_log_text(tmp_path)
    utf16 = tmp_path / "paste.txt"
    utf16.write_bytes("Exit code: 132\n".encode("utf-16"))
    assert "132" in read_log_text(utf16)
    big = tmp_path / "big.log"
    big.write_text("x" * 5000 + "\nExit code: 134\n")
    assert read_log_text(big, max_bytes=100).endswith("Exit code: 134\n")


def test_doctor_log_cli(tmp_path: Path) -> None:
    home = _home_with_ggml_cpu(tmp_path, ISA_SOURCE, AVX2_FLAGS)
    log = tmp_path / "lmstudio-error.txt"
    log.write_text(RECORDED["windows-signed-illegal"]["text"])
    script = Path(sys.executable).with_name("lms-unlocked")
    ivy = str(HWDATA / "cpuinfo" / "ivybridge-i5-3570k.txt")

    def run(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(script), "doctor", "--home", str(home), "--cpuinfo", ivy, *args],
            capture_output=True,
            text=True,
            cwd=REPO,
            stdin=subprocess.DEVNULL,
        )

    p = run("--log", str(log))
    assert p.returncode == 0, p.stderr
    assert f"{WIN_AVX2}@1.48.0 uses" in p.stdout and "→ install cpu-avx1" in p.stdout
    d = json.loads(run("--log", str(log), "--json").stdout)
    assert d["crash"]["illegal_instruction"] == "yes" and d["crash"]["audit"]["violations"]
    p = run("--log", str(log), "--backend", f"{WIN_AVX2}@1.48.0", "--json")
    assert json.loads(p.stdout)["crash"]["backend"] == f"{WIN_AVX2}@1.48.0"
    p = run("--log", str(log), "--backend", "llama.cpp-win-x86_64-nothere@1.0.0")
    assert p.returncode == 2 and "Traceback" not in p.stderr
    p = run("--log", str(tmp_path / "nope.txt"))
    assert p.returncode == 2 and "log file not found" in p.stderr
    p = run("--log")  # LM Studio's own logs: none here, said plainly
    assert p.returncode == 0 and "no log file found" in p.stdout and "server-logs" in p.stdout


def test_report_without_cpu_says_so(tmp_path: Path) -> None:
    home = resolve_home(str(_home_with_ggml_cpu(tmp_path, ISA_SOURCE, AVX2_FLAGS)))
    d = diagnose_crash("Exit code: 132", home=home, report=dataclasses.replace(IVY, cpu=None))
    assert d.audit is None and any("could not be probed" in a for a in d.advice)


@pytest.mark.lmstudio_real
def test_real_avx_folder_crash_on_westmere_and_ivy_bridge(lmstudio_real: Path, tmp_path: Path) -> None:
    """theIvanR's 1.48.0 AVX folder (LM Studio's binaries, extracted to tmp only) selected in a home."""
    import py7zr

    name = "llama.cpp-win-x86_64-avx"
    home_dir = make_home(tmp_path, backends=(), prefs=[{"model_format": "gguf", "name": name, "version": "1.48.0"}])
    with py7zr.SevenZipFile(lmstudio_real / f"{name}-1.48.0.7z") as z:
        z.extractall(home_dir / "extensions" / "backends")
    home = resolve_home(str(home_dir))
    text = RECORDED["ui-load-ambiguous"]["text"]
    d = diagnose_crash(text, home=home, report=_cpu("westmere-arrandale-i5-m560"))
    assert d.backend == f"{name}@1.48.0" and d.audit is not None
    assert {(v.file, v.extension) for v in d.audit.violations} == {("ggml-cpu.dll", "AVX")}
    assert "outside any CPU check (ggml-cpu.dll: " in d.headline and d.headline.endswith("→ install noavx")
    # Ivy Bridge: the llama.cpp libraries need nothing it lacks (llama.dll's AVX2 is behind the MSVC runtime's
    # check); what is left outside a check is in LM Studio's own files, which no backend build replaces.
    d = diagnose_crash(text, home=home, report=IVY)
    assert d.audit is not None and d.audit.violations == () and d.audit.guarded.get("AVX2", 0) >= 45
    assert {v.file for v in d.audit.lmstudio_violations} <= {"llm_engine.node", "lmstudiocore.dll", "llm_engine.dll"}
    assert "AVX2" not in {v.extension for v in d.audit.lmstudio_violations}
