"""Package a build as an LM Studio backend folder cloned from an official template.

1. Clone the template (LM Studio's files byte-identical, symlinks kept) through
   ``app.core.lmstudio.clone.clone_template``, replacing only the swappable libraries
   (docs/lmstudio-contract.md §9.1): the file a template name such as ``libggml-cpu.so`` finally points to
   gets the new bytes, so names and symlinks stay as LM Studio shipped them.
2. Linux: every replaced ELF gets RUNPATH ``$ORIGIN`` (set at build time; patchelf fixes it otherwise) and
   executables/libraries keep their exec bits.
3. ABI guard: the kept binaries' imports from the swapped libraries must all be exported by the new ones.
4. ISA audit: no counted binary may use an instruction set the target CPU lacks.
5. Provenance marker (``unlocked-install.json``).
Any failure removes the half-made folder.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from app.core.builder.abi import MissingSymbol, check_abi, foreign_runtime_imports, require_abi
from app.core.builder.audit import FolderAudit, Violation, audit_folder, audit_violations, binary_format
from app.core.builder.plan import BuildPlan
from app.core.errors import UnlockedError
from app.core.lmstudio.clone import clone_template
from app.core.lmstudio.naming import our_backend_name
from app.core.lmstudio.provenance import write_provenance
from app.core.runner import popen_platform_kwargs


class PackageError(UnlockedError):
    code = "package-failed"


class IsaViolationError(PackageError):
    code = "isa-violation"


@dataclass(frozen=True)
class PackageResult:
    folder: Path
    name: str
    replaced: tuple[str, ...]  # template-relative paths whose bytes were replaced
    audit: FolderAudit
    violations: tuple[Violation, ...] = ()
    abi_missing: tuple[MissingSymbol, ...] = ()
    provenance: dict[str, Any] = field(default_factory=dict)
    server: str | None = None  # relative path of our llama-server when the 2.x server path was replaced


def library_file_names(target: str, platform: str, output_name: str | None = None) -> tuple[str, ...]:
    """Candidate file names of a CMake target's output (first is the canonical one); `output_name` is the
    target's renamed output (plan.output_names), e.g. ggml -> ggml_llamacpp."""
    name = output_name or target
    if target.startswith("llama-") and target != "llama":  # programs
        return (f"{name}.exe",) if platform == "win" else (name,)
    if platform == "win":
        return (f"{name}.dll",)
    if platform == "mac":
        return (f"lib{name}.dylib",)
    return (f"lib{name}.so",)


def _final_file(folder: Path, rel: str) -> Path | None:
    p = folder / rel
    if not p.exists():
        return None
    real = Path(os.path.realpath(p))
    return real if real.is_file() else None


def replacement_map(
    bin_dir: Path,
    template_dir: Path,
    targets: Iterable[str],
    platform: str,
    output_names: dict[str, str] | None = None,
) -> dict[str, Path]:
    """template-relative path -> new file, for every swapped target the template has.

    Raises PackageError when a target's output is missing from the build or from the template.
    """
    out: dict[str, Path] = {}
    for t in targets:
        names = library_file_names(t, platform, (output_names or {}).get(t))
        new = next((_final_file(bin_dir, n) for n in names if _final_file(bin_dir, n)), None)
        if new is None:
            raise PackageError(f"The build has no {names[0]}.", context=str(bin_dir), hint="Re-run the build.")
        tmpl_rel = None
        for n in names:
            # Top level first (a 2.x server sub-folder may hold its own copy of the library).
            hits = sorted(
                (p for p in template_dir.rglob(n) if p.is_file() or p.is_symlink()),
                key=lambda p: (len(p.relative_to(template_dir).parts), str(p)),
            )
            if hits:
                tmpl_rel = hits[0].relative_to(template_dir).as_posix()
                break
        if tmpl_rel is None:
            raise PackageError(
                f"The template has no {names[0]} to replace.",
                context=str(template_dir),
                hint="Pick a template of the same kind (CPU/Vulkan/CUDA) as the variant.",
            )
        real = _final_file(template_dir, tmpl_rel)
        assert real is not None
        out[real.relative_to(Path(os.path.realpath(template_dir))).as_posix()] = new
    return out


def elf_runpath(path: Path) -> str | None:
    from elftools.elf.dynamic import DynamicSection
    from elftools.elf.elffile import ELFFile

    with open(path, "rb") as f:
        elf = ELFFile(f)
        for sec in elf.iter_sections():
            if isinstance(sec, DynamicSection):
                for tag in sec.iter_tags():
                    if tag.entry.d_tag in ("DT_RUNPATH", "DT_RPATH"):
                        attr = "runpath" if tag.entry.d_tag == "DT_RUNPATH" else "rpath"
                        return str(getattr(tag, attr))
    return None


def ensure_origin_runpath(path: Path, *, patchelf: str | None = None) -> bool:
    """Make an ELF's run path exactly ``$ORIGIN``; returns True when it had to be changed."""
    if binary_format(path) != "ELF" or elf_runpath(path) == "$ORIGIN":
        return False
    tool = patchelf or shutil.which("patchelf")
    if tool is None:
        raise PackageError(
            f"{path.name} needs RUNPATH $ORIGIN and patchelf is not installed.", hint="apt-get install patchelf"
        )
    subprocess.run(
        [tool, "--set-rpath", "$ORIGIN", str(path)],
        check=True,
        capture_output=True,
        stdin=subprocess.DEVNULL,
        **popen_platform_kwargs(),
    )
    return True


