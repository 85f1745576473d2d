"""CPU probe on every recorded real /proc/cpuinfo dump (tests/fixtures/hwdata/cpuinfo, expectations from INDEX.tsv)."""

from __future__ import annotations

import csv
import re
from pathlib import Path

import pytest

from app.core.hardware.cpu import (
    PF_AVX2_INSTRUCTIONS_AVAILABLE,
    PF_AVX512F_INSTRUCTIONS_AVAILABLE,
    PF_AVX_INSTRUCTIONS_AVAILABLE,
    CpuinfoFormatError,
    apply_os_feature_check,
    clean_brand,
    cpu_from_pycpuinfo,
    identify_microarchitecture,
    parse_proc_cpuinfo,
    probe_cpu_live,
    windows_knows_avx_features,
)
from tests.conftest import FIXTURES

CPUINFO = FIXTURES / "hwdata" / "cpuinfo"


def index_rows() -> list[dict[str, str]]:
    with (CPUINFO / "INDEX.tsv").open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh, delimiter="\t"))


ROWS = index_rows()

# The microarchitecture our data table must name for each dump (INDEX.tsv gives a label in prose).
EXPECTED_UARCH = {
    "arrowlake-core-ultra-9-285.txt": "arrowlake",
    "atom-bonnell-n270.txt": "bonnell",
    "atom-goldmont-celeron-j3455.txt": "goldmont",
    "atom-silvermont-celeron-j1900.txt": "silvermont",
    "bobcat-e-350.txt": "bobcat",
    "broadwell-i5-5200u.txt": "broadwell",
    "bulldozer-fx-8120.txt": "bulldozer",
    "coffeelake-i7-8700k.txt": "coffeelake",
    "core2-merom-conroe-e6400.txt": "core2",
    "core2-penryn-yorkfield-q9550.txt": "penryn",
    "excavator-stoney-a9-9420.txt": "excavator",
    "haswell-i7-4770.txt": "haswell",
    "ivybridge-i5-3570k.txt": "ivybridge",
    "jaguar-kabini-athlon-5150.txt": "jaguar",
    "k10-opteron-6136.txt": "k10",
    "nehalem-bloomfield-i7-920.txt": "nehalem",
    "piledriver-fx-8350.txt": "piledriver",
    "sandybridge-i5-2400.txt": "sandybridge",
    "sandybridge-pentium-g640.txt": "sandybridge",
    "skylake-x-i7-7800x.txt": "skylake_avx512",
    "steamroller-kaveri-a10-7850k.txt": "steamroller",
    "tremont-celeron-n5100.txt": "tremont",
    "westmere-arrandale-i5-m560.txt": "westmere",
    "zen1-epyc-7451.txt": "zen",
    "zen2-ryzen-7-3700x.txt": "zen2",
    "zen4-epyc-9654.txt": "zen4",
}


def test_index_covers_every_dump_and_ten_generations() -> None:
    files = {p.name for p in CPUINFO.glob("*.txt")}
    assert files == {r["file"] for r in ROWS} == set(EXPECTED_UARCH)
    assert len(set(EXPECTED_UARCH.values())) >= 10


@pytest.mark.parametrize("row", ROWS, ids=[r["file"] for r in ROWS])
def test_real_dump(row: dict[str, str]) -> None:
    cpu = parse_proc_cpuinfo((CPUINFO / row["file"]).read_text(encoding="utf-8"))
    assert cpu.vendor == row["vendor"]
    fam, model = map(int, re.search(r"\[fam (\d+) model (\d+)\]", row["microarchitecture"]).groups())  # type: ignore[union-attr]
    assert (cpu.family, cpu.model) == (fam, model)
    assert cpu.microarchitecture == EXPECTED_UARCH[row["file"]]
    assert cpu.microarchitecture_label != "unknown" and cpu.year is not None
    for column, isa in [("has_avx", "AVX"), ("has_avx2", "AVX2"), ("has_f16c", "F16C"), ("has_fma3", "FMA"),
                        ("has_avx512f", "AVX512F")]:
        assert (isa in cpu.isa) == (row[column] == "1"), f"{isa} in {row['file']}"
    assert cpu.brand and "(R)" not in cpu.brand and "@" not in cpu.brand
    assert cpu.disabled_isa == ()


def test_traps_from_the_index_readme() -> None:
    """Bulldozer: AVX + FMA4 but no FMA3/F16C; Jaguar: AVX + F16C, no FMA3; Pentium G640: AVX fused off."""
    def isa(name: str) -> tuple[str, ...]:
        return parse_proc_cpuinfo((CPUINFO / name).read_text(encoding="utf-8")).isa

    bd = isa("bulldozer-fx-8120.txt")
    assert "AVX" in bd and "FMA" not in bd and "F16C" not in bd
    jg = isa("jaguar-kabini-athlon-5150.txt")
    assert "F16C" in jg and "FMA" not in jg
    assert "AVX" not in isa("sandybridge-pentium-g640.txt")
    assert "SSE4.2" not in isa("k10-opteron-6136.txt") and "SSE4.2" not in isa("core2-penryn-yorkfield-q9550.txt")


def test_32bit_atom_is_reported_as_x86() -> None:
    cpu = parse_proc_cpuinfo((CPUINFO / "atom-bonnell-n270.txt").read_text(encoding="utf-8"))
    assert cpu.architecture == "x86"
    cpu = parse_proc_cpuinfo((CPUINFO / "ivybridge-i5-3570k.txt").read_text(encoding="utf-8"))
    assert cpu.architecture == "x86_64"
    assert cpu.brand == "Intel Core i5-3570K"


