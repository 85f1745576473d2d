"""Issue #8 evidence: what bench/gpu_device.sh captured on the lent NVIDIA H100 machine, checked again here.

The fixtures in tests/fixtures/hwdata/gpu/device-h100-2026-11-25/ were written by that script in one call on the
device (nvidia-smi outputs, our probe's HardwareReport, the `build` CLI's JSON, the smoke logs). These tests make
sure the code paths that produced them still agree with the driver's own view and with the plan the device ran:
no GPU is needed here, the recorded outputs stand in for it.
"""

from __future__ import annotations

import json
from pathlib import Path

from app.core.builder.plan import plan_build
from app.core.builder.smoke import device_patterns
from app.core.builder.source import SourceTree
from app.core.hardware.nvidia import SMI_QUERY_FIELDS, parse_smi_csv, parse_smi_q, parse_smi_table
from app.core.hardware.report import HardwareReport
from app.core.hardware.vulkan import decode_driver_version, nvidia_driver_text

D = Path(__file__).resolve().parents[1] / "fixtures" / "hwdata" / "gpu" / "device-h100-2026-11-25"


def _report() -> HardwareReport:
    return HardwareReport.from_json((D / "probe.json").read_text())


def test_nvml_probe_agrees_with_nvidia_smi_outputs() -> None:
    nvml = _report().nvidia_gpus
    assert len(nvml) == 1 and nvml[0].source == "nvml"
    g = nvml[0]
    assert (g.name, g.compute_capability, g.driver_version) == ("NVIDIA H100 80GB HBM3", "9.0", "580.159.04")
    assert g.cuda_driver_version == "13.0"
    (csv,) = parse_smi_csv((D / "nvidia-smi-query.csv").read_text(), SMI_QUERY_FIELDS)
    assert (csv.name, csv.compute_capability, csv.driver_version, csv.memory_total_bytes) == (
        g.name, g.compute_capability, g.driver_version, g.memory_total_bytes)
    (q,) = parse_smi_q((D / "nvidia-smi-q.txt").read_text())
    assert (q.name, q.driver_version, q.cuda_driver_version) == (g.name, g.driver_version, "13.0")
    (t,) = parse_smi_table((D / "nvidia-smi.txt").read_text())
    assert t.driver_version == g.driver_version and "H100" in t.name


def test_vulkan_probe_saw_the_gpu_as_discrete_with_decoded_driver() -> None:
    r = _report()
    (dev,) = [d for d in r.vulkan_devices if d.vendor_id == 0x10DE]
    assert dev.device_type == "discrete" and dev.useful and not dev.software
    # NVIDIA packs the version as 10/8/8/6 bits; re-decode the raw value the device reported.
    assert decode_driver_version(dev.driver_version_raw, dev.vendor_id) == dev.driver_version == "580.159.4.0"
    assert nvidia_driver_text(dev.driver_version) == r.nvidia_gpus[0].driver_version
    assert dev.device_local_memory_bytes == r.nvidia_gpus[0].memory_total_bytes
    assert not r.errors


def test_plan_from_the_recorded_report_is_the_plan_the_device_built() -> None:
    built = json.loads((D / "build-cuda.json").read_text())["plan"]
    r = _report()
    # The device's tool paths, so the argv can be compared exactly.
    plan = plan_build(r, "cuda-avx1", SourceTree(Path("/src"), None, "0c1e57098", "dir"), jobs=16,
                      build_root=Path("/b"), smoke_program=True, nvcc="/usr/local/cuda/bin/nvcc", cuda_version=(13, 0),
                      cmake="/opt/torch/.venv/bin/cmake", ninja="/opt/torch/.venv/bin/ninja")
    assert plan.cuda_architectures == "90" and plan.gpu_targets == ("9.0",)
    defines = [a for a in plan.configure.argv if a.startswith("-D")]
    ran = [a for a in built["configure"] if a.startswith("-D")]
    # Added to the plan after the device run (needed for full builds of that tag; changes no CUDA/ISA option).
    later = {"-DLLAMA_BUILD_APP=OFF"}
    assert [a for a in defines if a not in later] == ran
    assert list(plan.targets) == built["targets"]
    manifest = json.loads((D / "cuda-manifest.json").read_text())
    assert manifest["gpu"]["targets"] == ["9.0"] and manifest["cpu"]["instruction_set_extensions"] == ["AVX"]
    assert manifest["name"] == "llama.cpp-linux-x86_64-nvidia-cuda-avx1-unlocked"


def test_smoke_logs_prove_gpu_offload_and_catch_cpu_fallback() -> None:
    import re

    pats = device_patterns("cuda")
    cli = json.loads((D / "build-cuda.json").read_text())
    assert cli["ok"] is True and cli["smoke"]["ok"] is True and cli["smoke"]["tokens"] == 16
    good = cli["smoke"]["device_lines"]
    assert all(any(re.search(p, ln) for ln in good) for p in pats)
    assert any("offloaded 3/3 layers to GPU" in ln for ln in good)
    assert "libggml-cuda.so.0.0.0" in cli["replaced"]
    # The tail of the GPU run's own log shows its compute buffer on the GPU.
    assert any("CUDA0 compute buffer size" in ln for ln in (D / "smoke-cuda.log").read_text().splitlines())
    neg = json.loads((D / "negative-smoke.json").read_text())
    assert neg["ok"] is False and "did not load" in neg["reason"]
    assert not any(re.search(pats[0], ln) for ln in neg["log_tail"])
    summary = json.loads((D / "summary.json").read_text())
    assert summary["smoke_ok"] is True and summary["cli_build_rc"] == 0
    assert summary["speed_gpu_bench"]["median"] > summary["speed_cpu_bench"]["median"]
