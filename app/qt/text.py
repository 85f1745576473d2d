"""User-facing text built by pure functions (no Qt), so it can be unit-tested and linted."""

from __future__ import annotations

from app.core.hardware.report import CpuInfo, HardwareReport, NvidiaGpu, VulkanDevice
from app.core.recommend import nvidia_support

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
