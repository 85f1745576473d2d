"""recommend(): the contract of issue #2 on recorded real machines, plus schema validation of the variants data."""

from __future__ import annotations

import copy
import csv
import json
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from app.core.hardware.cpu import PF_AVX_INSTRUCTIONS_AVAILABLE, apply_os_feature_check
from app.core.hardware.probe import report_from_sources
from app.core.hardware.report import HardwareReport, NvidiaGpu
from app.core.isa_flags import cmake_isa_flags, isa_from_cmake_flags
from app.core.lmstudio.backends import BackendInfo, list_backends
from app.core.paths import data_path
from app.core.recommend import (
    NoBuildTemplate,
    Recommendation,
    load_variants,
    nvidia_support,
    pick_build_template,
    recommend,
    validate_variants_json,
    variant_by_id,
)
from tests.conftest import FIXTURES
from tests.lmstudio_homes import make_home

CPUINFO = FIXTURES / "hwdata" / "cpuinfo"
REPORTS = FIXTURES / "reports"


def load(name: str) -> HardwareReport:
    return report_from_sources(str(REPORTS / f"{name}.json"), None)


def ids(rec: Recommendation) -> list[str]:
    return [c.variant for c in rec.candidates]


def test_variants_data_is_valid() -> None:
    data = json.loads(data_path("variants.json").read_text(encoding="utf-8"))
    assert validate_variants_json(data) == []
    assert {v.id for v in load_variants()} == {"cpu-avx1", "vulkan-avx1", "noavx", "cuda"}
    assert variant_by_id("noavx").experimental


def test_schema_rejects_broken_data() -> None:
    data = json.loads(data_path("variants.json").read_text(encoding="utf-8"))
    bad = copy.deepcopy(data)
    bad["variants"][0]["requires"]["cpu_isa"] = ["AVX3"]  # checked through the $ref to requirements.schema.json
    bad["variants"][1]["manifest_ise"] = [""]  # LM Studio rejects [""] (docs/lmstudio-contract.md §11.2)
    del bad["variants"][2]["label"]
    errors = validate_variants_json(bad)
    assert len(errors) == 3, errors


def test_generic_manifest_ise_matches_generic_flags() -> None:
    from app.core.isa_flags import manifest_ise

    for v in load_variants():
        if v.generic_baseline is not None:
            needed = isa_from_cmake_flags(cmake_isa_flags((), generic=v.generic_baseline))
            assert list(v.manifest_ise or ()) == manifest_ise(needed), v.id
            assert not needed & set(v.must_not_need), v.id


