"""Read LM Studio backend folders: ``backend-manifest.json``, ``display-data.json``
(docs/lmstudio-contract.md §5, §6, §7).

LM Studio treats every sub-folder of ``extensions/backends`` except ``vendor/`` as a backend and
identifies it by the manifest's ``name@version`` (§4.3). Reading never raises for a broken folder:
the folder comes back with ``problems`` that doctor turns into findings.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.lmstudio.displaydata import display_name, llama_cpp_build
from app.core.lmstudio.errors import AmbiguousBackend, BackendNotFound, JsonFileError
from app.core.lmstudio.home import LmsHome, as_home
from app.core.lmstudio.jsondoc import JsonDoc, load_json
from app.core.version import Version

MANIFEST_FILE = "backend-manifest.json"
DISPLAY_DATA_FILE = "display-data.json"
ARTIFACTS_FILE = "engine-protocol-server-artifacts.json"
PROVENANCE_FILE = "unlocked-install.json"  # our marker + provenance (§9.4)
VENDOR_DIR = "vendor"
REQUIRED_FIELDS: tuple[str, ...] = ("name", "version", "platform", "cpu", "supported_model_formats")


@dataclass(frozen=True)
class BackendProblem:
    """Something wrong with one backend folder. ``code`` is stable, ``message`` is for people."""

    code: str
    message: str

    def __str__(self) -> str:
        return self.message


@dataclass(frozen=True)
class BackendInfo:
    folder: Path
    name: str = ""
    version: str = ""
    manifest: Mapping[str, Any] = field(default_factory=dict, compare=False, hash=False)
    manifest_version: str = ""
    generation: str = ""  # "1.x" (manifest_version "3") or "2.x" ("4")
    display_name: str = ""
    llama_tag: str | None = None
    llama_commit: str | None = None
    llama_build_exact: bool = False
    platform: str = ""
    arch: str = ""
    ise: tuple[str, ...] = ()
    gpu_make: str = ""
    gpu_framework: str = ""
    gpu_targets: tuple[str, ...] = ()
    gpu_min_driver: str = ""
    target_libraries: tuple[str, ...] = ()
    vendor_packages: tuple[str, ...] = ()
    model_formats: tuple[str, ...] = ()
    server_relpath: str = ""
    minimum_lmstudio_version: str = ""
    artifacts: Mapping[str, Any] | None = field(default=None, compare=False, hash=False)
    ours: bool = False
    manifest_bom: bool = False
    problems: tuple[BackendProblem, ...] = ()

    @property
    def ident(self) -> str:
        return f"{self.name}@{self.version}" if self.name else ""

    @property
    def valid(self) -> bool:
        """The manifest could be read and names a backend (LM Studio could list it)."""
        return bool(self.name and self.version) and not any(p.code in _FATAL for p in self.problems)

    @property
    def expected_folder_name(self) -> str:
        return f"{self.name}-{self.version}"

    def has_problem(self, code: str) -> bool:
        return any(p.code == code for p in self.problems)


_FATAL = frozenset(
    {"manifest-missing", "manifest-nested", "manifest-encoding", "manifest-syntax", "manifest-not-object"}
)


def _str(v: Any) -> str:
    return v if isinstance(v, str) else ("" if v is None else str(v))


def _strs(v: Any) -> tuple[str, ...]:
    if isinstance(v, list):
        return tuple(_str(x) for x in v)
    return ()


def generation_of(manifest_version: str, version: str) -> str:
    if manifest_version == "3":
        return "1.x"
    if manifest_version == "4":
        return "2.x"
    v = Version.parse_or_none(version)
    return f"{v.major}.x" if v is not None and not v.llama_tag else "unknown"


def nested_backend_folders(folder: Path, depth: int = 2) -> list[Path]:
    """Backend folders (with a manifest) one level below ``folder``, else two levels (a repository zip extracted
    into a folder of its own); empty when there is none or ``folder`` has a manifest itself."""
    if (folder / MANIFEST_FILE).exists():
        return []
    level = [folder]
    for _ in range(depth):
        nxt: list[Path] = []
        for d in level:
            try:
                nxt += sorted((c for c in d.iterdir() if c.is_dir() and not c.is_symlink()), key=lambda p: p.name)
            except OSError:
                continue
        hits = [c for c in nxt if (c / MANIFEST_FILE).is_file()]
        if hits:
            return hits
        level = nxt
    return []


def read_manifest_doc(folder: Path) -> JsonDoc:
    return load_json(folder / MANIFEST_FILE)


def read_backend(folder: Path) -> BackendInfo:
    """Read one backend folder; never raises for broken content (see ``problems``)."""
    folder = Path(folder)
    problems: list[BackendProblem] = []
    ours = (folder / PROVENANCE_FILE).is_file()
    if not (folder / MANIFEST_FILE).exists():
        nested = nested_backend_folders(folder)
        if nested:
            rel = nested[0].relative_to(folder).as_posix()
            deep = "two levels" if "/" in rel else "one level"
            problems.append(
                BackendProblem(
                    "manifest-nested",
                    f"{MANIFEST_FILE} is {deep} too deep ({rel}/{MANIFEST_FILE}); LM Studio ignores it",
                )
            )
        else:
            problems.append(BackendProblem("manifest-missing", f"{folder.name} has no {MANIFEST_FILE}"))
        return BackendInfo(folder=folder, ours=ours, problems=tuple(problems))
    try:
        doc = read_manifest_doc(folder)
    except JsonFileError as exc:
        code = {"encoding": "manifest-encoding", "syntax": "manifest-syntax"}.get(exc.kind, "manifest-syntax")
        problems.append(BackendProblem(code, exc.message))
        return BackendInfo(folder=folder, ours=ours, problems=tuple(problems))
    m = doc.data
    if not isinstance(m, dict):
        problems.append(BackendProblem("manifest-not-object", f"{MANIFEST_FILE} is not a JSON object"))
        return BackendInfo(folder=folder, ours=ours, problems=tuple(problems))
    if doc.bom:
        problems.append(BackendProblem("manifest-bom", f"{MANIFEST_FILE} starts with a UTF-8 BOM"))
    missing = [k for k in REQUIRED_FIELDS if k not in m]
    if missing:
        problems.append(BackendProblem("manifest-field-missing", f"{MANIFEST_FILE} lacks {', '.join(missing)}"))
    name, version = _str(m.get("name")), _str(m.get("version"))
    cpu = m.get("cpu") if isinstance(m.get("cpu"), dict) else {}
    gpu = m.get("gpu") if isinstance(m.get("gpu"), dict) else {}
    assert isinstance(cpu, dict) and isinstance(gpu, dict)
    libs = tuple(_str(t.get("name")) for t in m.get("target_libraries") or [] if isinstance(t, dict))
    eps = m.get("engine_protocol_server") if isinstance(m.get("engine_protocol_server"), dict) else {}
    assert isinstance(eps, dict)
    mv = _str(m.get("manifest_version"))
    disp_name, tag, commit, exact = "", None, None, False
    dd_path = folder / DISPLAY_DATA_FILE
    if dd_path.exists():
        try:
            dd = load_json(dd_path)
        except JsonFileError as exc:
            code = {"encoding": "display-data-encoding"}.get(exc.kind, "display-data-syntax")
            problems.append(BackendProblem(code, exc.message))
        else:
            if dd.bom:
                problems.append(BackendProblem("display-data-bom", f"{DISPLAY_DATA_FILE} starts with a UTF-8 BOM"))
            disp_name = display_name(dd.data)
            build = llama_cpp_build(dd.data, version, fallback=False)
            tag, commit, exact = build.tag, build.commit, build.exact
    artifacts: dict[str, Any] | None = None
    if (folder / ARTIFACTS_FILE).exists():
        try:
            art = load_json(folder / ARTIFACTS_FILE)
        except JsonFileError as exc:
            problems.append(BackendProblem("artifacts-unreadable", exc.message))
        else:
            artifacts = art.data if isinstance(art.data, dict) else None
    if name and version and folder.name != f"{name}-{version}":
        problems.append(
            BackendProblem(
                "folder-name-mismatch", f"folder {folder.name} is not named {name}-{version} after its manifest"
            )
        )
    return BackendInfo(
        folder=folder,
        name=name,
        version=version,
        manifest=m,
        manifest_version=mv,
        generation=generation_of(mv, version),
        display_name=disp_name,
        llama_tag=tag,
        llama_commit=commit,
        llama_build_exact=exact,
        platform=_str(m.get("platform")),
        arch=_str(cpu.get("architecture")),
        ise=_strs(cpu.get("instruction_set_extensions")),
        gpu_make=_str(gpu.get("make")),
        gpu_framework=_str(gpu.get("framework")),
        gpu_targets=_strs(gpu.get("targets")),
        gpu_min_driver=_str(gpu.get("minimum_driver_version")),
        target_libraries=libs,
        vendor_packages=_strs(m.get("vendor_lib_package_names")),
        model_formats=_strs(m.get("supported_model_formats")),
        server_relpath=_str(eps.get("executable_relative_path")),
        minimum_lmstudio_version=_str(m.get("minimum_lmstudio_version")),
        artifacts=artifacts,
        ours=ours,
        manifest_bom=doc.bom,
        problems=tuple(problems),
    )


def backend_folders(home: LmsHome | Path | str) -> list[Path]:
    """Every sub-folder of ``extensions/backends`` except ``vendor/``, sorted by name."""
    bdir = as_home(home).backends_dir
    try:
        children = sorted(bdir.iterdir(), key=lambda p: p.name)
    except (FileNotFoundError, NotADirectoryError):
        return []
    return [c for c in children if c.name != VENDOR_DIR and c.is_dir()]


def list_backends(home: LmsHome | Path | str) -> list[BackendInfo]:
    """Every backend folder LM Studio would consider, broken ones included (with problems)."""
    return [read_backend(f) for f in backend_folders(home)]


def split_ident(ident: str) -> tuple[str, str | None]:
    name, sep, version = ident.partition("@")
    return name.strip(), (version.strip() or None) if sep else None


def find_backend(home: LmsHome | Path | str, ident: str) -> BackendInfo:
    """The backend ``name@version`` (or ``name`` when only one version exists).

    Raises :class:`BackendNotFound` or :class:`AmbiguousBackend` (several folders or versions).
    """
    name, version = split_ident(ident)
    backends = list_backends(home)
    hits = [b for b in backends if b.name == name and (version is None or b.version == version)]
    if not hits:
        known = ", ".join(sorted({b.ident for b in backends if b.ident})) or "none"
        raise BackendNotFound(
            f"no backend {ident} in {as_home(home).backends_dir}",
            hint=f"installed backends: {known} (see `lms-unlocked list`)",
        )
    if len(hits) > 1:
        if version is None and len({b.version for b in hits}) > 1:
            raise AmbiguousBackend(
                f"{name} is installed in several versions",
                hint="add the version: " + ", ".join(sorted(b.ident for b in hits)),
            )
        raise AmbiguousBackend(
            f"{hits[0].ident} is in several folders: " + ", ".join(b.folder.name for b in hits),
            hint="LM Studio cannot tell them apart; run `lms-unlocked doctor` to move the extra copies out",
        )
    return hits[0]
