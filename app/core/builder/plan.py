"""Pure build planning: the exact CMake configure/build command lines, environment and directories.

`plan_build(report, variant, source, ...)` decides everything before anything runs (docs/llama-build-notes.md §2):
CMake + Ninja, Release, ``GGML_NATIVE=OFF`` with every ggml ISA option explicitly ON/OFF (tailored to the
target CPU, or a variant's generic baseline), shared libraries, no curl/openssl/tests/prebuilt UI, the build
commit/number from the tag, only the targets the backend ships (a CPU variant: ggml-base + ggml-cpu, plus what
the template's layout needs, e.g. ``ggml_llamacpp.dll`` on 1.x Windows; the smoke test compiles its own small
host program instead of building llama.cpp's), ``$ORIGIN`` run paths, ccache when present, and for GPU
variants Vulkan or CUDA with an arch list from the probed compute capabilities. Windows backends are
cross-compiled on Linux with zig (``CMAKE_SYSTEM_PROCESSOR=x86_64``, else ggml silently builds its SIMD-free
generic CPU backend), C/C++ runtime static, OpenMP off (docs/build-anywhere.md).
"""

from __future__ import annotations

import hashlib
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

from app.core.builder.source import SourceTree
from app.core.builder.toolchain import ToolchainChoice
from app.core.errors import UsageError
from app.core.hardware.report import HardwareReport
from app.core.isa_flags import cmake_isa_flags, cmake_option_states, isa_from_cmake_flags, manifest_ise, sort_isa
from app.core.runner import ProcessPlan

FRAMEWORKS = ("cpu", "vulkan", "cuda")
VARIANT_TAGS = ("kepler",)  # extra variant tokens with a meaning (naming, notes)
# ISA a variant token forbids, whatever the CPU has (a tailored build never exceeds its variant).
_AVX2_AND_UP = frozenset(
    {
        "AVX2",
        "AVX512F",
        "AVX512CD",
        "AVX512DQ",
        "AVX512BW",
        "AVX512VL",
        "AVX512_VBMI",
        "AVX512_VNNI",
        "AVX512_BF16",
        "AVX_VNNI",
        "AMX_TILE",
        "AMX_INT8",
        "AMX_BF16",
    }
)
_VARIANT_CAPS: dict[str, frozenset[str]] = {
    "avx2": frozenset(),
    "avx1": _AVX2_AND_UP,
    "avx": _AVX2_AND_UP,
    "noavx": _AVX2_AND_UP | {"AVX", "F16C", "FMA", "BMI1", "BMI2"},
}
# Libraries swapped into the template per framework (docs/lmstudio-contract.md §9.1); CMake target names.
SWAP_TARGETS: dict[str, tuple[str, ...]] = {
    "cpu": ("ggml-base", "ggml-cpu"),
    "vulkan": ("ggml-base", "ggml-cpu", "ggml-vulkan"),
    "cuda": ("ggml-base", "ggml-cpu", "ggml-cuda", "ggml", "llama"),
}
SERVER_TARGETS: tuple[str, ...] = ("llama-server",)
SMOKE_TARGETS: tuple[str, ...] = ("llama-simple",)  # only on request (benchmarks); the smoke test has its own
# Resource included right after llama.cpp's project(): renames target outputs (e.g. ggml -> ggml_llamacpp).
PROJECT_INCLUDE = ("cmake", "lms-unlocked-project-include.cmake")
# Force-included header of zig Windows builds: keeps the C runtime's atexit out of every DLL's exports.
ZIG_WINDOWS_HEADER = ("cmake", "zig-windows-exports.h")
KEPLER_MAX_CUDA = (11, 8)  # CUDA 12.0 removed sm_35/sm_37

