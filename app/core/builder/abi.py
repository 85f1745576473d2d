"""ABI guard: every symbol the kept binaries import from the swapped libraries must be exported by the new ones.

- ELF (pyelftools): a kept binary's undefined dynamic symbols that the *template's* swapped libraries defined
  must be defined by the new swapped libraries (ELF imports do not say which library provides them, so the
  template tells us which imports the swapped libraries were serving).
- PE (pefile): a kept binary's import table names the DLL; every name imported from a swapped DLL must be in
  the new DLL's export table (ordinal-only imports must exist as ordinals).
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from app.core.builder.audit import binary_format, find_binaries
from app.core.errors import UnlockedError


class AbiError(UnlockedError):
    code = "abi-mismatch"


@dataclass(frozen=True)
class MissingSymbol:
    importer: str  # kept binary (relative path)
    library: str  # swapped library it expects the symbol from (file name; for ELF the template's provider)
    symbol: str


def _elf_dynsyms(path: Path) -> tuple[frozenset[str], frozenset[str]]:
    """(defined exported, undefined) dynamic symbol names of an ELF file."""
    from elftools.elf.elffile import ELFFile

    defined: set[str] = set()
    undefined: set[str] = set()
    with open(path, "rb") as f:
        elf = ELFFile(f)
        dynsym = elf.get_section_by_name(".dynsym")
        if dynsym is None:
            return frozenset(), frozenset()
        for sym in dynsym.iter_symbols():  # type: ignore[attr-defined]
            if not sym.name:
                continue
            bind = sym["st_info"]["bind"]
            if bind not in ("STB_GLOBAL", "STB_WEAK", "STB_GNU_UNIQUE"):
                continue
            if sym["st_shndx"] == "SHN_UNDEF":
                undefined.add(sym.name)
            elif sym["st_other"]["visibility"] in ("STV_DEFAULT", "STV_PROTECTED"):
                defined.add(sym.name)
    return frozenset(defined), frozenset(undefined)


def _pe_exports(path: Path) -> frozenset[str]:
    import pefile

    pe = pefile.PE(str(path), fast_load=True)
    try:
        pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_EXPORT"]])
        out: set[str] = set()
        exp = getattr(pe, "DIRECTORY_ENTRY_EXPORT", None)
        if exp is not None:
            for s in exp.symbols:
                if s.name:
                    out.add(s.name.decode("ascii", "replace"))
                out.add(f"#{s.ordinal}")
        return frozenset(out)
    finally:
        pe.close()


def _pe_imports(path: Path) -> dict[str, frozenset[str]]:
    import pefile

    pe = pefile.PE(str(path), fast_load=True)
    try:
        pe.parse_data_directories(directories=[pefile.DIRECTORY_ENTRY["IMAGE_DIRECTORY_ENTRY_IMPORT"]])
        out: dict[str, set[str]] = {}
        for entry in getattr(pe, "DIRECTORY_ENTRY_IMPORT", []):
            dll = entry.dll.decode("ascii", "replace").lower()
            names = out.setdefault(dll, set())
            for imp in entry.imports:
                names.add(imp.name.decode("ascii", "replace") if imp.name else f"#{imp.ordinal}")
        return {k: frozenset(v) for k, v in out.items()}
    finally:
        pe.close()


# Runtime DLLs of GNU/MinGW toolchains: a Windows backend must not need them (they are not in LM Studio's folder).
COMPILER_RUNTIME_DLLS = frozenset(
    {"libstdc++-6.dll", "libgcc_s_seh-1.dll", "libwinpthread-1.dll", "libgomp-1.dll", "libc++.dll", "libunwind.dll"}
)


def foreign_runtime_imports(folder: Path, rels: Iterable[str]) -> list[tuple[str, str]]:
    """(file, dll) for each PE among `rels` that imports a compiler runtime DLL the folder does not hold."""
    have = {p.name.lower() for p in Path(folder).iterdir()}
    out: list[tuple[str, str]] = []
    for rel in rels:
        p = Path(folder) / rel
        if binary_format(p) != "PE":
            continue
        for dll in sorted(_pe_imports(p)):
            if dll in COMPILER_RUNTIME_DLLS and dll not in have:
                out.append((rel, dll))
    return out


def exported_symbols(path: Path) -> frozenset[str]:
    fmt = binary_format(path)
    if fmt == "ELF":
        return _elf_dynsyms(path)[0]
    if fmt == "PE":
        return _pe_exports(path)
    return frozenset()


def check_abi(
    new_folder: Path,
    swapped: Iterable[str],
    *,
    template_folder: Path | None = None,
) -> list[MissingSymbol]:
    """Symbols kept binaries import from the swapped libraries that the new libraries do not export.

    Args:
        new_folder: the packaged folder (kept binaries + new libraries).
        swapped: relative paths (real files, not symlinks) of the libraries that were replaced.
        template_folder: the template the folder was cloned from (required for ELF: it says which imports
            the swapped libraries served).
    """
    new_folder = Path(new_folder)
    swapped_rel = sorted({Path(s).as_posix() for s in swapped})
    swapped_real = {os.path.realpath(new_folder / s) for s in swapped_rel}
    kept = [p for p in find_binaries(new_folder) if os.path.realpath(p) not in swapped_real]
    missing: list[MissingSymbol] = []
    elf_swapped = [s for s in swapped_rel if binary_format(new_folder / s) == "ELF"]
    pe_swapped = {Path(s).name.lower(): s for s in swapped_rel if binary_format(new_folder / s) == "PE"}
    if elf_swapped:
        if template_folder is None:
            raise AbiError("The ELF ABI check needs the template folder.", hint="Pass template_folder.")
        new_exports: set[str] = set()
        for s in elf_swapped:
            new_exports |= _elf_dynsyms(new_folder / s)[0]
        old_provider: dict[str, str] = {}
        for s in elf_swapped:
            old = template_folder / s
            if binary_format(old) == "ELF":
                for sym in _elf_dynsyms(old)[0]:
                    old_provider.setdefault(sym, Path(s).name)
        for k in kept:
            if binary_format(k) != "ELF":
                continue
            _d, undefined = _elf_dynsyms(k)
            for sym in sorted(undefined):
                if sym in old_provider and sym not in new_exports:
                    missing.append(MissingSymbol(k.relative_to(new_folder).as_posix(), old_provider[sym], sym))
    if pe_swapped:
        exports: Mapping[str, frozenset[str]] = {n: _pe_exports(new_folder / r) for n, r in pe_swapped.items()}
        for k in kept:
            if binary_format(k) != "PE":
                continue
            for dll, names in _pe_imports(k).items():
                if dll in exports:
                    for sym in sorted(names - exports[dll]):
                        missing.append(MissingSymbol(k.relative_to(new_folder).as_posix(), pe_swapped[dll], sym))
    return missing


def require_abi(missing: list[MissingSymbol], *, folder: Path) -> None:
    if not missing:
        return
    shown = "\n".join(f"{m.importer}: {m.symbol} (from {m.library})" for m in missing[:50])
    more = f"\n… and {len(missing) - 50} more" if len(missing) > 50 else ""
    raise AbiError(
        f"The new libraries do not export {len(missing)} symbol(s) that LM Studio's kept binaries import.",
        context=str(folder),
        hint="The libraries were built from a different llama.cpp version than the template: build from the "
        "template's tag (see display-data.json release notes).",
        details=shown + more,
    )
