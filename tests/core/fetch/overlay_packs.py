"""A stand-in official 2.x Linux CPU pack with real ELF libraries, and a backend of ours built from it (tests only).

Real: the pack's shape and manifests (tests/lmstudio_homes.py, from real LM Studio manifests), `clone_template`
and `write_provenance` (what `build` packages with), and three ELF libraries compiled here with gcc:

* the official `libggml-cpu.so.0.0.8861` exports `ggml_vec_add_f32` (AVX code);
* the official `libllama.so.0.0.8861` imports `ggml_vec_add_f32` (a kept binary of LM Studio's for the ABI guard);
* our rebuilt `libggml-cpu.so.0.0.8861`: the same function compiled differently (`-mavx -O1`), or, for the negative
  tests, an AVX2/FMA library that does not export it.

STOOD IN: LM Studio's other closed binaries (text files, tests/lmstudio_homes.py) and our rebuilt llama-server
(tests/core/fetch/standin_llama_server.py, a tiny HTTP server with the two endpoints the smoke test uses).
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path

from app.core.lmstudio.clone import clone_template, copy_tree_exact
from app.core.lmstudio.naming import our_backend_name
from app.core.lmstudio.provenance import write_provenance
from tests.core.test_patchonly import AVX_SRC, build_lib
from tests.lmstudio_homes import template, write_backend

TEMPLATE_KEY = "linux-cpu-2.14.0"
OFFICIAL = "llama.cpp-linux-x86_64-avx2@2.14.0"
OURS = "llama.cpp-linux-x86_64-avx1-unlocked@2.14.0"
GGML = "libggml-cpu.so.0.0.8861"
LLAMA = "libllama.so.0.0.8861"
SERVER_DIR = "unlocked-server"
IMPORTER_SRC = r"""
void ggml_vec_add_f32(int n, float *z, const float *x, const float *y);
void llama_add(int n, float *z, const float *x, const float *y) { ggml_vec_add_f32(n, z, x, y); }
"""
STANDIN_SERVER = Path(__file__).with_name("standin_llama_server.py")


def official_pack(parent: Path, libs: Path) -> Path:
    """The stand-in official pack `llama.cpp-linux-x86_64-avx2-2.14.0` with the real ELF ggml-cpu and llama libs."""
    libs.mkdir(parents=True, exist_ok=True)
    folder = write_backend(parent / template(TEMPLATE_KEY).folder_name, TEMPLATE_KEY)
    for rel, lib in ((GGML, build_lib(libs, AVX_SRC, ["-mavx"], "official-ggml")),
                     (LLAMA, build_lib(libs, IMPORTER_SRC, [], "official-llama"))):
        (folder / rel).write_bytes(lib.read_bytes())
        os.chmod(folder / rel, 0o755)
    return folder


def install_official(home: Path, pack: Path) -> Path:
    """Put an exact copy of the official pack into an LM Studio home (as LM Studio unpacks it)."""
    dest = home / "extensions" / "backends" / pack.name
    copy_tree_exact(pack, dest)
    return dest


def server_script() -> bytes:
    return f"#!{sys.executable}\n".encode() + STANDIN_SERVER.read_bytes()


def built_backend(out: Path, pack: Path, libs: Path, *, ggml_src: str = AVX_SRC,
                  ggml_flags: tuple[str, ...] = ("-mavx", "-O1"), variant: str = "cpu-avx1") -> Path:
    """Our backend as `build` packages it: the pack cloned, ggml-cpu replaced, a llama-server in its own sub-folder
    (manifest and artifacts repointed), provenance naming the template and what was replaced/added."""
    libs.mkdir(parents=True, exist_ok=True)
    ggml = build_lib(libs, ggml_src, list(ggml_flags), f"ours-ggml-{len(os.listdir(libs))}")
    server = libs / "llama-server"
    server.write_bytes(server_script())
    server.chmod(0o755)
    spec = template(TEMPLATE_KEY)
    name = our_backend_name(spec.name, variant)
    dest = clone_template(
        pack,
        out / f"{name}-{spec.version}",
        new_name=name,
        ise=["AVX"],
        display_suffix=f"({variant}, lms-unlocked)",
        replace_files={GGML: ggml, f"{SERVER_DIR}/llama-server": server},
        server_relpath=f"{SERVER_DIR}/llama-server",
    )
    os.symlink(f"../{GGML}", dest / SERVER_DIR / "libggml-cpu.so")  # a library link of the server sub-folder
    write_provenance(dest, {
        "variant": variant,
        "template": f"{spec.name}@{spec.version}",
        "llama_cpp_tag": "b8861",
        "replaced": [GGML],
        "added": [f"{SERVER_DIR}/llama-server", f"{SERVER_DIR}/libggml-cpu.so"],
        "server": f"{SERVER_DIR}/llama-server",
        "generic": True,
    })
    return dest


def real_windows_pair(archives: Path, tmp: Path) -> tuple[Path, Path]:
    """(template, built) from LM Studio's real Windows 1.48.0 CPU pack (../shared/lmstudio-real, never copied into
    the repository): theIvanR's `avx` folder stands in for the official template (its LM Studio binaries are the
    official ones; named back to `llama.cpp-win-x86_64-avx2`), the `noavx` folder made from the same pack (its
    `ggml-base.dll` and `ggml-cpu.dll` rebuilt) stands in for our build, with our name, ISE ["AVX"] and provenance."""
    import py7zr

    src = {}
    for kind in ("avx", "noavx"):
        with py7zr.SevenZipFile(archives / f"llama.cpp-win-x86_64-{kind}-1.48.0.7z") as z:
            z.extractall(tmp / kind)
        src[kind] = next((tmp / kind).iterdir())
    template = tmp / "templates" / "llama.cpp-win-x86_64-avx2-1.48.0"
    built = tmp / "built" / "llama.cpp-win-x86_64-noavx-unlocked-1.48.0"
    for folder, origin, name in ((template, src["avx"], "llama.cpp-win-x86_64-avx2"),
                                 (built, src["noavx"], "llama.cpp-win-x86_64-noavx-unlocked")):
        shutil.copytree(origin, folder)
        m = json.loads((folder / "backend-manifest.json").read_text(encoding="utf-8-sig"))
        m["name"] = name
        if folder == built:
            m["cpu"]["instruction_set_extensions"] = ["AVX"]  # never "" in a pack of ours
        (folder / "backend-manifest.json").write_text(json.dumps(m, indent=2))
    write_provenance(built, {"variant": "noavx", "template": "llama.cpp-win-x86_64-avx2@1.48.0",
                             "replaced": ["ggml-base.dll", "ggml-cpu.dll"], "added": []})
    return template, built