_M_FLAGS: dict[str, tuple[str, ...]] = {
    "GGML_SSE42": ("-msse4.2",),
    "GGML_F16C": ("-mf16c",),
    "GGML_FMA": ("-mfma",),
    "GGML_BMI2": ("-mbmi2",),
    "GGML_AVX": ("-mavx",),
    "GGML_AVX2": ("-mavx2",),
    "GGML_AVX_VNNI": ("-mavxvnni",),
    "GGML_AVX512": ("-mavx512f", "-mavx512cd", "-mavx512vl", "-mavx512dq", "-mavx512bw"),
    "GGML_AVX512_VBMI": ("-mavx512vbmi",),
    "GGML_AVX512_VNNI": ("-mavx512vnni",),
    "GGML_AVX512_BF16": ("-mavx512bf16",),
    "GGML_AMX_TILE": ("-mamx-tile",),
    "GGML_AMX_INT8": ("-mamx-int8",),
    "GGML_AMX_BF16": ("-mamx-bf16",),
}


class PlanError(UsageError):
    code = "build-plan"


@dataclass(frozen=True)
class Variant:
    framework: str  # cpu | vulkan | cuda
    ise: str  # avx2 | avx1 | noavx
    tags: tuple[str, ...]  # e.g. ("kepler",)
    text: str


def parse_variant(variant: str) -> Variant:
    """ "cpu-avx1" / "vulkan-avx1" / "noavx" / "cuda-avx1-kepler" / "cuda" -> Variant."""
    parts = [p for p in variant.lower().split("-") if p]
    framework = parts.pop(0) if parts and parts[0] in FRAMEWORKS else "cpu"
    ise = "avx2"
    tags: list[str] = []
    bad = False
    for p in parts:
        if p in _VARIANT_CAPS:
            ise = "avx1" if p == "avx" else p
        elif p in VARIANT_TAGS:
            tags.append(p)
        else:
            bad = True
    if bad or not variant.strip() or (framework == "cpu" and not parts):
        raise PlanError(
            f"Unknown build variant {variant!r}.",
            hint="Use cpu-avx1, noavx, vulkan-avx1, vulkan-noavx, cuda-avx1 or cuda-avx2 (add -kepler for CC<5.0).",
        )
    return Variant(framework, ise, tuple(tags), variant)


@dataclass(frozen=True)
class BuildPlan:
    variant: str
    framework: str
    source_dir: str
    build_dir: str
    bin_dir: str
    log_path: str
    configure: ProcessPlan
    build: ProcessPlan
    targets: tuple[str, ...]
    swap_targets: tuple[str, ...]  # libraries that replace the template's
    cmake_defines: tuple[str, ...]
    isa: tuple[str, ...]  # canonical ISA the built CPU code needs
    manifest_ise: tuple[str, ...]
    expected_cpu_flags: tuple[str, ...]  # -m flags the configure line must list, in no particular order
    expected_cpu_defines: tuple[str, ...]
    gpu_targets: tuple[str, ...] = ()  # manifest gpu.targets ("3.5", "3.7")
    cuda_architectures: str = ""  # "35;37"
    patch_features: frozenset[str] = field(default_factory=frozenset)
    generic: bool = False
    tag: str | None = None
    commit: str | None = None
    notes: tuple[str, ...] = ()
    target_os: str = "linux"  # "linux" | "win" | "mac": the OS the backend is for
    output_names: tuple[tuple[str, str], ...] = ()  # (CMake target, output base name) where renamed
    toolchain: ToolchainChoice | None = None
    wrappers_dir: str | None = None  # zig compiler wrapper scripts (written by the runner)

    def output_name(self, target: str) -> str:
        return dict(self.output_names).get(target, target)


def cuda_arch(cc: str) -> str:
    """ "3.7" -> "37", "8.6" -> "86", "12.0" -> "120"."""
    m = re.fullmatch(r"(\d+)\.(\d+)", cc.strip())
    if not m:
        raise PlanError(f"Not a CUDA compute capability: {cc!r}", hint="Expected MAJOR.MINOR such as 6.1.")
    return f"{int(m.group(1))}{int(m.group(2))}"


