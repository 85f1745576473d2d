"""Prove a backend folder runs: generate a few tokens with the tiny GGUF, through the folder's own libraries.

- 1.x backends: our small host program (``lms_smoke``, app/core/builder/hostprog.py) loads the folder's own
  llama library by path (with the ggml libraries next to it) and generates N tokens; the run must exit 0,
  report N decoded tokens, and every llama/ggml library it loaded must come from the folder. Windows folders
  run under Wine on Linux. (A folder's own ``llama-simple`` can still be run with ``kind="simple"``.)
- 2.x backends: the folder's own ``llama-server`` is started on 127.0.0.1, asked for N tokens over HTTP, and
  stopped (process group killed).
- GPU variants must show the intended device in the log (``ggml_vulkan: 0 = …`` / ``ggml_cuda_init: found``
  and ``offloaded N/N layers to GPU``): a silent CPU fallback fails the test.
- ``qemu_cpu`` runs the program under ``qemu-x86_64 -cpu <model>`` so an old CPU can be stood in for; exit
  code 132 (SIGILL) is reported as an illegal instruction. Asking for qemu where it is missing is an error,
  never a silent native run; qemu cannot check Windows binaries (Wine re-executes natively), so there the
  static PE audit is the ISA proof.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.core.builder.hostprog import is_inside
from app.core.errors import UnlockedError, UsageError
from app.core.runner import CancelToken, ProcessPlan, kill_process_tree, popen_platform_kwargs, run_process

SIGILL_EXIT = 132
DEFAULT_PROMPT = "Once upon a time"
# qemu's TCG lacks these on the Intel models; disabling them silences its warnings (docs/llama-build-notes.md §3.1).
_QEMU_QUIET = {"IvyBridge", "SandyBridge", "Haswell", "Westmere", "Nehalem"}
_DECODED_RE = re.compile(r"decoded (\d+) tokens")
_OFFLOADED_RE = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")
_LOADED_RE = re.compile(r"^lms_smoke: loaded (.+)$")
WINE_CANDIDATES = ("wine64", "wine")
WINE_LOADER_PATHS = ("/usr/lib/wine/wine64", "/usr/lib64/wine/wine64", "/opt/wine-stable/bin/wine64")


class SmokeTestFailed(UnlockedError):
    code = "smoke-test-failed"


class SmokeSetupError(UsageError):
    """The smoke test cannot run as asked (qemu or Wine missing, qemu for a Windows folder)."""

    code = "smoke-setup"


@dataclass(frozen=True)
class SmokePlan:
    process: ProcessPlan
    kind: str  # "simple" or "server"
    framework: str  # cpu | vulkan | cuda
    n_tokens: int
    qemu_cpu: str | None = None
    port: int | None = None
    device_patterns: tuple[str, ...] = field(default_factory=tuple)
    runner: str = "native"  # "native" | "qemu-x86_64 -cpu <model>" | "wine"
    folder: str = ""


@dataclass(frozen=True)
class SmokeResult:
    ok: bool
    returncode: int | None
    sigill: bool
    tokens: int
    text: str
    device_lines: tuple[str, ...]
    seconds: float
    reason: str = ""
    log_tail: tuple[str, ...] = ()
    runner: str = "native"
    loaded: tuple[str, ...] = ()  # llama/ggml libraries the host program loaded

    def to_dict(self) -> dict[str, object]:
        return {
            "ok": self.ok,
            "reason": self.reason,
            "runner": self.runner,
            "returncode": self.returncode,
            "sigill": self.sigill,
            "tokens": self.tokens,
            "seconds": round(self.seconds, 2),
            "loaded": list(self.loaded),
            "device_lines": list(self.device_lines),
        }


def qemu_cpu_arg(model: str) -> str:
    return f"{model},-x2apic,-tsc-deadline" if model in _QEMU_QUIET else model


def device_patterns(framework: str) -> tuple[str, ...]:
    if framework == "vulkan":
        return (r"ggml_vulkan: \d+ = ", r"offloaded \d+/\d+ layers to GPU")
    if framework == "cuda":
        return (r"ggml_cuda_init: found \d+ CUDA devices", r"offloaded \d+/\d+ layers to GPU")
    return ()


def find_wine(env_path: str | None = None) -> str | None:
    """Wine's 64-bit loader: ``wine64``/``wine`` on PATH, else Debian's /usr/lib/wine/wine64 (not on PATH)."""
    for name in WINE_CANDIDATES:
        hit = shutil.which(name, path=env_path)
        if hit:
            return hit
    return next((p for p in WINE_LOADER_PATHS if os.access(p, os.X_OK)), None)


def wine_path(path: Path | str) -> str:
    """A Linux absolute path as Wine's Z: drive sees it."""
    return "Z:" + str(path).replace("/", "\\")