def test_unknown_model_is_unknown_not_guessed() -> None:
    assert identify_microarchitecture("Intel", 6, 250, 0).id == "unknown"
    assert identify_microarchitecture("VIA", 6, 15, 0).id == "unknown"
    assert identify_microarchitecture("Intel", None, None, None).id == "unknown"
    # a real model number with a different stepping still names the family
    assert identify_microarchitecture("Intel", 6, 85, 7).id == "cascadelake"


def test_hypervisor_flag() -> None:
    text = (CPUINFO / "ivybridge-i5-3570k.txt").read_text(encoding="utf-8").replace(" avx ", " avx hypervisor ")
    assert parse_proc_cpuinfo(text).hypervisor
    assert not parse_proc_cpuinfo((CPUINFO / "ivybridge-i5-3570k.txt").read_text(encoding="utf-8")).hypervisor


def test_clean_brand() -> None:
    assert clean_brand("AMD FX(tm)-8350 Eight-Core Processor") == "AMD FX-8350"
    assert clean_brand("Intel(R) Core(TM)2 Quad CPU    Q9550  @ 2.83GHz") == "Intel Core 2 Quad Q9550"


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda t: "", "empty"),
        (lambda t: t.split("flags")[0], "truncated"),
        (lambda t: t[: t.index(" avx ") + 3], "truncated"),
        (lambda t: "hello world\nthis is a text file\n", "does not look like /proc/cpuinfo"),
        (lambda t: t.replace("\n", "\x00", 3), "binary"),
    ],
    ids=["empty", "cut-before-flags", "cut-inside-flags", "not-cpuinfo", "nul-bytes"],
)
def test_bad_cpuinfo_text(mangle, message: str) -> None:  # type: ignore[no-untyped-def]
    text = (CPUINFO / "ivybridge-i5-3570k.txt").read_text(encoding="utf-8")
    with pytest.raises(CpuinfoFormatError, match=message):
        parse_proc_cpuinfo(mangle(text))


def test_windows_cross_check_moves_os_disabled_avx_to_disabled_isa() -> None:
    """Stands in for Windows (IsProcessorFeaturePresent injected): CPUID says AVX, the OS has it off."""
    cpuid = parse_proc_cpuinfo((CPUINFO / "haswell-i7-4770.txt").read_text(encoding="utf-8"))
    off = {PF_AVX_INSTRUCTIONS_AVAILABLE, PF_AVX2_INSTRUCTIONS_AVAILABLE, PF_AVX512F_INSTRUCTIONS_AVAILABLE}
    checked = apply_os_feature_check(cpuid, lambda f: f not in off)
    assert set(checked.disabled_isa) == {"AVX", "F16C", "FMA", "AVX2"}
    assert "AVX" not in checked.isa and "SSE4.2" in checked.isa and "BMI2" in checked.isa
    # only AVX2 off (e.g. a hypervisor masking it): AVX stays usable
    partial = apply_os_feature_check(cpuid, lambda f: f != PF_AVX2_INSTRUCTIONS_AVAILABLE)
    assert partial.disabled_isa == ("AVX2",) and "AVX" in partial.isa
    # everything present: nothing changes
    assert apply_os_feature_check(cpuid, lambda f: True) == cpuid


def test_os_feature_check_only_on_windows() -> None:
    from app.core.hardware.cpu import windows_is_processor_feature_present

    assert windows_is_processor_feature_present() is None  # Linux: /proc/cpuinfo already reflects the OS


def test_windows_versions_that_know_the_avx_feature_ids() -> None:
    assert windows_knows_avx_features("10", "10.0.19045")
    assert windows_knows_avx_features("11", "10.0.22631")
    assert not windows_knows_avx_features("7", "6.1.7601")
    assert not windows_knows_avx_features("", "")


def test_pycpuinfo_shape() -> None:
    """cpu_from_pycpuinfo on the dict layout py-cpuinfo 9 returns (values from the real Ivy Bridge dump)."""
    ref = parse_proc_cpuinfo((CPUINFO / "ivybridge-i5-3570k.txt").read_text(encoding="utf-8"))
    info = {"arch": "X86_64", "vendor_id_raw": "GenuineIntel", "brand_raw": "Intel(R) Core(TM) i5-3570K CPU @ 3.40GHz",
            "family": 6, "model": 58, "stepping": 9, "count": 4, "flags": [*list(ref.flags), "osxsave"]}
    cpu = cpu_from_pycpuinfo(info)
    assert (cpu.microarchitecture, cpu.isa, cpu.architecture, cpu.brand) == (
        "ivybridge", ref.isa, "x86_64", "Intel Core i5-3570K")


def test_live_cpu_matches_pycpuinfo(tmp_path: Path) -> None:
    """Without /proc/cpuinfo (Windows, macOS) the probe falls back to the real py-cpuinfo CPUID path; both agree
    on this machine's AVX-family ISA."""
    live = probe_cpu_live()
    assert live.source == "proc-cpuinfo" and live.logical_cpus
    slow = probe_cpu_live(tmp_path / "no-proc-cpuinfo")
    assert slow.source == "py-cpuinfo"
    core = {"SSE4.2", "AVX", "F16C", "FMA", "AVX2", "AVX512F"}
    assert set(live.isa) & core == set(slow.isa) & core
    assert (live.family, live.model, live.microarchitecture) == (slow.family, slow.model, slow.microarchitecture)


def test_live_probe_reads_given_path(tmp_path: Path) -> None:
    fake_proc = tmp_path / "cpuinfo"
    fake_proc.write_bytes((CPUINFO / "westmere-arrandale-i5-m560.txt").read_bytes())
    assert probe_cpu_live(fake_proc).microarchitecture == "westmere"
