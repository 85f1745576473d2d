"""Build prerequisites: find cmake, ninja, a C/C++ compiler, ccache, glslc + Vulkan headers, nvcc; say what is
missing and how to install it on this OS."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from app.core.errors import UnlockedError
from app.core.runner import popen_platform_kwargs


@dataclass(frozen=True)
class Tools:
    cmake: str | None = None
    ninja: str | None = None
    cc: str | None = None
    cxx: str | None = None
    ccache: str | None = None
    glslc: str | None = None
    vulkan_headers: str | None = None  # the vulkan/vulkan.hpp found
    vulkan_header_version: int | None = None  # VK_HEADER_VERSION (239 on Debian 12)
    spirv_headers: str | None = None
    nvcc: str | None = None
    cuda_version: tuple[int, int] | None = None
    cublas: str | None = None  # the cuBLAS library of nvcc's toolkit (ggml-cuda links CUDA::cublas)
    patch: str | None = None


@dataclass(frozen=True)
class Missing:
    what: str
    why: str
    how: str


@dataclass(frozen=True)
class PrereqReport:
    tools: Tools
    missing: tuple[Missing, ...] = field(default_factory=tuple)
    notes: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        return not self.missing


class PrerequisitesMissing(UnlockedError):
    code = "build-prerequisites"


def _os_family() -> str:
    if sys.platform == "win32":
        return "windows"
    if sys.platform == "darwin":
        return "mac"
    try:
        text = Path("/etc/os-release").read_text()
    except OSError:
        return "linux"
    ids = " ".join(re.findall(r"^(?:ID|ID_LIKE)=\"?([^\"\n]+)", text, re.M)).lower()
    if "debian" in ids or "ubuntu" in ids:
        return "debian"
    if "fedora" in ids or "rhel" in ids:
        return "fedora"
    if "arch" in ids:
        return "arch"
    return "linux"


INSTALL_HINTS: Mapping[str, Mapping[str, str]] = {
    "cmake": {
        "debian": "sudo apt-get install cmake",
        "fedora": "sudo dnf install cmake",
        "arch": "sudo pacman -S cmake",
        "windows": "winget install Kitware.CMake",
        "mac": "brew install cmake",
        "linux": "install cmake ≥ 3.14 from your distribution",
    },
    "ninja": {
        "debian": "sudo apt-get install ninja-build",
        "fedora": "sudo dnf install ninja-build",
        "arch": "sudo pacman -S ninja",
        "windows": "winget install Ninja-build.Ninja",
        "mac": "brew install ninja",
        "linux": "install ninja from your distribution",
    },
    "compiler": {
        "debian": "sudo apt-get install build-essential",
        "fedora": "sudo dnf install gcc-c++",
        "arch": "sudo pacman -S base-devel",
        "windows": "winget install Microsoft.VisualStudio.2022.BuildTools (C++ workload)",
        "mac": "xcode-select --install",
        "linux": "install gcc and g++",
    },
    "glslc": {
        "debian": "sudo apt-get install glslc",
        "fedora": "sudo dnf install glslc",
        "arch": "sudo pacman -S shaderc",
        "windows": "winget install KhronosGroup.VulkanSDK",
        "mac": "brew install shaderc",
        "linux": "install glslc (shaderc)",
    },
    "vulkan-headers": {
        "debian": "sudo apt-get install libvulkan-dev",
        "fedora": "sudo dnf install vulkan-headers",
        "arch": "sudo pacman -S vulkan-headers",
        "windows": "winget install KhronosGroup.VulkanSDK",
        "mac": "brew install vulkan-headers",
        "linux": "install the Vulkan headers",
    },
    "spirv-headers": {
        "debian": "sudo apt-get install spirv-headers",
        "fedora": "sudo dnf install spirv-headers-devel",
        "arch": "sudo pacman -S spirv-headers",
        "windows": "winget install KhronosGroup.VulkanSDK",
        "mac": "brew install spirv-headers",
        "linux": "install SPIRV-Headers",
    },
    "nvcc": {
        "debian": "install the CUDA toolkit from developer.nvidia.com (Kepler: CUDA 11.8)",
        "fedora": "install the CUDA toolkit from developer.nvidia.com (Kepler: CUDA 11.8)",
        "arch": "sudo pacman -S cuda",
        "windows": "winget install Nvidia.CUDA (Kepler: CUDA 11.8 installer)",
        "mac": "CUDA is not available on macOS",
        "linux": "install the CUDA toolkit (Kepler: CUDA 11.8)",
    },
    "patch": {
        "debian": "sudo apt-get install patch",
        "fedora": "sudo dnf install patch",
        "arch": "sudo pacman -S patch",
        "windows": "winget install Git.Git",
        "mac": "xcode-select --install",
        "linux": "install patch or git",
    },
}


def install_hint(what: str, os_family: str | None = None) -> str:
    hints = INSTALL_HINTS[what]
    fam = os_family or _os_family()
    return hints.get(fam, hints["linux"])


_VK_VER_RE = re.compile(r"#define\s+VK_HEADER_VERSION\s+(\d+)")
_NVCC_VER_RE = re.compile(r"release (\d+)\.(\d+)")


def _find_vulkan_header(env: Mapping[str, str]) -> tuple[str | None, int | None]:
    roots = [Path(p) / "include" for p in (env.get("VULKAN_SDK"),) if p] + [
        Path("/usr/include"),
        Path("/usr/local/include"),
    ]
    for r in roots:
        core = r / "vulkan" / "vulkan_core.h"
        hpp = r / "vulkan" / "vulkan.hpp"
        if hpp.is_file() and core.is_file():
            m = _VK_VER_RE.search(core.read_text(errors="replace"))
            return str(hpp), int(m.group(1)) if m else None
    return None, None


def _find_spirv_headers(env: Mapping[str, str]) -> str | None:
    roots = [Path(p) for p in (env.get("VULKAN_SDK"),) if p] + [Path("/usr"), Path("/usr/local")]
    for r in roots:
        for rel in ("share/cmake/SPIRV-Headers", "lib/cmake/SPIRV-Headers", "share/SPIRV-Headers"):
            if (r / rel).is_dir():
                return str(r / rel)
    return None


def nvcc_version(nvcc: str, run: Callable[[list[str]], str] | None = None) -> tuple[int, int] | None:
    def _run(argv: list[str]) -> str:
        done: subprocess.CompletedProcess[str] = subprocess.run(
            argv, capture_output=True, text=True, check=False, timeout=30, stdin=subprocess.DEVNULL,
            **popen_platform_kwargs(),
        )
        return done.stdout

    try:
        text = (run or _run)([nvcc, "--version"])
    except (OSError, subprocess.SubprocessError):
        return None
    m = _NVCC_VER_RE.search(text)
    return (int(m.group(1)), int(m.group(2))) if m else None


_EXEC_RE = re.compile(r"^\s*exec\s+\"?([^\s\"]+/nvcc)\"?", re.M)


def cuda_roots(nvcc: str, env: Mapping[str, str]) -> list[Path]:
    """Toolkit folders that may belong to `nvcc` (CUDA_PATH/CUDA_HOME, bin/.., a wrapper script's target)."""
    roots = [Path(env[k]) for k in ("CUDA_PATH", "CUDA_HOME") if env.get(k)]
    real = Path(os.path.realpath(nvcc))
    roots.append(real.parent.parent)
    try:
        head = real.read_bytes()[:4096]
        m = _EXEC_RE.search(head.decode("utf-8", "replace")) if head[:2] == b"#!" else None
        if m:
            roots.append(Path(os.path.realpath(m.group(1))).parent.parent)
    except OSError:
        pass
    return roots


def find_cublas(nvcc: str, env: Mapping[str, str]) -> str | None:
    for root in cuda_roots(nvcc, env):
        for sub in ("lib64", "lib", "targets/x86_64-linux/lib", "lib/x64", "bin"):
            d = root / sub
            if d.is_dir():
                for pat in ("libcublas.so*", "cublas.lib", "cublas64_*.dll"):
                    hit = next(iter(sorted(d.glob(pat))), None)
                    if hit is not None:
                        return str(hit)
    return None


def find_tools(env: Mapping[str, str] | None = None) -> Tools:
    env = os.environ if env is None else env
    path = env.get("PATH")

    def which(*names: str) -> str | None:
        for n in names:
            p = shutil.which(n, path=path)
            if p:
                return p
        return None

    nvcc = env.get("CUDACXX") or which("nvcc")
    if not nvcc and env.get("CUDA_PATH"):
        cand = Path(env["CUDA_PATH"]) / "bin" / ("nvcc.exe" if sys.platform == "win32" else "nvcc")
        nvcc = str(cand) if cand.is_file() else None
    hdr, ver = _find_vulkan_header(env)
    return Tools(
        cmake=which("cmake"),
        ninja=which("ninja", "ninja-build"),
        cc=env.get("CC") or which("cc", "gcc", "clang", "cl"),
        cxx=env.get("CXX") or which("c++", "g++", "clang++", "cl"),
        ccache=which("ccache", "sccache"),
        glslc=which("glslc"),
        vulkan_headers=hdr,
        vulkan_header_version=ver,
        spirv_headers=_find_spirv_headers(env),
        nvcc=nvcc,
        cuda_version=nvcc_version(nvcc) if nvcc else None,
        cublas=find_cublas(nvcc, env) if nvcc else None,
        patch=which("patch", "git"),
    )


def check_prerequisites(
    framework: str,
    tools: Tools,
    *,
    compute_capabilities: tuple[str, ...] = (),
    os_family: str | None = None,
) -> PrereqReport:
    """What is missing for a `framework` ("cpu"/"vulkan"/"cuda") build, each with how to get it on this OS."""
    fam = os_family or _os_family()
    missing: list[Missing] = []
    notes: list[str] = []

    def need(ok: object, what: str, why: str, hint_key: str | None = None) -> None:
        if not ok:
            missing.append(Missing(what, why, install_hint(hint_key or what, fam)))

    need(tools.cmake, "cmake", "configures llama.cpp")
    need(tools.cc and tools.cxx, "C/C++ compiler", "compiles llama.cpp", "compiler")
    need(tools.patch, "patch", "applies the patches/ series", "patch")
    if not tools.ninja:
        notes.append(
            f"ninja not found: CMake's default generator is used (slower, no progress). {install_hint('ninja', fam)}"
        )
    if not tools.ccache:
        notes.append("ccache not found: rebuilds start from scratch.")
    if framework == "vulkan":
        need(tools.glslc, "glslc", "compiles ggml-vulkan's shaders")
        need(tools.vulkan_headers, "Vulkan headers", "ggml-vulkan includes vulkan/vulkan.hpp", "vulkan-headers")
        need(tools.spirv_headers, "SPIRV-Headers", "ggml-vulkan runs find_package(SPIRV-Headers)", "spirv-headers")
        if tools.vulkan_header_version is not None and tools.vulkan_header_version < 272:
            notes.append(
                f"Vulkan-Headers 1.3.{tools.vulkan_header_version} < 1.3.272: the layer-settings guard patch "
                "from patches/ is applied."
            )
    if framework == "cuda":
        need(tools.nvcc, "nvcc (CUDA toolkit)", "compiles ggml-cuda", "nvcc")
        if tools.nvcc:
            need(tools.cublas, "cuBLAS (CUDA toolkit)", f"ggml-cuda links cuBLAS; none next to {tools.nvcc}", "nvcc")
        ccs = [tuple(int(x) for x in c.split(".")) for c in compute_capabilities]
        if tools.cuda_version and ccs:
            v = tools.cuda_version
            if any(c < (5, 0) for c in ccs) and v > (11, 8):
                missing.append(
                    Missing(
                        "CUDA ≤ 11.8",
                        f"Kepler GPUs (CC < 5.0) need CUDA 11.x; found CUDA {v[0]}.{v[1]}",
                        "Install the CUDA 11.8 toolkit (gcc ≤ 11) and set CUDACXX to its nvcc; keep the 470.x driver.",
                    )
                )
            if any(c < (3, 5) for c in ccs):
                missing.append(
                    Missing(
                        "CUDA ≤ 10.2", "CC 3.0 GPUs were removed in CUDA 11", "Use the Vulkan variant for this GPU."
                    )
                )
            if v >= (13, 0) and any(c < (7, 5) for c in ccs):
                missing.append(
                    Missing(
                        "CUDA 12.x", f"CUDA {v[0]}.{v[1]} cannot compile for CC < 7.5", "Install the CUDA 12.x toolkit."
                    )
                )
    return PrereqReport(tools, tuple(missing), tuple(notes))


def require(report: PrereqReport) -> None:
    if report.ok:
        return
    lines = [f"- {m.what}: {m.why}. {m.how}" for m in report.missing]
    raise PrerequisitesMissing(
        f"Missing build prerequisites: {', '.join(m.what for m in report.missing)}.",
        hint="\n".join(lines),
    )