def plan_smoke(
    folder: Path,
    model: Path,
    *,
    framework: str = "cpu",
    kind: str = "simple",
    program: str | None = None,
    library: Path | None = None,
    target: str = "linux",
    qemu_cpu: str | None = None,
    qemu: str = "qemu-x86_64",
    wine: str | None = None,
    wine_prefix: Path | None = None,
    n_tokens: int = 16,
    prompt: str = DEFAULT_PROMPT,
    port: int | None = None,
    env: dict[str, str] | None = None,
) -> SmokePlan:
    """The exact command of the smoke test (pure).

    kind "host": `program` is our compiled host program (absolute path, outside the folder) and `library` the
    folder's llama library it loads; target "win" runs it under `wine` (required on Linux) with `wine_prefix`.
    """
    folder = Path(folder)
    gpu = framework in ("vulkan", "cuda")
    env = dict(env or {})
    runner = "native"
    if qemu_cpu and target == "win":
        raise SmokeSetupError(
            "qemu cannot check the instruction sets of a Windows build (Wine re-executes its loader natively).",
            hint="Drop --qemu-cpu: for Windows folders the static PE audit against the target CPU is the ISA proof.",
        )
    if kind == "host":
        if program is None or library is None:
            raise ValueError("kind='host' needs program and library")
        lib_arg, model_arg = (wine_path(library), wine_path(model)) if target == "win" else (str(library), str(model))
        argv = [str(program), "--lib", lib_arg, "-m", model_arg, "-n", str(n_tokens)]
        if gpu:
            argv += ["-ngl", "99"]
        argv.append(prompt)
        if target == "win" and wine:
            argv = [wine, *argv]
            runner = "wine"
            env.setdefault("WINEDEBUG", "-all")
            if wine_prefix is not None:
                env["WINEPREFIX"] = str(wine_prefix)
    elif kind == "simple":
        exe = folder / (program or "llama-simple")
        argv = [str(exe), "-m", str(model), "-n", str(n_tokens)]
        if gpu:
            argv += ["-ngl", "99"]
        argv.append(prompt)
    elif kind == "server":
        exe = folder / (program or "llama-server")
        argv = [
            str(exe),
            "-m",
            str(model),
            "--host",
            "127.0.0.1",
            "--port",
            str(port or 0),
            "-c",
            "256",
            "-t",
            "2",
            "--no-warmup",
        ]
        if gpu:
            argv += ["-ngl", "99"]
    else:
        raise ValueError(kind)
    if qemu_cpu:
        argv = [qemu, "-cpu", qemu_cpu_arg(qemu_cpu), *argv]
        runner = f"qemu-x86_64 -cpu {qemu_cpu}"
    return SmokePlan(
        ProcessPlan(tuple(argv), cwd=str(folder), env=env, label="smoke test"),
        kind,
        framework,
        n_tokens,
        qemu_cpu,
        port,
        device_patterns(framework),
        runner,
        str(folder),
    )


def _device_lines(lines: list[str], patterns: tuple[str, ...]) -> tuple[tuple[str, ...], str]:
    found: list[str] = []
    for pat in patterns:
        hit = next((ln for ln in lines if re.search(pat, ln)), None)
        if hit is None:
            return tuple(found), f"no log line matching {pat!r}: the GPU backend did not load (CPU fallback?)"
        found.append(hit)
    for ln in lines:
        m = _OFFLOADED_RE.search(ln)
        if m and patterns and m.group(1) != m.group(2):
            return tuple(found), f"only {m.group(1)}/{m.group(2)} layers were offloaded"
    return tuple(found), ""


def run_smoke(
    plan: SmokePlan, *, timeout: float = 300, cancel: CancelToken | None = None, log_path: Path | None = None
) -> SmokeResult:
    if plan.kind == "server":
        return _run_server(plan, timeout=timeout, cancel=cancel, log_path=log_path)
    lines: list[str] = []
    res = run_process(plan.process, on_line=lines.append, cancel=cancel, log_path=log_path, timeout=timeout)
    sigill = res.returncode in (SIGILL_EXIT, -4) or any("Illegal instruction" in ln for ln in lines[-5:])
    decoded = [int(m.group(1)) for m in (_DECODED_RE.search(ln) for ln in lines) if m]
    tokens = decoded[-1] if decoded else 0
    text = _generated_text(lines)
    dev, why = _device_lines(lines, plan.device_patterns)
    loaded = tuple(m.group(1).strip() for m in (_LOADED_RE.match(ln) for ln in lines) if m)
    outside = [p for p in loaded if plan.folder and not is_inside(p, Path(plan.folder))]
    reason = ""
    if sigill:
        reason = "illegal instruction (SIGILL): the libraries use an instruction set this CPU lacks"
    elif res.timed_out:
        reason = f"timed out after {timeout:.0f} s"
    elif res.returncode != 0:
        reason = f"exited with code {res.returncode}"
    elif tokens != plan.n_tokens:
        reason = f"decoded {tokens} tokens, expected {plan.n_tokens}"
    elif why:
        reason = why
    elif plan.kind == "host" and not loaded:
        reason = "the host program did not report which llama/ggml libraries it loaded"
    elif outside:
        reason = f"loaded {', '.join(outside)} from outside the folder"
    return SmokeResult(
        not reason, res.returncode, sigill, tokens, text, dev, res.duration, reason, res.tail, plan.runner, loaded
    )


