"""Build temporary LM Studio homes for tests from the REAL manifests and display-data.

Real data (``tests/fixtures/lmstudio-backend-examples``, see its README):

* ``win-x86_64-avx-1.48.0.backend-manifest.json`` (CRLF) and ``...display-data.json``: used as is for
  the community pack ``"win-avx-1.48.0"`` (theIvanR's ``llama.cpp-win-x86_64-avx``), and turned back
  into LM Studio's official ``"win-cpu-1.48.0"`` (``llama.cpp-win-x86_64-avx2``, ISE ``["AVX2"]``,
  displayName "CPU llama.cpp (Windows)") by the two text edits theIvanR made, undone byte for byte.
* ``win-x86_64-noavx-1.48.0.backend-manifest.json``: ``"win-noavx-1.48.0"`` (ISE ``[""]``).
* ``linux-x86_64-{cuda,vulkan}-k40k80-2.14.0.backend-manifest.json``: used as is for the Kepler
  community packs ``"linux-cuda-k40k80-2.14.0"`` / ``"linux-vulkan-k40k80-2.14.0"`` and, with the
  Delitants edits undone (name without ``-k40k80``, ISE ``["AVX2"]``), for the official-like
  ``"linux-cuda-2.14.0"`` / ``"linux-vulkan-2.14.0"``.

Derived (no real file seen, shape from docs/lmstudio-contract.md §5.2/§7/§8.3):

* ``"linux-cpu-2.14.0"``: the Vulkan 2.14.0 manifest without ``gpu``/vendor packages, named
  ``llama.cpp-linux-x86_64-avx2``, plus ``engine_protocol_server`` and an
  ``engine-protocol-server-artifacts.json`` as 2.x Windows packs carry them (§7), so the artifacts
  code paths are exercised on Linux too.
* 2.x display-data: the 1.48.0 file's shape with one 2.14.0 entry "llama.cpp release b8861"
  (the tag Delitants reports for 2.14.0; no commit is known).

STOOD IN: LM Studio's closed binaries (``*.node``, ``llm_engine*``, ``lmstudiocore``,
``libggml*``, ``libllama*``, ``mtmd``, ``llama-server``, MSVC DLLs, vendor runtime libraries) are
small text files saying so; the Linux ``.so`` files keep the real versioned-symlink layout
(relative symlinks) and exec bits. The 1.x Windows file list is the real one from
``win-x86_64-avx-1.48.0.files.txt``.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tests.conftest import BACKEND_EXAMPLES

EX = BACKEND_EXAMPLES
WIN_AVX_MANIFEST = EX / "win-x86_64-avx-1.48.0.backend-manifest.json"
WIN_NOAVX_MANIFEST = EX / "win-x86_64-noavx-1.48.0.backend-manifest.json"
WIN_DISPLAY_DATA = EX / "win-x86_64-avx-1.48.0.display-data.json"
WIN_FILES_TXT = EX / "win-x86_64-avx-1.48.0.files.txt"
LINUX_CUDA_MANIFEST = EX / "linux-x86_64-cuda-k40k80-2.14.0.backend-manifest.json"
LINUX_VULKAN_MANIFEST = EX / "linux-x86_64-vulkan-k40k80-2.14.0.backend-manifest.json"


def stand_in(name: str) -> bytes:
    """Content of a stand-in for one of LM Studio's closed binaries."""
    return f"STAND-IN for LM Studio's closed binary {name} (test fixture, not a real binary)\n".encode()


@dataclass(frozen=True)
class TemplateSpec:
    """Everything needed to write one backend folder."""

    key: str
    manifest: bytes
    display_data: bytes
    files: Mapping[str, bytes] = field(default_factory=dict)  # relpath -> content
    symlinks: Mapping[str, str] = field(default_factory=dict)  # relpath -> relative target
    executables: frozenset[str] = frozenset()
    artifacts: bytes | None = None

    @property
    def manifest_json(self) -> dict[str, Any]:
        return dict(json.loads(self.manifest.decode("utf-8")))

    @property
    def name(self) -> str:
        return str(self.manifest_json["name"])

    @property
    def version(self) -> str:
        return str(self.manifest_json["version"])

    @property
    def ident(self) -> str:
        return f"{self.name}@{self.version}"

    @property
    def folder_name(self) -> str:
        return f"{self.name}-{self.version}"