def cuda_targets(report: HardwareReport, extra: tuple[str, ...] = ()) -> tuple[str, ...]:
    """Sorted unique compute capabilities of the report's NVIDIA GPUs (plus `extra`), e.g. ("3.5", "3.7")."""
    ccs = {g.compute_capability for g in report.nvidia_gpus if g.compute_capability} | set(extra)
    return tuple(sorted(ccs, key=lambda c: tuple(int(x) for x in c.split("."))))


def target_isa(report: HardwareReport | None, variant: Variant, *, generic: bool) -> tuple[str, ...]:
    """The canonical ISA the build may use: the CPU's, capped by the variant (or the variant's generic set)."""
    if generic:
        key = "noavx" if variant.ise == "noavx" else ("cpu-avx1" if variant.ise == "avx1" else "haswell")
        flags = cmake_isa_flags([], generic=key)
        return sort_isa(isa_from_cmake_flags(flags))
    if report is None or report.cpu is None:
        raise PlanError(
            "The hardware report has no CPU information to tailor the build to.",
            hint="Use --generic, or give --report/--cpuinfo of the target machine.",
        )
    have = set(report.cpu.isa)
    if report.cpu.architecture not in ("x86_64", "amd64", "AMD64"):
        raise PlanError(f"Building for {report.cpu.architecture} CPUs is not supported.", hint="x86-64 only.")
    if variant.ise in ("avx1", "avx2") and "AVX" not in have:
        raise PlanError(
            f"Variant {variant.text} needs AVX, but the target CPU ({report.cpu.brand or 'unknown'}) has none.",
            hint="Use the noavx variant for this CPU.",
        )
    if variant.ise == "avx2" and "AVX2" not in have:
        raise PlanError(f"Variant {variant.text} needs AVX2, which the target CPU lacks.", hint="Use an -avx1 variant.")
    return sort_isa(have - _VARIANT_CAPS[variant.ise])


def _key(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:10]


