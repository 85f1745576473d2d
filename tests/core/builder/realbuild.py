"""Real llama.cpp builds for the tests, cached in persistent_test_cache() between runs.

Source: the llama-cpp-python 0.3.36 sdist from PyPI (vendors llama.cpp commit 0c1e57098,
docs/llama-build-notes.md §1), fetched with pip on a fresh machine. Every build goes through the product's own
prepare_source / plan_build / run_build, so a second run re-uses the source tree and the build directories (Ninja
has nothing to do).

Run `python -m tests.core.builder.realbuild` to warm the cache outside pytest.
"""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import sys
from pathlib import Path

from app.core.builder.execute import BuildResult, run_build
from app.core.builder.plan import BuildPlan, plan_build
from app.core.builder.prereq import find_tools
from app.core.builder.source import SourceTree, prepare_source
from app.core.hardware.cpu import parse_proc_cpuinfo
from app.core.hardware.report import HardwareReport
from tests.conftest import HWDATA, persistent_test_cache

SDIST_VERSION = "0.3.36"
SDIST_NAME = f"llama_cpp_python-{SDIST_VERSION}.tar.gz"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
LLAMA_COMMIT = "0c1e57098"

# Target CPUs (real /proc/cpuinfo dumps) -> the qemu -cpu model that stands in for them.
CPUS = {
    "haswell": "haswell-i7-4770.txt",
    "ivybridge": "ivybridge-i5-3570k.txt",
    "sandybridge": "sandybridge-i5-2400.txt",
    "nehalem": "nehalem-bloomfield-i7-920.txt",
    "core2": "core2-penryn-yorkfield-q9550.txt",
    "k10": "k10-opteron-6136.txt",
}


def report_for(cpu: str) -> HardwareReport:
    info = parse_proc_cpuinfo((HWDATA / "cpuinfo" / CPUS[cpu]).read_text(), source=f"cpuinfo-file:{CPUS[cpu]}")
    return HardwareReport(source="cpuinfo-file", cpu=info)


def sdist_path() -> Path:
    """The sdist, downloaded with pip once (about 6 s with scikit-build-core installed, 66 s without)."""
    d = persistent_test_cache() / "sdist"
    p = d / SDIST_NAME
    if not p.is_file() or hashlib.sha256(p.read_bytes()).hexdigest() != SDIST_SHA256:
        d.mkdir(parents=True, exist_ok=True)
        subprocess.run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--no-binary",
                ":all:",
                "--no-deps",
                "-d",
                str(d),
                f"llama-cpp-python=={SDIST_VERSION}",
            ],
            check=True,
        )
        got = hashlib.sha256(p.read_bytes()).hexdigest()
        assert got == SDIST_SHA256, f"{SDIST_NAME}: sha256 {got}, expected {SDIST_SHA256}"
    return p


def cache_root() -> Path:
    return persistent_test_cache() / "product-cache"


def build_root() -> Path:
    return persistent_test_cache() / "builds"


def source_tree(features: frozenset[str] = frozenset()) -> SourceTree:
    return prepare_source(
        tag=None, commit=LLAMA_COMMIT, cache_root=cache_root(), source=sdist_path(), features=features
    )


def plan_for(
    cpu: str,
    variant: str,
    *,
    smoke_program: bool = False,
    generic: bool = False,
    extra: dict[str, object] | None = None,
) -> BuildPlan:
    tools = find_tools()
    return plan_build(
        report_for(cpu),
        variant,
        source_tree(),
        build_root=build_root(),
        jobs=2,
        smoke_program=smoke_program,
        generic=generic,
        ninja=tools.ninja,
        ccache=tools.ccache,
        cmake=tools.cmake or "cmake",
        **(extra or {}),
    )


def build(plan: BuildPlan, *, quiet: bool = True) -> BuildResult:
    return run_build(plan, on_line=None if quiet else print)


def template_plan() -> BuildPlan:
    """The stand-in for LM Studio's official AVX2 backend: Haswell flags, ggml libs + libggml + libllama (the
    kept libraries; the smoke test's host program loads this libllama)."""
    return plan_for("haswell", "cpu-avx2", extra={"layout_targets": (("ggml", "ggml"), ("llama", "llama"))})


def host_program(
    target: str = "linux", compiler: tuple[str, ...] = ("gcc",), env: dict[str, str] | None = None
) -> Path:
    """Our smoke host program compiled against this tag's llama.h (cached like the product caches it)."""
    from app.core.builder.hostprog import ensure_host_program, plan_host_program

    root = source_tree().root
    hp = plan_host_program(
        cache_root() / "smoke-host",
        target=target,
        compiler=compiler,
        include_dirs=(root / "include", root / "ggml" / "include"),
        env=env,
    )
    return ensure_host_program(hp)