def index_rows() -> list[dict[str, str]]:
    with (CPUINFO / "INDEX.tsv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


ROWS = index_rows()
EXPECTED = {"noavx": "noavx", "avx1": "cpu-avx1", "official-avx2": None}


@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_every_real_dump(row: dict[str, str]) -> None:
    report = report_from_sources(None, str(CPUINFO / row["file"]))
    rec = recommend(report)
    assert report.cpu is not None
    if report.cpu.architecture != "x86_64":
        # the Atom N270 is 32-bit: LM Studio ships x86_64 only, so nothing fits, and the summary says why
        assert row["file"] == "atom-bonnell-n270.txt"
        assert rec.recommended is None and not rec.official_supported and rec.candidates == ()
        assert "needs an x86_64 CPU; this one is x86" in rec.summary
        return
    assert rec.recommended == EXPECTED[row["expected_class"]]
    assert rec.official_supported == (row["expected_class"] == "official-avx2")
    assert {r.variant for r in rec.rejected} | set(ids(rec)) == {v.id for v in load_variants()}
    assert all(r.why_not for r in rec.rejected)
    for c in rec.candidates:
        needed = isa_from_cmake_flags(c.cmake_flags)
        assert needed <= set(report.cpu.isa), (c.variant, needed - set(report.cpu.isa))
        assert not needed & set(variant_by_id(c.variant).must_not_need)
    assert report.cpu.brand in rec.summary


def test_contract_avx2_no_gpu() -> None:
    rec = recommend(load("haswell"))
    assert rec.recommended is None and rec.official_supported and rec.candidates == ()
    assert "don't need" in rec.summary
    assert rec.rejection("cpu-avx1") is not None
    assert rec.rejection("cpu-avx1").why_not == (  # type: ignore[union-attr]
        "your CPU has AVX2, so LM Studio's official CPU backend already runs on it")


def test_contract_ivybridge_cpu_avx1() -> None:
    rec = recommend(load("ivybridge"))
    assert rec.recommended == "cpu-avx1" and not rec.official_supported
    c = rec.candidate("cpu-avx1")
    assert c is not None and c.manifest_ise == ("AVX",) and c.gpu_framework == "none"
    assert c.cmake_flags == cmake_isa_flags(["SSE3", "SSSE3", "SSE4.1", "SSE4.2", "AVX", "F16C"])
    assert "-DGGML_F16C=ON" in c.cmake_flags and "-DGGML_BMI2=OFF" in c.cmake_flags
    assert "-DGGML_F16C=OFF" in c.generic_cmake_flags  # the prebuilt AVX1 build must run on Sandy Bridge too
    assert rec.summary.startswith("Your Intel Core i5-3570K (Ivy Bridge, 2012) has AVX")
    assert "but not AVX2" in rec.summary
    assert rec.rejection("vulkan-avx1").why_not == "needs a GPU with a Vulkan driver; none was found"  # type: ignore[union-attr]


def test_sandybridge_and_piledriver_tailoring() -> None:
    sb = recommend(load("sandybridge")).candidate("cpu-avx1")
    assert sb is not None and "-DGGML_F16C=OFF" in sb.cmake_flags
    pd = recommend(load("piledriver")).candidate("cpu-avx1")
    assert pd is not None and "-DGGML_FMA=ON" in pd.cmake_flags and "-DGGML_AVX2=OFF" in pd.cmake_flags
    # The reason names what the flags turn on: a Piledriver build uses FMA and F16C, not "AVX only".
    assert pd.reasons[0].endswith("this build uses SSE4.2, AVX, F16C and FMA"), pd.reasons
    assert sb.reasons[0].endswith("this build uses SSE4.2 and AVX"), sb.reasons


def test_saved_cpuinfo_says_gpus_were_not_probed() -> None:
    from tests.conftest import HWDATA

    rep = report_from_sources(None, str(HWDATA / "cpuinfo" / "ivybridge-i5-3570k.txt"))
    rec = recommend(rep)
    why = rec.rejection("vulkan-avx1").why_not  # type: ignore[union-attr]
    assert "were not probed" in why and "none was found" not in why


def test_contract_no_avx_is_experimental() -> None:
    for name in ("westmere", "core2"):
        rec = recommend(load(name))
        assert rec.recommended == "noavx"
        (c,) = rec.candidates
        assert c.experimental and c.manifest_ise == () and any("Experimental" in w for w in c.warnings)
        assert "(experimental)" in rec.summary
    west = recommend(load("westmere")).candidate("noavx")
    assert west is not None and "-DGGML_SSE42=ON" in west.cmake_flags and "-DGGML_AVX=OFF" in west.cmake_flags
    core2 = recommend(load("core2")).candidate("noavx")
    assert core2 is not None and "-DGGML_SSE42=OFF" in core2.cmake_flags  # Penryn has SSE4.1 only


def test_useful_vulkan_with_avx_cpu_puts_vulkan_first() -> None:
    rec = recommend(load("ivybridge-gtx770"))
    assert rec.recommended == "vulkan-avx1" and ids(rec) == ["vulkan-avx1", "cpu-avx1"]
    c = rec.candidates[0]
    assert c.gpu_framework == "vulkan" and "-DGGML_VULKAN=ON" in c.cmake_flags
    assert c.max_batch_size == 384  # GTX 770 is Kepler: the per-GPU warning is data
    assert any("384" in w and "GTX 770" in w for w in c.warnings)
    assert rec.rejection("cuda") is not None  # no NVIDIA driver recorded for this one


def test_lavapipe_is_not_a_gpu() -> None:
    rec = recommend(load("ivybridge-lavapipe"))
    assert rec.recommended == "cpu-avx1"
    assert "llvmpipe" in rec.rejection("vulkan-avx1").why_not  # type: ignore[union-attr]


def test_kepler_cuda_constraints_spelled_out() -> None:
    rec = recommend(load("ivybridge-kepler"))
    assert rec.recommended == "vulkan-avx1" and ids(rec) == ["vulkan-avx1", "cuda", "cpu-avx1"]
    cuda = rec.candidate("cuda")
    assert cuda is not None and cuda.cuda is not None
    plan = cuda.cuda
    assert (plan.profile, plan.cuda_toolkit_max, plan.driver_branch, plan.architectures) == (
        "kepler", "11.8", "R470", ("35", "37"))
    assert plan.current_driver == "410.104" and plan.driver_min == "450.80.02"
    assert any("too old for CUDA 11.8" in w and "R470" in w for w in cuda.warnings)
    assert "-DCMAKE_CUDA_ARCHITECTURES=35;37" in cuda.cmake_flags and "-DGGML_CUDA=ON" in cuda.cmake_flags
    assert any("CUDA 11" in n for n in cuda.notes)
    assert cuda.manifest_ise == ("AVX",)


def test_kepler_without_vulkan_recommends_cuda() -> None:
    rec = recommend(load("ivybridge-k80"))
    assert rec.recommended == "cuda"


def test_avx2_cpu_with_kepler_gpu() -> None:
    rec = recommend(load("haswell-k80"))
    assert rec.official_supported and rec.recommended == "cuda"
    c = rec.candidate("cuda")
    assert c is not None and "-DGGML_AVX2=ON" in c.cmake_flags and c.manifest_ise == ("AVX2",)
    # a useful Vulkan GPU would be served by the official Vulkan pack: then nothing is needed
    gtx = load("ivybridge-gtx770")
    with_vk = replace(load("haswell-k80"), vulkan_devices=gtx.vulkan_devices)
    rec2 = recommend(with_vk)
    assert rec2.recommended is None and rec2.candidate("cuda") is not None
    assert "Optional" in rec2.summary


@pytest.mark.parametrize(
    ("gpu", "profile", "archs"),
    [
        (NvidiaGpu(0, "NVIDIA GeForce GTX 970", "5.2", "570.124.04"), "cuda12", ("52",)),
        (NvidiaGpu(0, "Tesla P40", "6.1", "551.78"), "cuda12", ("61",)),
        (NvidiaGpu(0, "Tesla K40m", "3.5", "470.256.02"), "kepler", ("35", "37")),
    ],
)
def test_cuda_profiles_by_compute_capability(gpu: NvidiaGpu, profile: str, archs: tuple[str, ...]) -> None:
    rec = recommend(replace(load("ivybridge"), nvidia_gpus=(gpu,)))
    c = rec.candidate("cuda")
    assert c is not None and c.cuda is not None
    assert (c.cuda.profile, c.cuda.architectures) == (profile, archs)
    assert not any("too old" in w for w in c.warnings)


def test_cc30_gets_vulkan_not_cuda_and_modern_gpu_is_official() -> None:
    gtx770 = NvidiaGpu(0, "NVIDIA GeForce GTX 770", "3.0", "470.239.06")
    rec = recommend(replace(load("ivybridge-gtx770"), nvidia_gpus=(gtx770,)))
    assert rec.recommended == "vulkan-avx1" and rec.candidate("cuda") is None
    why = rec.rejection("cuda").why_not  # type: ignore[union-attr]
    assert "compute capability 3.5 to 7.2" in why and "CUDA 10.2 or older" in why and "Vulkan" in why
    h100 = replace(load("haswell"), nvidia_gpus=(NvidiaGpu(0, "NVIDIA H100 80GB HBM3", "9.0", "580.159.04"),))
    rec = recommend(h100)
    assert rec.recommended is None and rec.official_supported and rec.candidate("cuda") is None
    assert rec.rejection("cuda").why_not.endswith("official CUDA packs already support this GPU")  # type: ignore[union-attr]


def test_os_disabled_avx_gets_noavx() -> None:
    """A Sandy Bridge whose OS has AVX off (Windows cross-check, injected) must not get an AVX build."""
    sb = load("sandybridge")
    assert sb.cpu is not None
    cpu = apply_os_feature_check(sb.cpu, lambda f: f != PF_AVX_INSTRUCTIONS_AVAILABLE)
    rec = recommend(replace(sb, cpu=cpu))
    assert rec.recommended == "noavx"
    assert "disabled (BIOS / hypervisor / OS)" in rec.rejection("cpu-avx1").why_not  # type: ignore[union-attr]
    assert "disabled" in rec.summary


def test_no_cpu() -> None:
    rec = recommend(HardwareReport())
    assert rec.recommended is None and not rec.official_supported
    assert rec.summary.startswith("The CPU could not be probed")


def test_to_dict_shape() -> None:
    d = recommend(load("ivybridge-kepler")).to_dict()
    assert set(d) == {"recommended", "official_supported", "summary", "candidates", "rejected"}
    for c in d["candidates"]:
        assert {"variant", "label", "reasons", "warnings", "cmake_flags", "manifest_ise", "gpu_framework",
                "experimental"} <= set(c)
    assert {"variant", "why_not"} <= set(d["rejected"][0])
    json.dumps(d)


def test_real_h100_machine_is_official() -> None:
    """The report our probe made on the lent H100 machine (real NVML): nothing to unlock there."""
    report = report_from_sources(str(FIXTURES / "hwdata" / "device-h100" / "probe-report-h100.json"), None)
    rec = recommend(report)
    assert rec.official_supported and rec.recommended is None and rec.candidates == ()
    assert rec.rejection("cuda").why_not.endswith("official CUDA packs already support this GPU")  # type: ignore[union-attr]


# --- decisions the wizard and the CLI share -----------------------------------------------------------------------


@pytest.mark.parametrize(("cc", "kind", "profile"), [
    ("", "unknown", None), ("3.0", "too-old", None), ("3.5", "unlocked", "kepler"), ("3.7", "unlocked", "kepler"),
    ("5.2", "unlocked", "cuda12"), ("6.1", "unlocked", "cuda12"), ("7.0", "unlocked", "cuda12"),
    ("7.2", "unlocked", "cuda12"), ("7.5", "official", None), ("8.6", "official", None), ("12.0", "official", None),
])
def test_nvidia_support_follows_the_variants_data(cc: str, kind: str, profile: str | None) -> None:
    s = nvidia_support(cc)
    assert (s.kind, s.profile.id if s.profile else None) == (kind, profile)
    assert s.official_min_cc == "7.5"
    sentence = s.sentence()
    assert ("Kepler" in sentence) == (profile == "kepler")
    assert ("CUDA 11" in sentence) == (profile == "kepler") and ("CUDA 12" in sentence) == (profile == "cuda12")


def _backend(tmp_path: Path, name: str, version: str, fw: str, **kw: Any) -> BackendInfo:
    return BackendInfo(folder=tmp_path / f"{name}-{version}", name=name, version=version, platform="linux",
                       gpu_framework=fw, **kw)


def test_pick_build_template_takes_the_newest_official_of_the_framework(tmp_path: Path) -> None:
    found = [
        _backend(tmp_path, "llama.cpp-linux-x86_64-vulkan-avx2", "2.9.0", "vulkan"),
        _backend(tmp_path, "llama.cpp-linux-x86_64-vulkan-avx2", "2.14.0", "vulkan"),
        _backend(tmp_path, "llama.cpp-linux-x86_64-vulkan-avx2", "2.14.0-b4", "vulkan"),
        _backend(tmp_path, "llama.cpp-linux-x86_64-vulkan-avx2", "2.16.0", "vulkan", ours=True),
        replace(_backend(tmp_path, "llama.cpp-win-x86_64-vulkan-avx2", "2.20.0", "Vulkan"), platform="win"),
        _backend(tmp_path, "llama.cpp-linux-x86_64-avx2", "2.22.0", ""),
        _backend(tmp_path, "llama.cpp-linux-x86_64-nvidia-cuda-avx2", "2.22.0", "cuda"),
    ]
    # 2.9.0 < 2.14.0-b4 < 2.14.0 (a string or digit-only sort gets this wrong); ours and other platforms never
    assert pick_build_template(found, "vulkan", "linux").version == "2.14.0"
    assert pick_build_template(found, "vulkan").version == "2.20.0"
    assert pick_build_template(found, "none", "linux").name == "llama.cpp-linux-x86_64-avx2"
    assert pick_build_template(found, "cpu", "linux").name == "llama.cpp-linux-x86_64-avx2"
    assert pick_build_template(found, "CUDA", "linux").gpu_framework == "cuda"
    with pytest.raises(NoBuildTemplate, match="No official vulkan backend"):
        pick_build_template(found, "vulkan", "mac")
    with pytest.raises(NoBuildTemplate, match="No official CPU backend"):
        pick_build_template([], "none", "linux")


def test_pick_build_template_on_a_real_home_folder(tmp_path: Path) -> None:
    home = make_home(tmp_path, backends=("linux-cpu-2.14.0", "linux-vulkan-2.14.0", "linux-cuda-2.14.0"))
    got = pick_build_template(list_backends(home), "vulkan", "linux")
    assert got.gpu_framework.lower() == "vulkan" and got.version == "2.14.0"
    assert got.folder.parent == home / "extensions" / "backends"