def plan_build(
    report: HardwareReport | None,
    variant: str,
    source: SourceTree,
    *,
    generic: bool = False,
    jobs: int | None = None,
    build_root: Path,
    log_dir: Path | None = None,
    replace_server: bool = False,
    smoke_program: bool = False,
    extra_cuda_targets: tuple[str, ...] = (),
    cmake: str = "cmake",
    ninja: str | None = "ninja",
    ccache: str | None = None,
    nvcc: str | None = None,
    cuda_version: tuple[int, int] | None = None,
    platform: str = sys.platform,
    target_os: str | None = None,
    toolchain: ToolchainChoice | None = None,
    layout_targets: tuple[tuple[str, str], ...] = (),
    project_include: str | None = None,
    zig_windows_header: str | None = None,
) -> BuildPlan:
    """Everything about one build, decided up front (no file system access, no processes).

    Args:
        replace_server: also build llama-server (2.x templates whose server must be replaced).
        smoke_program: also build llama.cpp's llama-simple (benchmarks only: the smoke test compiles its own
            host program against the folder's libraries, so a backend build never needs it).
        ninja/ccache/nvcc: resolved tool paths (None: not available); see prereq.find_tools().
        cuda_version: the nvcc toolkit version, checked against the GPUs' compute capabilities.
        target_os: the OS the backend is for ("linux", "win", "mac"; default: this one).
        toolchain: the chosen toolchain (toolchain.choose_toolchain); its compilers go into the configure line.
        layout_targets: extra (CMake target, output name) pairs the template's layout needs replaced, e.g.
            ("ggml", "ggml_llamacpp") for a 1.x Windows template that ships ggml_llamacpp.dll.
        project_include: path of resources/cmake/lms-unlocked-project-include.cmake (needed for renames).
        zig_windows_header: path of resources/cmake/zig-windows-exports.h (needed for zig Windows builds).
    """
    host = {"win32": "win", "darwin": "mac"}.get(platform, "linux")
    tos = target_os or host
    v = parse_variant(variant)
    isa = target_isa(report, v, generic=generic)
    isa_flags = cmake_isa_flags(isa)
    states = cmake_option_states(isa)
    expected_flags = tuple(f for opt, on in states.items() if on for f in _M_FLAGS[opt])
    expected_defines = tuple(opt for opt, on in states.items() if on)
    notes: list[str] = []
    defines: list[str] = [
        "-DCMAKE_BUILD_TYPE=Release",
        *isa_flags,
        "-DBUILD_SHARED_LIBS=ON",
        "-DLLAMA_CURL=OFF",
        "-DLLAMA_OPENSSL=OFF",
        "-DLLAMA_BUILD_TESTS=OFF",
        f"-DLLAMA_BUILD_EXAMPLES={'ON' if smoke_program else 'OFF'}",
        f"-DLLAMA_BUILD_SERVER={'ON' if replace_server else 'OFF'}",
        f"-DLLAMA_BUILD_TOOLS={'ON' if replace_server else 'OFF'}",
        "-DLLAMA_USE_PREBUILT_UI=OFF",
        # The unified `llama` binary links every tool library; with tools off, `all` would fail to build it.
        "-DLLAMA_BUILD_APP=OFF",
        f"-DGGML_CCACHE={'ON' if ccache else 'OFF'}",
    ]
    if source.commit:
        defines.append(f"-DLLAMA_BUILD_COMMIT={source.commit[:9]}")
    if source.build_number is not None:
        defines.append(f"-DLLAMA_BUILD_NUMBER={source.build_number}")
    if tos == "linux":
        # Binaries find their libraries next to themselves, in the build tree and in the backend folder.
        defines += ["-DCMAKE_BUILD_WITH_INSTALL_RPATH=ON", "-DCMAKE_INSTALL_RPATH=$ORIGIN"]
    wrappers_dir: str | None = None
    env: dict[str, str] = {}
    if toolchain is not None and toolchain.zig:
        wrappers_dir = str(build_root / "zig-wrappers" / _key(toolchain.zig, *toolchain.cc))
        # zig compiles its C runtimes once into this cache (minutes the first time), next to the builds.
        env = {
            "ZIG_GLOBAL_CACHE_DIR": str(build_root / "zig-cache"),
            "ZIG_LOCAL_CACHE_DIR": str(build_root / "zig-cache"),
        }
        w = Path(wrappers_dir)
        suffix = ".cmd" if platform == "win32" else ""
        defines += [
            f"-DCMAKE_C_COMPILER={w / ('zig-cc' + suffix)}",
            f"-DCMAKE_CXX_COMPILER={w / ('zig-c++' + suffix)}",
            f"-DCMAKE_AR={w / ('zig-ar' + suffix)}",
            f"-DCMAKE_RANLIB={w / ('zig-ranlib' + suffix)}",
        ]
        if tos == "win":
            if not zig_windows_header:
                raise PlanError("A zig Windows build needs the exports header resource.", hint="Reinstall the app.")
            defines += [
                f"-DCMAKE_RC_COMPILER={w / ('zig-rc' + suffix)}",
                f"-DCMAKE_C_FLAGS=-include {zig_windows_header}",
                f"-DCMAKE_CXX_FLAGS=-include {zig_windows_header}",
            ]
    if tos == "win" and host != "win":
        # CMAKE_SYSTEM_PROCESSOR: without it ggml builds its generic, SIMD-free CPU backend (GGML_CPU_GENERIC).
        defines += ["-DCMAKE_SYSTEM_NAME=Windows", "-DCMAKE_SYSTEM_PROCESSOR=x86_64"]
    if tos == "win":
        # No OpenMP runtime DLL to ship (ggml's own thread pool is used); zig links libc++/libunwind statically,
        # so the DLLs need no libstdc++-6.dll / libgcc_s_seh-1.dll / libwinpthread-1.dll.
        defines.append("-DGGML_OPENMP=OFF")
    # On Windows every layout target goes through the include, which also drops MinGW's "lib" prefix.
    renames = tuple((t, n) for t, n in layout_targets if t != n or tos == "win")
    if renames:
        if not project_include:
            raise PlanError("Renaming build outputs needs the project-include resource.", hint="Reinstall the app.")
        defines.append(f"-DCMAKE_PROJECT_INCLUDE={project_include}")
        defines += [f"-DLMS_UNLOCKED_OUTPUT_NAME_{t.replace('-', '_')}={n}" for t, n in renames]
    gpu_targets: tuple[str, ...] = ()
    archs = ""
    features: set[str] = set()
    if v.framework == "vulkan":
        defines.append("-DGGML_VULKAN=ON")
        features.add("vulkan")
    elif v.framework == "cuda":
        gpu_targets = cuda_targets(report, extra_cuda_targets) if report else tuple(extra_cuda_targets)
        if not gpu_targets:
            raise PlanError(
                "A CUDA build needs the target GPUs' compute capabilities, and the report lists none.",
                hint="Probe on the machine with the NVIDIA GPU (or give its --report).",
            )
        archs = ";".join(cuda_arch(c) for c in gpu_targets)
        kepler = [c for c in gpu_targets if int(c.split(".")[0]) < 5]
        defines += ["-DGGML_CUDA=ON", f"-DCMAKE_CUDA_ARCHITECTURES={archs}"]
        if nvcc:
            defines.append(f"-DCMAKE_CUDA_COMPILER={nvcc}")
        features.add("cuda")
        if kepler:
            features.add("cuda-kepler")
            notes.append(
                f"Kepler GPU (CC {', '.join(kepler)}): needs CUDA ≤ 11.8, driver 470.x and the batched-GEMM patch."
            )
            if cuda_version is not None and cuda_version > KEPLER_MAX_CUDA:
                raise PlanError(
                    f"CUDA {cuda_version[0]}.{cuda_version[1]} cannot build for Kepler (CC {', '.join(kepler)}).",
                    hint="Install the CUDA 11.8 toolkit (with gcc ≤ 11) and point CUDACXX at its nvcc; "
                    "Kepler also needs the NVIDIA 470.x driver.",
                )
        if cuda_version is not None and cuda_version >= (13, 0) and any(float(c) < 7.5 for c in gpu_targets):
            raise PlanError(
                f"CUDA {cuda_version[0]}.{cuda_version[1]} cannot compile for CC < 7.5 "
                f"({', '.join(c for c in gpu_targets if float(c) < 7.5)}).",
                hint="Use the CUDA 12.x toolkit for Maxwell/Pascal/Volta/Turing GPUs.",
            )
    targets = list(SWAP_TARGETS[v.framework])
    targets += [t for t, _n in layout_targets if t not in targets]
    if replace_server:
        targets += [t for t in SERVER_TARGETS if t not in targets]
    if smoke_program:
        targets += [t for t in SMOKE_TARGETS if t not in targets]
    defines_t = tuple(defines)
    key = _key(str(source.root), *defines_t)
    build_dir = build_root / f"{v.text}-{key}"
    generator = ["-G", "Ninja", f"-DCMAKE_MAKE_PROGRAM={ninja}"] if ninja else []
    configure = ProcessPlan(
        argv=(cmake, "-S", str(source.root), "-B", str(build_dir), *generator, *defines_t),
        env=env,
        label="configure",
    )
    job_args = ("-j", str(jobs)) if jobs else ()
    build = ProcessPlan(
        argv=(cmake, "--build", str(build_dir), "--config", "Release", *job_args, "--target", *targets),
        env=env,
        label="build",
    )
    bin_dir = build_dir / "bin"
    return BuildPlan(
        variant=v.text,
        framework=v.framework,
        source_dir=str(source.root),
        build_dir=str(build_dir),
        bin_dir=str(bin_dir),
        log_path=str((log_dir or build_root) / f"{v.text}-{key}.log"),
        configure=configure,
        build=build,
        targets=tuple(targets),
        swap_targets=SWAP_TARGETS[v.framework]
        + tuple(t for t, _n in layout_targets if t not in SWAP_TARGETS[v.framework])
        + (SERVER_TARGETS if replace_server else ()),
        cmake_defines=defines_t,
        isa=isa,
        manifest_ise=tuple(manifest_ise(isa)),
        expected_cpu_flags=expected_flags,
        expected_cpu_defines=expected_defines,
        gpu_targets=gpu_targets,
        cuda_architectures=archs,
        patch_features=frozenset(features),
        generic=generic,
        tag=source.tag,
        commit=source.commit,
        notes=tuple(notes),
        target_os=tos,
        output_names=tuple(layout_targets),
        toolchain=toolchain,
        wrappers_dir=wrappers_dir,
    )