# variant builds used by the tests: name -> (cpu, variant)
VARIANT_BUILDS = {
    "ivybridge": ("ivybridge", "cpu-avx1"),
    "sandybridge": ("sandybridge", "cpu-avx1"),
    "nehalem": ("nehalem", "noavx"),
    "core2": ("core2", "noavx"),
}


def copy_bin(src_bin: Path, dest: Path) -> None:
    """Copy a build's bin dir (libraries with their symlinks, programs) into `dest`."""
    dest.mkdir(parents=True, exist_ok=True)
    for p in sorted(src_bin.iterdir()):
        if p.is_symlink():
            (dest / p.name).symlink_to(p.readlink())
        elif p.is_file():
            shutil.copy2(p, dest / p.name)


if __name__ == "__main__":
    import time

    t = time.monotonic()
    r = build(template_plan(), quiet=False)
    print(f"template built in {time.monotonic() - t:.1f}s -> {r.bin_dir}")
    for name, (cpu, variant) in VARIANT_BUILDS.items():
        t = time.monotonic()
        r = build(plan_for(cpu, variant))
        print(f"{name}: {time.monotonic() - t:.1f}s -> {r.bin_dir}")


TEMPLATE_NAME = "llama.cpp-linux-x86_64-avx2"
TEMPLATE_VERSION = "1.48.0"


ENGINE_C = """
extern void ggml_init(void);
extern void ggml_backend_cpu_init(void);
extern void llama_model_load_from_file(void);
void *lms_engine_refs[] = {(void *)ggml_init, (void *)ggml_backend_cpu_init, (void *)llama_model_load_from_file};
int lms_engine_version(void) { return 2; }
"""


def _stand_in_lmstudio_binaries(dest: Path) -> None:
    """LM Studio's closed `llm_engine.node` (imports ggml/llama symbols, like the real one) and
    `liblmstudio_bindings.node` (no ggml dependency), as real ELF shared objects compiled here."""
    src = dest.parent / "engine.c"
    src.write_text(ENGINE_C)
    subprocess.run(
        [
            "gcc",
            "-shared",
            "-fPIC",
            "-o",
            str(dest / "llm_engine.node"),
            str(src),
            f"-L{dest}",
            "-lggml-base",
            "-lggml-cpu",
            "-lllama",
            "-Wl,-rpath,$ORIGIN",
        ],
        check=True,
    )
    src.write_text("int lmstudio_bindings_version(void) { return 26; }\n")
    subprocess.run(["gcc", "-shared", "-fPIC", "-o", str(dest / "liblmstudio_bindings.node"), str(src)], check=True)
    src.unlink()


def make_template_folder(dest: Path, bin_dir: Path) -> Path:
    """A folder shaped like LM Studio's official 1.x Linux CPU backend, from our AVX2 build.

    Stand-ins: LM Studio's binding files (real ELF objects compiled here, see _stand_in_lmstudio_binaries); the
    official folder's manifest (the real 1.48.0 one, platform linux, name/ISE of the official
    avx2 original), its real display-data.json with the 1.48.0 release note naming our commit, and our
    libraries in place of LM Studio's binaries (libllama/libggml play the kept binaries that import from the
    swapped ggml-base/ggml-cpu).
    """
    import json

    from tests.conftest import BACKEND_EXAMPLES

    copy_bin(bin_dir, dest)
    _stand_in_lmstudio_binaries(dest)
    m = json.loads((BACKEND_EXAMPLES / "win-x86_64-avx-1.48.0.backend-manifest.json").read_text())
    m["name"], m["platform"] = TEMPLATE_NAME, "linux"
    m["cpu"]["instruction_set_extensions"] = ["AVX2"]
    (dest / "backend-manifest.json").write_text(json.dumps(m, indent=2) + "\n")
    dd = json.loads((BACKEND_EXAMPLES / "win-x86_64-avx-1.48.0.display-data.json").read_text())
    entry = dd[0][1]
    entry["displayName"] = "CPU llama.cpp (Linux)"
    for n in entry["releaseNotes"]:
        if n["version"] == TEMPLATE_VERSION:
            n["releaseNotes"] = f"- llama.cpp commit {LLAMA_COMMIT}\n"
    (dest / "display-data.json").write_text(json.dumps(dd, indent=2) + "\n")
    return dest


def vulkan_plan() -> BuildPlan:
    """Vulkan + Ivy Bridge CPU flags, with llama-simple (its libggml registers the Vulkan backend)."""
    tools = find_tools()
    return plan_build(
        report_for("ivybridge"),
        "vulkan-avx1",
        source_tree(frozenset({"vulkan"})),
        build_root=build_root(),
        jobs=2,
        smoke_program=True,
        ninja=tools.ninja,
        ccache=tools.ccache,
        cmake=tools.cmake or "cmake",
    )


def server_plan() -> BuildPlan:
    """Ivy Bridge cpu-avx1 with the server stack (llama-server; llama-bench shares this build dir)."""
    plan = plan_for("ivybridge", "cpu-avx1", smoke_program=True, extra={"replace_server": True})
    return plan
