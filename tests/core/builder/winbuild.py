"""Windows backends built on Linux for the tests: zig (the product's portable toolchain, fetched from a loopback
mirror of the real PyPI wheel) cross-compiles llama.cpp 0c1e57098 for x86_64-windows-gnu.

The stand-in for LM Studio's official Windows CPU pack (which we may not redistribute) is built from the same
tag in the 1.x Windows layout (docs/lmstudio-contract.md §8.1): ``llama.dll`` importing ``ggml_llamacpp.dll``
(upstream ggml.dll renamed) and ``ggml-base.dll``, plus ``llm_engine.dll``, a small PE stand-in for LM Studio's
closed engine that imports ggml/llama symbols like the real one, and the real 1.48.0 Windows manifest.
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

from app.core.builder.execute import BuildResult, run_build
from app.core.builder.plan import PROJECT_INCLUDE, ZIG_WINDOWS_HEADER, BuildPlan, plan_build
from app.core.builder.prereq import find_tools
from app.core.builder.toolchain import MIRROR_ENV, ToolchainChoice, choose_toolchain, fetch_portable
from app.core.paths import resource_path
from tests.core.builder import realbuild as rb
from tests.core.builder.toolwheels import real_wheel
from tests.httpserver import LocalHTTPServer

TEMPLATE_NAME = "llama.cpp-win-x86_64-avx2"

ENGINE_C = r"""
__declspec(dllimport) void ggml_init(void);
__declspec(dllimport) void ggml_backend_cpu_init(void);
__declspec(dllimport) void ggml_backend_dev_count(void);
__declspec(dllimport) void llama_model_load_from_file(void);
__declspec(dllexport) void *lms_engine_refs[] = {(void *)ggml_init, (void *)ggml_backend_cpu_init,
                                                 (void *)ggml_backend_dev_count, (void *)llama_model_load_from_file};
__declspec(dllexport) int lms_engine_version(void) { return 2; }
"""


def zig_toolchain() -> ToolchainChoice:
    """The Windows cross toolchain as the product chooses it, with the portable zig fetched (once, into the
    persistent product cache) through the product's own verified download from a loopback mirror."""
    tools = find_tools()
    choice = choose_toolchain(tools, target_os="win", cache_root=rb.cache_root(), system="linux")
    if choice.need_fetch:
        with LocalHTTPServer() as srv:
            for w in choice.need_fetch:
                _w, path = real_wheel(w.package)
                srv.add("/w/" + w.file, path)
            old = os.environ.get(MIRROR_ENV)
            os.environ[MIRROR_ENV] = srv.url("/w")
            try:
                fetch_portable(tuple(w.package for w in choice.need_fetch), rb.cache_root(), key="linux-x86_64")
            finally:
                if old is None:
                    os.environ.pop(MIRROR_ENV, None)
                else:
                    os.environ[MIRROR_ENV] = old
        choice = choose_toolchain(tools, target_os="win", cache_root=rb.cache_root(), system="linux")
    assert choice.ready and choice.zig, choice
    return choice


def win_plan(cpu: str, variant: str, *, layout: tuple[tuple[str, str], ...]) -> BuildPlan:
    chain = zig_toolchain()
    return plan_build(
        rb.report_for(cpu),
        variant,
        rb.source_tree(),
        build_root=rb.build_root(),
        jobs=2,
        cmake=chain.cmake or "cmake",
        ninja=chain.ninja,
        target_os="win",
        platform="linux",
        toolchain=chain,
        layout_targets=layout,
        project_include=str(resource_path(*PROJECT_INCLUDE)),
        zig_windows_header=str(resource_path(*ZIG_WINDOWS_HEADER)),
    )


def win_template_plan() -> BuildPlan:
    """LM Studio's official Windows AVX2 pack stand-in: Haswell flags, ggml-base/-cpu, ggml_llamacpp, llama."""
    return win_plan("haswell", "cpu-avx2", layout=(("ggml", "ggml_llamacpp"), ("llama", "llama")))


def make_win_template(dest: Path, res: BuildResult) -> Path:
    from tests.conftest import BACKEND_EXAMPLES

    dest.mkdir(parents=True)
    for name in ("ggml-base.dll", "ggml-cpu.dll", "ggml_llamacpp.dll", "llama.dll"):
        (dest / name).write_bytes((res.bin_dir / name).read_bytes())
    build_dir = res.bin_dir.parent
    implibs = [next(build_dir.rglob(f"lib{n}.dll.a")) for n in ("ggml-base", "ggml-cpu", "ggml_llamacpp", "llama")]
    src = dest.parent / "engine.c"
    src.write_text(ENGINE_C)
    chain = zig_toolchain()
    subprocess.run(
        [*chain.cc, "-shared", "-o", str(dest / "llm_engine.dll"), str(src), *map(str, implibs)],
        check=True,
        env={**os.environ, **win_template_plan().build.env},
    )
    src.unlink()
    for junk in dest.glob("llm_engine.*"):
        if junk.suffix not in (".dll",):
            junk.unlink()
    m = json.loads((BACKEND_EXAMPLES / "win-x86_64-avx-1.48.0.backend-manifest.json").read_text())
    m["name"] = TEMPLATE_NAME
    m["cpu"]["instruction_set_extensions"] = ["AVX2"]
    (dest / "backend-manifest.json").write_text(json.dumps(m, indent=2) + "\n")
    dd = json.loads((BACKEND_EXAMPLES / "win-x86_64-avx-1.48.0.display-data.json").read_text())
    for n in dd[0][1]["releaseNotes"]:
        if n["version"] == rb.TEMPLATE_VERSION:
            n["releaseNotes"] = f"- llama.cpp commit {rb.LLAMA_COMMIT}\n"
    (dest / "display-data.json").write_text(json.dumps(dd, indent=2) + "\n")
    return dest


def build_win_template(dest: Path) -> Path:
    return make_win_template(dest, run_build(win_template_plan()))