# --- configure-output verification (docs/llama-build-notes.md §9, step 1) ------------------------------------

_VARIANT_LINE_RE = re.compile(r"Adding CPU backend variant (\S+):\s*(\S*)\s*(\S*)")


# Options that older or newer llama.cpp tags may not know; CMake ignoring them is harmless.
OPTIONAL_DEFINES = frozenset(
    {
        "LLAMA_USE_PREBUILT_UI",
        "LLAMA_BUILD_APP",
        "LLAMA_OPENSSL",
        "LLAMA_CURL",
        "LLAMA_BUILD_TOOLS",
        "LLAMA_BUILD_SERVER",
        "LLAMA_BUILD_EXAMPLES",
        "LLAMA_BUILD_TESTS",
        "LLAMA_BUILD_NUMBER",
        "GGML_CCACHE",
        "CMAKE_RC_COMPILER",
    }
)
_UNUSED_HEAD = "Manually-specified variables were not used by the project:"


def unused_variables(lines: list[str]) -> set[str]:
    """Names CMake lists under "Manually-specified variables were not used by the project:"."""
    out: set[str] = set()
    for i, line in enumerate(lines):
        if _UNUSED_HEAD in line:
            for nxt in lines[i + 1 :]:
                name = nxt.strip()
                if not name:
                    if out:
                        break
                    continue
                if not re.fullmatch(r"[A-Za-z0-9_]+", name):
                    break
                out.add(name)
    return out