def _win_files() -> dict[str, bytes]:
    files: dict[str, bytes] = {}
    for line in WIN_FILES_TXT.read_text(encoding="utf-8").splitlines():
        if not line or line.startswith("#"):
            continue
        m = re.match(r"\d+\s+[0-9a-f]+\s+\[[^\]]*\]\s+(\S+)", line)
        if m and not m.group(1).endswith(".json"):
            files[m.group(1)] = stand_in(m.group(1))
    return files


def _linux_files(gpu: str) -> tuple[dict[str, bytes], dict[str, str], set[str]]:
    sfx = f"_{gpu}" if gpu else ""
    files = {
        f"llm_engine{sfx}.node": b"",
        f"liblmstudio_bindings{sfx}.node": b"",
        "libllm_engine.so": b"",
        "liblmstudiocore.so": b"",
        "libggml_llamacpp.so": b"",
        "libmtmd.so": b"",
    }
    links: dict[str, str] = {}
    versioned = ["libggml-base", "libggml-cpu", "libggml", "libllama"] + ([f"libggml-{gpu}"] if gpu else [])
    for lib in versioned:
        real = f"{lib}.so.0.0.8861"
        files[real] = b""
        links[f"{lib}.so.0"] = real
        links[f"{lib}.so"] = f"{lib}.so.0"
    out = {k: stand_in(k) for k in files}
    execs = {k for k in out if k.endswith((".node", ".so")) or ".so." in k}
    return out, links, execs


def _display_2x(display_name: str, description: str) -> bytes:
    data = [
        [
            "en",
            {
                "langKey": "en",
                "displayName": display_name,
                "description": description,
                "releaseNotes": [
                    {"version": "2.14.0", "releaseNotes": "- Engine protocol runtime\n- llama.cpp release b8861\n"}
                ],
            },
        ]
    ]
    return (json.dumps(data, indent=2, ensure_ascii=False) + "\n").encode()


def _dump(obj: Any) -> bytes:
    return (json.dumps(obj, indent=2, ensure_ascii=False) + "\n").encode()


def _linux_2x(key: str, gpu: str, *, kepler: bool) -> TemplateSpec:
    src = LINUX_CUDA_MANIFEST if gpu == "cuda" else LINUX_VULKAN_MANIFEST
    raw = src.read_bytes()
    if gpu == "":  # derived CPU pack from the Vulkan one
        m = json.loads(raw)
        m.pop("gpu", None)
        m.pop("vendor_lib_package_names", None)
        m["target_libraries"] = [
            {"name": "llm_engine.node", "type": "llm_engine", "version": "0.1.2"},
            {"name": "liblmstudio_bindings.node", "type": "liblmstudio", "version": "0.2.26"},
        ]
        m["cpu"]["instruction_set_extensions"] = ["AVX2"]
        m["engine_protocol_server"] = {"runtime_kind": "llama-server", "executable_relative_path": "llama-server"}
        m["name"] = "llama.cpp-linux-x86_64-avx2"
        manifest = _dump(m)
    elif kepler:
        manifest = raw
    else:
        manifest = raw.replace(b"-k40k80", b"").replace(b'"AVX"', b'"AVX2"')
    files, links, execs = _linux_files(gpu)
    artifacts = None
    if gpu == "":
        files["llama-server"] = stand_in("llama-server")
        files["libllama-server-impl.so"] = stand_in("libllama-server-impl.so")
        execs |= {"llama-server", "libllama-server-impl.so"}
        artifacts = _dump(
            {
                "schema_version": 1,
                "runtime_kind": "llama-server",
                "executable_relative_path": "llama-server",
                "files": [
                    {"relative_path": "llama-server", "executable": True},
                    {"relative_path": "libllama-server-impl.so", "executable": True},
                ],
            }
        )
    label = {"cuda": "CUDA", "vulkan": "Vulkan", "": "CPU"}[gpu]
    dd = _display_2x(f"{label} llama.cpp (Linux)" + (" K40/K80" if kepler else ""), f"{label} llama.cpp engine")
    return TemplateSpec(key, manifest, dd, files, links, frozenset(execs), artifacts)


