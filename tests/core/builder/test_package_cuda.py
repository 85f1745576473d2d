"""Packaging a CUDA variant (Kepler K80, CC 3.7) into the official-like 2.14.0 Linux CUDA template.

Stood in: the NVIDIA GPU (an NvidiaGpu record with the K80's real compute capability), LM Studio's closed files
(tests/lmstudio_homes stand-ins with the real versioned-symlink layout), and the CUDA build outputs (small real
ELF libraries compiled here under the five swapped names, since no CUDA toolchain with cuBLAS exists here).
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
from pathlib import Path

from app.core.builder.package import package_backend
from app.core.builder.plan import plan_build
from app.core.builder.source import SourceTree
from app.core.hardware.report import NvidiaGpu
from app.core.lmstudio.backends import read_backend
from tests.core.builder.realbuild import report_for
from tests.lmstudio_homes import write_backend


def test_kepler_cuda_package_writes_gpu_targets(tmp_path: Path) -> None:
    tmpl = write_backend(tmp_path / "llama.cpp-linux-x86_64-nvidia-cuda-avx2-2.14.0", "linux-cuda-2.14.0")
    report = dataclasses.replace(report_for("ivybridge"), nvidia_gpus=(NvidiaGpu(0, "Tesla K80", "3.7", "470.82.01"),))
    src = SourceTree(Path("/src"), "b8861", None, "test")
    plan = plan_build(
        report, "cuda-avx1-kepler", src, build_root=tmp_path / "b", cuda_version=(11, 8), smoke_program=False
    )
    assert plan.gpu_targets == ("3.7",) and "cuda-kepler" in plan.patch_features
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (tmp_path / "x.c").write_text("int lms_fake(void) { return 1; }\n")
    for t in plan.swap_targets:  # ggml-base ggml-cpu ggml-cuda ggml llama
        real = bin_dir / f"lib{t}.so.0.0.8861"
        subprocess.run(
            ["gcc", "-shared", "-fPIC", "-Wl,-rpath,$ORIGIN", "-o", str(real), str(tmp_path / "x.c")], check=True
        )
        os.symlink(real.name, bin_dir / f"lib{t}.so")
    res = package_backend(
        plan,
        bin_dir,
        tmpl,
        tmp_path / "out",
        template_name="llama.cpp-linux-x86_64-nvidia-cuda-avx2",
        template_version="2.14.0",
    )
    m = json.loads((res.folder / "backend-manifest.json").read_text())
    assert m["gpu"]["targets"] == ["3.7"] and m["gpu"]["framework"] == "CUDA"
    assert m["cpu"]["instruction_set_extensions"] == ["AVX"]
    info = read_backend(res.folder)
    assert "kepler" in info.name and info.name.endswith("-unlocked")
    assert set(res.replaced) == {f"lib{t}.so.0.0.8861" for t in plan.swap_targets}
    # LM Studio's own files are untouched; the versioned symlinks are LM Studio's.
    for keep in ("llm_engine_cuda.node", "libllm_engine.so", "libggml_llamacpp.so", "libmtmd.so"):
        assert (res.folder / keep).read_bytes() == (tmpl / keep).read_bytes()
    assert os.readlink(res.folder / "libggml-cuda.so") == "libggml-cuda.so.0"
    prov = json.loads((res.folder / "unlocked-install.json").read_text())
    assert prov["gpu_targets"] == ["3.7"] and "-DCMAKE_CUDA_ARCHITECTURES=37" in prov["build_flags"]