class ConfigureCheckError(UsageError):
    code = "configure-check"
    exit_code = 1


def verify_configure_output(plan: BuildPlan, lines: list[str]) -> None:
    """Fail on -march=native, on ignored -D variables, and on a CPU-variant line whose flags differ from the plan."""
    unused = unused_variables(lines)
    fatal = sorted(v for v in unused if v not in OPTIONAL_DEFINES)
    if fatal:
        raise ConfigureCheckError(
            f"CMake ignored some of our -D options: {', '.join(fatal)} (wrong names for this llama.cpp version).",
            hint="This llama.cpp tag uses different option names; use the template's tag or update the planner.",
        )
    found = [m for m in (_VARIANT_LINE_RE.search(line) for line in lines) if m]
    if not found:
        raise ConfigureCheckError(
            "CMake did not print the 'Adding CPU backend variant' line; cannot verify the CPU flags.",
            hint="Check the configure log.",
        )
    for m in found:
        flags = [f for f in m.group(2).split(";") if f]
        if any("-march=native" in f or "march=native" in f for f in flags):
            raise ConfigureCheckError(
                f"The CPU backend {m.group(1)} would be built with -march=native.", hint="GGML_NATIVE must be OFF."
            )
        if set(flags) != set(plan.expected_cpu_flags):
            raise ConfigureCheckError(
                f"CPU backend flags differ from the plan: got {';'.join(flags) or '(none)'}, "
                f"expected {';'.join(plan.expected_cpu_flags) or '(none)'}.",
                hint="An ISA option was not applied; see the configure log.",
            )
