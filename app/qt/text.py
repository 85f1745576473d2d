"""User-facing text built by pure functions (no Qt), so it can be unit-tested and linted."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from app.core.hardware.report import CpuInfo, HardwareReport, NvidiaGpu, VulkanDevice
from app.core.progress import STALLED_AFTER_S, Snapshot
from app.core.recommend import VariantsDataError, nvidia_support, variant_by_id

WHAT_IS_AVX2 = (
    "AVX and AVX2 are sets of extra instructions that let a processor do many calculations at once. "
    "LM Studio's official backends are compiled to use AVX2, which Intel added in 2013 (Haswell) and AMD in "
    "2015 (Excavator). On an older processor such a backend does not start, or LM Studio does not even list it. "
    "A backend built for AVX (without the 2), or without AVX at all, runs on these processors — a bit slower, "
    "but it runs. If a graphics card can do the work instead, the processor matters much less."
)

INTRO = (
    "LM Studio Unlocked installs a llama.cpp backend that runs on computers LM Studio's official backends "
    "refuse — older processors without AVX2 and older NVIDIA graphics cards. It can also repair a backend "
    "LM Studio does not list, and remove the ones it installed."
)


def yes_no(flag: bool) -> str:
    return "yes" if flag else "no"


def cpu_summary(cpu: CpuInfo | None) -> str:
    """'Intel Core i5-3570 — Ivy Bridge, 2012 — AVX yes, AVX2 no'."""
    if cpu is None:
        return "Processor: could not be identified"
    name = cpu.brand.strip() or f"{cpu.vendor or 'Unknown'} processor"
    gen = ""
    if cpu.microarchitecture_label and cpu.microarchitecture_label != "unknown":
        gen = cpu.microarchitecture_label + (f", {cpu.year}" if cpu.year else "")
    parts = [name]
    if gen:
        parts.append(gen)
    parts.append(f"AVX {yes_no(cpu.has('AVX'))}, AVX2 {yes_no(cpu.has('AVX2'))}")
    return " — ".join(parts)


def cpu_notes(cpu: CpuInfo | None) -> list[str]:
    if cpu is None:
        return []
    notes = []
    if cpu.disabled_isa:
        notes.append(
            f"The processor supports {', '.join(cpu.disabled_isa)}, but the operating system or a virtual "
            "machine has turned it off, so programs cannot use it."
        )
    if cpu.hypervisor:
        notes.append("This is a virtual machine: it may hide instructions the real processor has.")
    if cpu.logical_cpus:
        notes.append(f"Logical processors: {cpu.logical_cpus}.")
    return notes


def format_size(n: int | None) -> str:
    if n is None:
        return "unknown size"
    size = float(n)
    for unit in ("bytes", "KB", "MB", "GB", "TB"):
        if size < 1024 or unit == "TB":
            return f"{int(size)} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float | None) -> str:
    """'about 3 min', 'about 40 s', 'estimating…'."""
    if seconds is None:
        return "estimating…"
    s = max(0, round(seconds))
    if s < 60:
        return f"about {s} s"
    if s < 3600:
        return f"about {round(s / 60)} min"
    h, m = divmod(round(s / 60), 60)
    return f"about {h} h {m:02d} min"


def nvidia_usefulness(gpu: NvidiaGpu) -> str:
    """What an NVIDIA card is good for, by compute capability: the core's verdict (the CLI's `probe` says the same)."""
    return nvidia_support(gpu.compute_capability).sentence()


def gpu_lines(report: HardwareReport) -> list[str]:
    """One plain sentence per graphics device, with whether it is useful for running models."""
    lines: list[str] = []
    for g in report.nvidia_gpus:
        mem = f", {format_size(g.memory_total_bytes)}" if g.memory_total_bytes else ""
        lines.append(
            f"{g.name} (NVIDIA, compute capability {g.compute_capability or '?'}, driver {g.driver_version}"
            f"{mem}) — {nvidia_usefulness(g)}"
        )
    for d in report.vulkan_devices:
        lines.append(vulkan_line(d))
    if not lines:
        lines.append("No graphics card usable for running models was found; the processor will do the work.")
    return lines


def vulkan_line(d: VulkanDevice) -> str:
    mem = f", {format_size(d.device_local_memory_bytes)}" if d.device_local_memory_bytes else ""
    verdict = "useful" if d.useful else "not useful"
    if d.note:
        verdict = d.note if d.note.lower().startswith(("useful", "not useful")) else f"{verdict}: {d.note}"
    return f"{d.name} (Vulkan {d.api_version}, {d.device_type}{mem}) — {verdict}"


def report_details(report: HardwareReport) -> str:
    """The technical view behind 'Show details'."""
    lines = []
    cpu = report.cpu
    if cpu is not None:
        lines += [
            f"CPU: {cpu.brand}",
            f"  vendor {cpu.vendor_id}, family {cpu.family}, model {cpu.model}, stepping {cpu.stepping}",
            f"  microarchitecture {cpu.microarchitecture} ({cpu.microarchitecture_label}), {cpu.architecture}",
            f"  usable instruction sets: {' '.join(cpu.isa) or 'none'}",
        ]
        if cpu.disabled_isa:
            lines.append(f"  disabled by the OS: {' '.join(cpu.disabled_isa)}")
        lines.append(f"  source: {cpu.source}")
    if report.os is not None:
        lines.append(f"OS: {report.os.description or report.os.system} {report.os.release} ({report.os.machine})")
    if report.ram_total_bytes:
        lines.append(f"RAM: {format_size(report.ram_total_bytes)}")
    if report.disk_free_bytes is not None:
        lines.append(f"Free disk: {format_size(report.disk_free_bytes)} at {report.disk_path}")
    for d in report.vulkan_devices:
        lines.append(
            f"Vulkan #{d.index}: {d.name} [{d.vendor} {d.vendor_id:#06x}:{d.device_id:#06x}] {d.device_type}, "
            f"API {d.api_version}, driver {d.driver_name} {d.driver_version}"
        )
    for g in report.nvidia_gpus:
        lines.append(
            f"NVIDIA #{g.index}: {g.name}, CC {g.compute_capability}, driver {g.driver_version}, "
            f"CUDA {g.cuda_driver_version or '?'} ({g.source})"
        )
    for e in report.errors:
        hint = f" — {e.hint}" if e.hint else ""
        lines.append(f"Probe {e.probe} ({e.kind}): {e.message}{hint}")
    lines.append(f"Report source: {report.source}, created {report.created_at or '?'}")
    return "\n".join(lines)


BATCH_SIZE_TIP = (
    "Old GPUs on Vulkan (and Kepler cards in general) can crash with LM Studio's default evaluation batch size. "
    "If a model fails to load or crashes, set “Evaluation batch size” in the model's load settings to 384 or "
    "lower, and turn Flash Attention off."
)

RESTART_STEPS = (
    "Fully quit LM Studio — closing the window is not enough: quit it from the system tray (or run "
    "“lms daemon down”), then start it again. LM Studio only looks for new backends when it starts."
)

WHERE_TO_PICK = (
    "To use the new backend, open Mission Control → Runtime (Ctrl+Shift+R), and under Selections → Engines "
    "pick it for GGUF models. Tick “Include older versions” if you do not see it."
)


# --- words for codes (the codes stay in details and JSON) ---------------------------------------------------------

SEVERITY_WORDS = {"error": "Problem", "warning": "Warning", "info": "Note"}


def finding_title(code: str) -> str:
    """A finding's human name, as the doctor's checks register it; unknown codes get a generic sentence."""
    from app.core.lmstudio.doctor import REGISTRY

    for check in REGISTRY:
        for c, title in check.codes:
            if c == code:
                return str(title)
    return "Something LM Studio may stumble over"


def variant_name(variant_id: str) -> str:
    """'Vulkan GPU backend for CPUs with AVX but no AVX2' for 'vulkan-avx1' (from app/data/variants.json)."""
    try:
        return variant_by_id(variant_id).label
    except (KeyError, VariantsDataError):
        return variant_id


# --- progress -------------------------------------------------------------------------------------------------------


def format_rate(bytes_per_s: float | None) -> str:
    if bytes_per_s is None:
        return ""
    return f"{bytes_per_s / 2**20:.1f} MB/s"


def stage_progress_text(snap: Snapshot) -> str:
    """'Stage 1 of 4: download — 12.0 MB of 45.0 MB (26 %), 4.1 MB/s, about 8 s left'."""
    if snap.stage_index < 0:
        return "Starting…"
    head = f"Stage {snap.stage_index + 1} of {snap.stage_count}: {snap.stage}"
    parts = []
    if snap.stage_total > 1:
        pct = int(snap.stage_fraction * 100)
        if snap.in_bytes:
            parts.append(f"{format_size(snap.stage_done)} of {format_size(snap.stage_total)} ({pct} %)")
            if snap.stage_rate:
                parts.append(format_rate(snap.stage_rate))
        else:
            parts.append(f"{snap.stage_done} of {snap.stage_total} steps ({pct} %)")
    if snap.stage_eta_s is not None and snap.stage_fraction < 1:
        parts.append(f"{format_duration(snap.stage_eta_s)} left")
    return head + (" — " + ", ".join(parts) if parts else "")


def overall_progress_text(snap: Snapshot) -> str:
    """'Overall 31 % — about 6 min left' (+ how long nothing has moved, when a stage stalls)."""
    text = f"Overall {snap.percent} %"
    if snap.overall_eta_s is not None:
        text += f" — {format_duration(snap.overall_eta_s)} left"
    if snap.stalled_s >= STALLED_AFTER_S:
        text += (f"; no progress for {format_duration(snap.stalled_s).removeprefix('about ')} "
                 "(a big file may be compiling; the estimate grows while it waits)")
    return text


# --- the current choice, Raspberry Pi Imager style ------------------------------------------------------------------


def choice_line(state: Any) -> str:
    """'Computer: Intel Core i5-3570 (saved report) · Backend: … · Way: Download' — what is chosen so far."""
    parts = []
    report = state.report
    if report is not None and report.cpu is not None:
        name = report.cpu.brand.strip() or "this computer"
        parts.append(f"Computer: {name}" + (" (saved report)" if report.source != "live" else ""))
    label = getattr(state.candidate, "label", "")
    if label and state.branch.value == "install":
        parts.append(f"Backend: {label}")
    if state.method is not None:
        parts.append(f"Way: {METHOD_WORDS.get(state.method.value, state.method.value)}")
    return " · ".join(parts)


METHOD_WORDS = {"patch": "patch an official backend", "download": "download", "build": "build from source"}


# --- no LM Studio, all set, what a build needs ----------------------------------------------------------------------

GET_LMSTUDIO_URL = "https://lmstudio.ai/download"

NO_LMSTUDIO = (
    "LM Studio was not found on this computer. You can still see what this computer needs: Next probes the "
    "hardware and recommends a backend, and the hardware page can export a report to build a backend for this "
    "computer elsewhere. To install a backend here, get LM Studio first, start it once (it downloads its own "
    "runtimes) and run this wizard again."
)

ALL_SET = (
    "You're all set: LM Studio's own backend runs on this computer, so there is nothing to install. "
    "Open LM Studio, download a model and start chatting. Run this wizard again if LM Studio ever stops "
    "listing its backend (the Repair choice on the first page)."
)

# From docs/BENCHMARKS.md and the build notes: the llama.cpp source archive is about 25 MB; source, build
# folder and the packaged backend need well under 1.5 GB (a Vulkan build folder is ~0.2 GB).
BUILD_DOWNLOAD_BYTES = 25 * 2**20
BUILD_DISK_BYTES = 1536 * 2**20


def build_needs(free_disk: int | None, *, offline_source: bool, missing_tools: Sequence[str]) -> str:
    """What building needs, in one paragraph: the internet, disk space and tools."""
    parts = []
    if offline_source:
        parts.append("no internet (a llama.cpp source folder was given)")
    else:
        parts.append(f"the internet, to download llama.cpp's source (about {format_size(BUILD_DOWNLOAD_BYTES)})")
    disk = f"about {format_size(BUILD_DISK_BYTES)} of free disk space"
    if free_disk is not None:
        disk += f" (this computer has {format_size(free_disk)}" + (
            ", not enough)" if free_disk < BUILD_DISK_BYTES else ")")
    parts.append(disk)
    if missing_tools:
        parts.append("these tools, still missing: " + ", ".join(missing_tools))
    else:
        parts.append("a C++ compiler, CMake and Ninja (all found)")
    return "A build needs " + "; ".join(parts) + "."
