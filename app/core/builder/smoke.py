"""Prove a backend folder runs: generate a few tokens with the tiny GGUF, through the folder's own libraries.

- 1.x backends: a small host program (``llama-simple``) linked against the folder's libraries (RUNPATH
  ``$ORIGIN``) generates N tokens; the run must exit 0 and report N decoded tokens.
- 2.x backends: the folder's own ``llama-server`` is started on 127.0.0.1, asked for N tokens over HTTP, and
  stopped (process group killed).
- GPU variants must show the intended device in the log (``ggml_vulkan: 0 = …`` / ``ggml_cuda_init: found``
  and ``offloaded N/N layers to GPU``): a silent CPU fallback fails the test.
- ``qemu_cpu`` runs the program under ``qemu-x86_64 -cpu <model>`` so an old CPU can be stood in for; exit
  code 132 (SIGILL) is reported as an illegal instruction.
"""

from __future__ import annotations

import re
import shutil
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.core.errors import UnlockedError
from app.core.runner import CancelToken, ProcessPlan, kill_process_tree, popen_platform_kwargs, run_process

SIGILL_EXIT = 132
DEFAULT_PROMPT = "Once upon a time"
# qemu's TCG lacks these on the Intel models; disabling them silences its warnings (docs/llama-build-notes.md §3.1).
_QEMU_QUIET = {"IvyBridge", "SandyBridge", "Haswell", "Westmere", "Nehalem"}
_DECODED_RE = re.compile(r"decoded (\d+) tokens")
_OFFLOADED_RE = re.compile(r"offloaded (\d+)/(\d+) layers to GPU")


class SmokeTestFailed(UnlockedError):
    code = "smoke-test-failed"


@dataclass(frozen=True)
class SmokePlan:
    process: ProcessPlan
    kind: str  # "simple" or "server"
    framework: str  # cpu | vulkan | cuda
    n_tokens: int
    qemu_cpu: str | None = None
    port: int | None = None
    device_patterns: tuple[str, ...] = field(default_factory=tuple)


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


def qemu_cpu_arg(model: str) -> str:
    return f"{model},-x2apic,-tsc-deadline" if model in _QEMU_QUIET else model


def device_patterns(framework: str) -> tuple[str, ...]:
    if framework == "vulkan":
        return (r"ggml_vulkan: \d+ = ", r"offloaded \d+/\d+ layers to GPU")
    if framework == "cuda":
        return (r"ggml_cuda_init: found \d+ CUDA devices", r"offloaded \d+/\d+ layers to GPU")
    return ()


def plan_smoke(
    folder: Path,
    model: Path,
    *,
    framework: str = "cpu",
    kind: str = "simple",
    program: str | None = None,
    qemu_cpu: str | None = None,
    qemu: str = "qemu-x86_64",
    n_tokens: int = 16,
    prompt: str = DEFAULT_PROMPT,
    port: int | None = None,
    env: dict[str, str] | None = None,
) -> SmokePlan:
    """The exact command of the smoke test (pure)."""
    folder = Path(folder)
    gpu = framework in ("vulkan", "cuda")
    if kind == "simple":
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
    return SmokePlan(
        ProcessPlan(tuple(argv), cwd=str(folder), env=dict(env or {}), label="smoke test"),
        kind,
        framework,
        n_tokens,
        qemu_cpu,
        port,
        device_patterns(framework),
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
    return SmokeResult(not reason, res.returncode, sigill, tokens, text, dev, res.duration, reason, res.tail)


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
    return SmokeResult(not reason, rc, sigill, tokens, text, dev, time.monotonic() - start, reason, tuple(lines[-50:]))


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