def template(key: str) -> TemplateSpec:
    """A backend folder recipe. Keys: see :data:`TEMPLATE_KEYS`."""
    win_dd = WIN_DISPLAY_DATA.read_bytes()
    if key == "win-cpu-1.48.0":
        m = WIN_AVX_MANIFEST.read_bytes().replace(b'"llama.cpp-win-x86_64-avx"', b'"llama.cpp-win-x86_64-avx2"')
        m = m.replace(b'"AVX"', b'"AVX2"')
        dd = win_dd.replace(b'"CPU llama.cpp (Windows, AVX1)"', b'"CPU llama.cpp (Windows)"')
        return TemplateSpec(key, m, dd, _win_files())
    if key == "win-avx-1.48.0":
        return TemplateSpec(key, WIN_AVX_MANIFEST.read_bytes(), win_dd, _win_files())
    if key == "win-noavx-1.48.0":
        return TemplateSpec(key, WIN_NOAVX_MANIFEST.read_bytes(), win_dd, _win_files())
    if key == "linux-cuda-2.14.0":
        return _linux_2x(key, "cuda", kepler=False)
    if key == "linux-vulkan-2.14.0":
        return _linux_2x(key, "vulkan", kepler=False)
    if key == "linux-cpu-2.14.0":
        return _linux_2x(key, "", kepler=False)
    if key == "linux-cuda-k40k80-2.14.0":
        return _linux_2x(key, "cuda", kepler=True)
    if key == "linux-vulkan-k40k80-2.14.0":
        return _linux_2x(key, "vulkan", kepler=True)
    raise KeyError(key)


TEMPLATE_KEYS: tuple[str, ...] = (
    "win-cpu-1.48.0",
    "win-avx-1.48.0",
    "win-noavx-1.48.0",
    "linux-cpu-2.14.0",
    "linux-cuda-2.14.0",
    "linux-vulkan-2.14.0",
    "linux-cuda-k40k80-2.14.0",
    "linux-vulkan-k40k80-2.14.0",
)
OFFICIAL_KEYS: tuple[str, ...] = ("win-cpu-1.48.0", "linux-cpu-2.14.0", "linux-cuda-2.14.0", "linux-vulkan-2.14.0")
VENDOR_PACKAGES: tuple[str, ...] = ("linux-llama-cuda-vendor-v1", "linux-llama-vulkan-vendor-v1")


def write_backend(dest: Path, spec: TemplateSpec | str) -> Path:
    """Write the backend folder ``spec`` at ``dest`` (created; must not exist)."""
    if isinstance(spec, str):
        spec = template(spec)
    dest.mkdir(parents=True)
    (dest / "backend-manifest.json").write_bytes(spec.manifest)
    (dest / "display-data.json").write_bytes(spec.display_data)
    if spec.artifacts is not None:
        (dest / "engine-protocol-server-artifacts.json").write_bytes(spec.artifacts)
    for rel, content in spec.files.items():
        p = dest / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(content)
        os.chmod(p, 0o755 if rel in spec.executables else 0o644)
    for rel, target in spec.symlinks.items():
        os.symlink(target, dest / rel)
    return dest