def _generated_text(lines: list[str]) -> str:
    for ln in lines:
        if DEFAULT_PROMPT in ln:
            return ln
    return ""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def _run_server(plan: SmokePlan, *, timeout: float, cancel: CancelToken | None, log_path: Path | None) -> SmokeResult:
    import requests

    port = plan.port
    argv = list(plan.process.argv)
    if not port or port == 0:
        port = free_port()
        argv[argv.index("--port") + 1] = str(port)
    start = time.monotonic()
    log = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115
    try:
        proc = subprocess.Popen(
            argv,
            cwd=plan.process.cwd,
            env=plan.process.full_env(),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            **popen_platform_kwargs(),
        )
    except OSError as exc:  # not executable, wrong format (e.g. a Windows .exe), missing loader
        if log_path:
            log.close()  # type: ignore[union-attr]
        why = f"could not start {Path(argv[0]).name}: {exc.strerror or exc}"
        return SmokeResult(False, None, False, 0, "", (), time.monotonic() - start, why, (why,))
    lines: list[str] = []
    import threading

    def reader() -> None:
        assert proc.stdout is not None
        for raw in proc.stdout:
            lines.append(raw.decode("utf-8", "backslashreplace").rstrip("\r\n"))
            if log_path and not isinstance(log, int):
                log.write(raw)

    t = threading.Thread(target=reader, daemon=True)
    t.start()
    base = f"http://127.0.0.1:{port}"
    reason = ""
    text = ""
    tokens = 0
    try:
        while True:
            if cancel is not None and cancel.cancelled:
                reason = "cancelled"
                break
            if proc.poll() is not None:
                reason = f"llama-server exited with code {proc.returncode} before it became ready"
                break
            if time.monotonic() - start > timeout:
                reason = f"llama-server not ready after {timeout:.0f} s"
                break
            try:
                if requests.get(base + "/health", timeout=2).status_code == 200:
                    break
            except requests.RequestException:
                pass
            time.sleep(0.3)
        if not reason:
            r = requests.post(
                base + "/completion",
                json={"prompt": DEFAULT_PROMPT, "n_predict": plan.n_tokens, "temperature": 0, "cache_prompt": False},
                timeout=max(30.0, timeout - (time.monotonic() - start)),
            )
            data = r.json()
            text = str(data.get("content", ""))
            tokens = int(data.get("tokens_predicted", 0) or 0)
            if r.status_code != 200 or tokens != plan.n_tokens:
                reason = f"completion returned HTTP {r.status_code}, {tokens} tokens (expected {plan.n_tokens})"
    except (requests.RequestException, ValueError) as exc:
        reason = f"HTTP request failed: {exc}"
    finally:
        kill_process_tree(proc)
        t.join(5)
        if not isinstance(log, int):
            log.close()
    rc = proc.returncode
    sigill = rc in (SIGILL_EXIT, -4)
    if sigill:
        reason = "illegal instruction (SIGILL): the libraries use an instruction set this CPU lacks"
    dev, why = _device_lines(lines, plan.device_patterns)
    if not reason and why:
        reason = why
    return SmokeResult(
        not reason, rc, sigill, tokens, text, dev, time.monotonic() - start, reason, tuple(lines[-50:]), plan.runner
    )


def smoke_record(result: SmokeResult, plan: SmokePlan) -> dict[str, object]:
    """What a folder's provenance keeps of its smoke test (see ``provenance.record_smoke``): the verdict and
    where it ran (this CPU, or the CPU model qemu stood in), so `install` can refuse a folder that failed it."""
    return {
        "ok": result.ok,
        "reason": result.reason,
        "sigill": result.sigill,
        "returncode": result.returncode,
        "tokens": result.tokens,
        "kind": plan.kind,
        "framework": plan.framework,
        "cpu": f"qemu -cpu {plan.qemu_cpu}" if plan.qemu_cpu else "this computer",
    }


def require_smoke(result: SmokeResult, *, folder: Path) -> None:
    if result.ok:
        return
    raise SmokeTestFailed(
        f"The smoke test failed: {result.reason}.",
        context=str(folder),
        hint="The backend would not work in LM Studio; see the log lines in the details.",
        details="\n".join(result.log_tail[-30:]),
    )


def have_qemu(qemu: str = "qemu-x86_64") -> bool:
    return shutil.which(qemu) is not None


def require_qemu(qemu_cpu: str | None, qemu: str = "qemu-x86_64") -> None:
    """--qemu-cpu without qemu is an error: a native run would prove nothing about that CPU."""
    if qemu_cpu and not have_qemu(qemu):
        raise SmokeSetupError(
            f"--qemu-cpu {qemu_cpu} needs {qemu}, which is not installed.",
            hint="Install qemu-user (Debian/Ubuntu: sudo apt-get install qemu-user), or drop --qemu-cpu to "
            "smoke-test on this CPU only.",
        )