def _make_executable(path: Path) -> None:
    mode = path.stat().st_mode
    path.chmod(mode | stat.S_IXUSR | stat.S_IXGRP | stat.S_IXOTH)


def package_backend(
    plan: BuildPlan,
    bin_dir: Path,
    template_dir: Path,
    dest_dir: Path,
    *,
    template_name: str,
    template_version: str = "",
    platform: str = "linux",
    usable_isa: Iterable[str] | None = None,
    display_suffix: str | None = None,
    new_name: str | None = None,
    extra_provenance: dict[str, Any] | None = None,
    on_step: Callable[[str], None] | None = None,
    server_subdir: str | None = "unlocked-server",
) -> PackageResult:
    """Clone `template_dir` into `dest_dir` with the build's libraries; guard ABI and ISA; write provenance.

    Args:
        usable_isa: the target CPU's ISA (canonical names); default: what the plan's build needs.
        server_subdir: when the plan builds llama-server (2.x), put it with all its libraries into this
            sub-folder and repoint the manifest's executable_relative_path; None replaces it in place.

    Raises:
        PackageError, AbiError, IsaViolationError (and `dest_dir` is removed again).
    """
    step = on_step or (lambda _s: None)
    name = new_name or our_backend_name(template_name, plan.variant)
    suffix = display_suffix if display_suffix is not None else f"({plan.variant}, lms-unlocked)"
    step("mapping libraries")
    server = "llama-server" in plan.swap_targets
    lib_targets = (
        tuple(t for t in plan.swap_targets if t != "llama-server") if server and server_subdir else (plan.swap_targets)
    )
    repl = replacement_map(Path(bin_dir), Path(template_dir), lib_targets, platform, dict(plan.output_names))
    added: dict[str, Path] = {}
    links: dict[str, str] = {}
    server_rel: str | None = None
    if server and server_subdir:
        # The server and every library it loads go into their own sub-folder (the preferred 2.x layout,
        # docs/lmstudio-contract.md §9.1): it finds them next to itself ($ORIGIN / the exe's folder), LM Studio's
        # files stay untouched.
        exe = "llama-server.exe" if platform == "win" else "llama-server"
        for p in sorted(Path(bin_dir).iterdir()):
            is_lib = ".so" in p.name or p.suffix.lower() in (".dll", ".dylib")
            if p.name == exe or is_lib:
                if p.is_symlink():
                    links[f"{server_subdir}/{p.name}"] = os.readlink(p)
                elif p.is_file():
                    added[f"{server_subdir}/{p.name}"] = p
        if f"{server_subdir}/{exe}" not in added:
            raise PackageError(f"The build has no {exe}.", context=str(bin_dir), hint="Re-run the build.")
        server_rel = f"{server_subdir}/{exe}"
    step("cloning template")
    clone_template(
        Path(template_dir),
        Path(dest_dir),
        new_name=name,
        ise=list(plan.manifest_ise),
        display_suffix=suffix,
        gpu_targets=list(plan.gpu_targets) if plan.gpu_targets else None,
        replace_files={**repl, **added},
        server_relpath=server_rel,
    )
    try:
        for rel, target in links.items():
            os.symlink(target, Path(dest_dir) / rel)
        if platform == "linux":
            step("run paths and exec bits")
            for rel in [*repl, *added]:
                p = Path(dest_dir) / rel
                ensure_origin_runpath(p)
                _make_executable(p)
        step("ABI guard")
        missing = check_abi(Path(dest_dir), [*repl, *added], template_folder=Path(template_dir))
        require_abi(missing, folder=Path(dest_dir))
        foreign = foreign_runtime_imports(Path(dest_dir), [*repl, *added])
        if foreign:
            raise PackageError(
                f"The new libraries need compiler runtime DLLs that LM Studio's folder does not have: "
                f"{', '.join(sorted({d for _f, d in foreign}))}.",
                context=str(dest_dir),
                hint="Link the C/C++ runtime statically (zig does; with mingw-w64 use -static-libgcc "
                "-static-libstdc++ and a static winpthread).",
                details="\n".join(f"{f} imports {d}" for f, d in foreign),
            )
        step("ISA audit")
        fa = audit_folder(dest_dir)
        usable = tuple(usable_isa) if usable_isa is not None else plan.isa
        violations = audit_violations(fa, usable)
        if violations:
            raise IsaViolationError(
                f"The folder uses instruction sets the target CPU lacks: "
                f"{', '.join(sorted({v.extension for v in violations}))}.",
                context=str(dest_dir),
                hint="Build with the variant for this CPU (tailored flags), or use another template.",
                details="\n".join(v.describe() for v in violations),
            )
        step("provenance")
        info: dict[str, Any] = {
            "variant": plan.variant,
            "template": f"{template_name}@{template_version}" if template_version else template_name,
            "llama_cpp_tag": plan.tag,
            "llama_cpp_commit": plan.commit,
            "build_flags": list(plan.cmake_defines),
            "isa": list(plan.isa),
            "gpu_targets": list(plan.gpu_targets),
            "replaced": sorted(repl),
            "added": sorted([*added, *links]),
            "server": server_rel,
            "generic": plan.generic,
            **(extra_provenance or {}),
        }
        prov = write_provenance(Path(dest_dir), info)
    except BaseException:
        shutil.rmtree(dest_dir, ignore_errors=True)
        raise
    return PackageResult(Path(dest_dir), name, tuple(sorted(repl)), fa, (), (), prov, server_rel)