def make_home(
    tmp_path: Path,
    *,
    backends: Iterable[str | TemplateSpec] = ("linux-cpu-2.14.0", "linux-vulkan-2.14.0"),
    settings: Mapping[str, Any] | None = None,
    prefs: list[dict[str, Any]] | None = None,
    engine_index: Any | None = None,
    vendor: Iterable[str] = VENDOR_PACKAGES,
    dirname: str = "lmstudio-home",
) -> Path:
    """A fresh LM Studio home under ``tmp_path/dirname`` holding the given backends.

    ``settings`` -> ``settings.json``; ``prefs`` -> ``.internal/backend-preferences-v1.json``
    (None: not written); ``engine_index`` -> ``.internal/internal-engine-index.json``;
    ``vendor`` -> stand-in packages under ``extensions/backends/vendor/``.
    """
    home = tmp_path / dirname
    bdir = home / "extensions" / "backends"
    bdir.mkdir(parents=True)
    (home / ".internal").mkdir()
    (home / "models").mkdir()
    for pkg in vendor:
        p = bdir / "vendor" / pkg
        p.mkdir(parents=True)
        (p / "libvendor-runtime.so").write_bytes(stand_in(f"vendor/{pkg}/libvendor-runtime.so"))
    for b in backends:
        spec = template(b) if isinstance(b, str) else b
        write_backend(bdir / spec.folder_name, spec)
    if settings is not None:
        (home / "settings.json").write_bytes(_dump(dict(settings)))
    if prefs is not None:
        (home / ".internal" / "backend-preferences-v1.json").write_bytes(json.dumps(prefs).encode())
    if engine_index is not None:
        (home / ".internal" / "internal-engine-index.json").write_bytes(json.dumps(engine_index).encode())
    return home


def tree_hashes(root: Path, *, exclude: Iterable[str] = ()) -> dict[str, str]:
    """relpath -> sha256 (files), "-> target" (symlinks), "dir" (dirs), plus mode, for every entry."""
    import hashlib

    skip = tuple(exclude)
    out: dict[str, str] = {}
    for dirpath, dirnames, filenames in os.walk(root):
        for n in dirnames + filenames:
            p = Path(dirpath) / n
            rel = p.relative_to(root).as_posix()
            if skip and rel.startswith(skip):
                continue
            st = p.lstat()
            if p.is_symlink():
                out[rel] = "-> " + os.readlink(p)
            elif p.is_dir():
                out[rel] = f"dir {oct(st.st_mode & 0o7777)}"
            else:
                out[rel] = f"{hashlib.sha256(p.read_bytes()).hexdigest()} {oct(st.st_mode & 0o7777)}"
    return out


def prepare_our_backend(
    out_dir: Path,
    key: str = "linux-cpu-2.14.0",
    variant: str = "cpu-avx1",
    *,
    ise: tuple[str, ...] = ("AVX",),
    version: str | None = None,
    payload: bytes = b"our rebuilt ggml-cpu",
) -> Path:
    """A backend folder of ours ready for install: the template cloned with the real clone_template.

    ``version`` rewrites the manifest version (to simulate a newer build of ours); ``payload``
    replaces the template's ggml-cpu library (Linux) or ggml-cpu.dll (Windows).
    """
    from app.core.lmstudio.clone import clone_template
    from app.core.lmstudio.jsondoc import load_json, save
    from app.core.lmstudio.naming import our_backend_name

    spec = template(key)
    tmpl = write_backend(out_dir / "templates" / f"{spec.folder_name}-{variant}-{version}", spec)
    lib = out_dir / f"payload-{variant}-{version}"
    lib.write_bytes(payload)
    rel = "ggml-cpu.dll" if spec.name.startswith("llama.cpp-win") else "libggml-cpu.so"
    name = our_backend_name(spec.name, variant)
    dest = clone_template(
        tmpl,
        out_dir / "prepared" / f"{name}-{version or spec.version}",
        new_name=name,
        ise=list(ise),
        display_suffix="(Unlocked)",
        replace_files={rel: lib},
    )
    if version is not None:
        doc = load_json(dest / "backend-manifest.json")
        doc.data["version"] = version
        save(doc)
    return dest
