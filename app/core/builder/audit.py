"""Static ISA audit: which x86 instruction-set extensions does each binary of a backend folder use?

Each executable section of an ELF (Linux) or PE (Windows) x86-64 binary is disassembled with capstone
(linear sweep, Intel syntax) and every instruction is counted under the *oldest* extension that has it
(docs/llama-build-notes.md §4):

- AVX512: zmm operands, opmask registers (``{k1}``, ``k0``-``k7``), EVEX-only registers x/ymm16-31,
  EVEX-only mnemonics (vpternlog, vpermt2, ...).
- F16C: vcvtph2ps/vcvtps2ph.  FMA: vf[n]madd*/vf[n]msub*/vfmaddsub*/vfmsubadd*.
- BMI2: shlx sarx shrx rorx pdep pext bzhi mulx.  BMI1: andn bextr blsi blsmsk blsr.
- AVX2: vpbroadcast*, vbroadcasti128, vperm2i128, vpermq/d/ps/pd, vinserti128/vextracti128, gathers,
  vpmaskmov*, vpblendd, vps{l,r}lv*, vpsravd, register-source vbroadcastss/sd, other vp* ops on ymm.
- AVX: every other VEX instruction (xmm/ymm), vzeroupper/vzeroall.
- SSE4.2, SSE4.1, SSSE3, SSE3, POPCNT, LZCNT by mnemonic.
- TZCNT is reported on its own: compilers emit ``rep bsf`` (which decodes as tzcnt) where the result is
  the same on CPUs without BMI1, which execute it as ``bsf``. It is never a violation.

Which binaries count (`counts_for_target`): what is built from llama.cpp (ggml*, llama*, mtmd*,
llama-server*). LM Studio's own files (``*.node``, ``llm_engine*``, ``lmstudiocore*``) and runtime
DLLs (MSVC, CUDA) are audited and reported but are not ours to judge: they select code paths with
CPUID at run time. A small whitelist covers benign hits in counted files (miniaudio's lzcnt in mtmd,
behind a CPUID check).
"""

from __future__ import annotations

import fnmatch
import os
import re
import struct
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import capstone

from app.core.builder.dispatch import (
    Image,
    analyse_guards,
    direct_reference,
    elf_image,
    pe_image,
    rip_target,
    store_extent,
)
from app.core.errors import UnlockedError
from app.core.hardware.report import ISA_ORDER

# Extensions we count, oldest first: the CPU's canonical names (ISA_ORDER) up to AVX2, with the bit-manipulation
# extras a compiler emits without being asked (POPCNT, LZCNT, TZCNT) after SSE4.2, and AVX-512 as one family.
_TO_AVX2 = ISA_ORDER[: ISA_ORDER.index("AVX2") + 1]
_AFTER_SSE42 = _TO_AVX2.index("SSE4.2") + 1
EXTENSIONS: tuple[str, ...] = (*_TO_AVX2[:_AFTER_SSE42], "POPCNT", "LZCNT", "TZCNT", *_TO_AVX2[_AFTER_SSE42:], "AVX512")
# Reported but never a violation (see module docstring).
ALWAYS_BENIGN: frozenset[str] = frozenset({"TZCNT"})

# (file-name glob, extension, reason): hits that do not make a file unusable on a CPU without them.
BENIGN_HITS: tuple[tuple[str, str, str], ...] = (
    ("*mtmd*", "LZCNT", "miniaudio's dr_flac uses lzcnt only after a CPUID check"),
)

# Globs (lower-case file names) of binaries built from llama.cpp: these are judged.
COUNTED_GLOBS: tuple[str, ...] = (
    "libggml*",
    "ggml*",
    "libllama*",
    "llama*",
    "libmtmd*",
    "mtmd*",
)
# LM Studio's own and third-party runtime files that are never judged (reported only).
NOT_COUNTED_GLOBS: tuple[str, ...] = (
    "*.node",
    "*llm_engine*",
    "*lmstudio*",
    "msvcp*",
    "vcruntime*",
    "vcomp*",
    "*cudart*",
    "*cublas*",
    "libggml_llamacpp*",  # LM Studio's renamed ggml; judged only when we replace it (then it is ours again)
)

_SIMPLE: dict[str, str] = {}
for _ext, _names in {
    "SSE3": "addsubps addsubpd haddps haddpd hsubps hsubpd lddqu movddup movshdup movsldup fisttp",
    "SSSE3": "pshufb phaddw phaddd phaddsw phsubw phsubd phsubsw pmaddubsw pmulhrsw psignb psignw psignd "
    "pabsb pabsw pabsd palignr",
    "SSE4.1": "pmulld ptest pblendw pblendvb blendps blendpd blendvps blendvpd roundps roundpd roundss roundsd "
    "pmovsxbw pmovsxbd pmovsxbq pmovsxwd pmovsxwq pmovsxdq pmovzxbw pmovzxbd pmovzxbq pmovzxwd pmovzxwq "
    "pmovzxdq pminsb pminsd pminud pminuw pmaxsb pmaxsd pmaxud pmaxuw pextrb pextrd pextrq pinsrb pinsrd "
    "pinsrq extractps insertps dpps dppd mpsadbw phminposuw packusdw pcmpeqq movntdqa pmuldq",
    "SSE4.2": "crc32 pcmpestri pcmpestrm pcmpistri pcmpistrm pcmpgtq",
    "POPCNT": "popcnt",
    "LZCNT": "lzcnt",
    "TZCNT": "tzcnt",
    "BMI1": "andn bextr blsi blsmsk blsr",
    "BMI2": "shlx sarx shrx rorx pdep pext bzhi mulx",
    "F16C": "vcvtph2ps vcvtps2ph",
    "AVX": "vzeroupper vzeroall vperm2f128 vpermilps vpermilpd vptest vtestps vtestpd vbroadcastf128 "
    "vinsertf128 vextractf128 vmaskmovps vmaskmovpd vldmxcsr vstmxcsr",
    "AVX2": "vbroadcasti128 vperm2i128 vpermq vpermd vpermps vpermpd vinserti128 vextracti128 vpblendd "
    "vpsllvd vpsllvq vpsrlvd vpsrlvq vpsravd vpmaskmovd vpmaskmovq",
}.items():
    for _n in _names.split():
        _SIMPLE[_n] = _ext

_FMA_RE = re.compile(r"^vf(n?m(add|sub)|maddsub|msubadd)")
_AVX512_REG_RE = re.compile(r"\bzmm\d|\{k[0-7]\}|\b[xy]mm(1[6-9]|2\d|3[01])\b|\bk[0-7]\b")
_AVX512_MNEMONIC_RE = re.compile(
    r"^(k(mov|and|or|xor|not|shift|test|add|unpck)|vpternlog|vperm[ti]2|vpcompress|vcompress|vpexpand|vexpand|"
    r"vpmov(q[dwb]|d[wb]|wb|s[qdw][dwb]|us[qdw][dwb]|m2|[bwdq]2m)|vcvt(t?ps2u?qq|t?pd2u?qq|u?qq2p|t?p[sd]2udq|udq2p|usi2|t?s[sd]2usi)|vrcp14|vrsqrt14|"
    r"vrndscale|vgetexp|vgetmant|vscalef|vfixupimm|vpconflict|vplzcnt|vdbpsadbw|vpermw|vpermb|vpmultishift|"
    r"valign[dq]|vshuf[if](32x4|64x2)|vinsert[if](32x4|64x2|32x8|64x4)|vextract[if](32x4|64x2|32x8|64x4)|"
    r"vbroadcast[if](32x[248]|64x[24])|vpbroadcastm|vpmadd52|vpdpbusd|vpdpwssd|vcvtne2ps2bf16|vdpbf16ps|"
    r"vpshld|vpshrd|vpopcnt|vpsra[q]|vpabsq|vpmaxsq|vpminsq|vpmaxuq|vpminuq|vpmullq|vpror|vprol|vpcmpu?[bwdq]\b|"
    r"vfpclass|vrange|vreduce)"
)
_VBROADCAST_REG_SRC_RE = re.compile(r",\s*xmm\d+$")


def classify(mnemonic: str, op_str: str) -> str | None:
    """The extension an instruction belongs to (oldest first), or None for baseline x86-64 (SSE2)."""
    m = mnemonic
    if m.startswith(("rep ", "repne ", "lock ", "notrack ", "bnd ")):
        m = m.split(" ", 1)[1]
    if m.startswith("v") or m.startswith("k"):
        if _AVX512_REG_RE.search(op_str) or _AVX512_MNEMONIC_RE.match(m):
            return "AVX512"
        if not m.startswith("v") or m in ("verr", "verw"):
            return None
        simple = _SIMPLE.get(m)
        if simple is not None:
            return simple
        if _FMA_RE.match(m):
            return "FMA"
        if m.startswith(("vpbroadcast", "vpgather", "vgather")):
            return "AVX2"
        if m in ("vbroadcastss", "vbroadcastsd"):
            return "AVX2" if _VBROADCAST_REG_SRC_RE.search(op_str) else "AVX"
        if m.startswith("vp") and "ymm" in op_str and not m.startswith("vpclmul"):
            return "AVX2"
        return "AVX"
    return _SIMPLE.get(m)


class AuditError(UnlockedError):
    code = "audit-failed"


@dataclass(frozen=True)
class BinaryAudit:
    """What one binary uses. `counts` maps extension -> number of instructions (only non-zero ones)."""

    path: str  # relative to the audited folder (or the file name for a single file)
    format: str  # "ELF" or "PE"
    machine: str  # "x86_64", or what it is when not auditable
    code_bytes: int
    instructions: int
    counts: dict[str, int] = field(default_factory=dict)
    # A few of the most frequent mnemonics per extension, for messages ("vpbroadcastd 812, vpermq 90").
    top_mnemonics: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    seconds: float = 0.0
    counted: bool = True  # judged against the target CPU (built from llama.cpp)
    skipped: str = ""  # why it was not disassembled (other architecture), else ""
    # Of `counts`, how many run only after a CPU-feature flag test (runtime dispatch; app.core.builder.dispatch).
    guarded: dict[str, int] = field(default_factory=dict)
    top_unguarded: dict[str, list[tuple[str, int]]] = field(default_factory=dict)
    guard_stats: dict[str, int] = field(default_factory=dict)  # flags found, roots, flag tests, ...

    def uses(self, extension: str) -> int:
        return self.counts.get(extension, 0)

    def unguarded(self, extension: str) -> int:
        """Instructions of `extension` a CPU may execute without having passed a feature check."""
        return self.counts.get(extension, 0) - self.guarded.get(extension, 0)


@dataclass(frozen=True)
class FolderAudit:
    folder: str
    binaries: tuple[BinaryAudit, ...]
    seconds: float = 0.0

    def get(self, rel_path: str) -> BinaryAudit:
        for b in self.binaries:
            if b.path == rel_path:
                return b
        raise KeyError(rel_path)

    def totals(self, *, counted_only: bool = True) -> dict[str, int]:
        c: Counter[str] = Counter()
        for b in self.binaries:
            if b.counted or not counted_only:
                c.update(b.counts)
        return dict(c)


@dataclass(frozen=True)
class Violation:
    file: str
    extension: str
    count: int  # instructions outside any CPU-feature check
    examples: tuple[str, ...] = ()
    guarded: int = 0  # further instructions of this extension behind a CPU-feature check (no violation)

    def describe(self) -> str:
        ex = f" (e.g. {', '.join(self.examples)})" if self.examples else ""
        g = f"; {self.guarded} more behind a CPU check" if self.guarded else ""
        return f"{self.file} uses {self.count} {self.extension} instructions outside any CPU check{ex}{g}"


# --- reading executable sections -------------------------------------------------------------------------------


def _elf_sections(data: bytes) -> tuple[str, list[tuple[int, bytes]]]:
    if data[4] != 2 or data[5] != 1:  # ELFCLASS64, little-endian
        return ("elf32/be", [])
    e_machine = struct.unpack_from("<H", data, 18)[0]
    if e_machine != 62:  # EM_X86_64
        return (f"e_machine={e_machine}", [])
    e_shoff = struct.unpack_from("<Q", data, 0x28)[0]
    e_shentsize, e_shnum = struct.unpack_from("<HH", data, 0x3A)
    out: list[tuple[int, bytes]] = []
    for i in range(e_shnum):
        off = e_shoff + i * e_shentsize
        if off + 64 > len(data):
            break
        _name, sh_type, sh_flags, sh_addr, sh_offset, sh_size = struct.unpack_from("<IIQQQQ", data, off)
        if sh_type == 1 and sh_flags & 0x4 and sh_size:  # SHT_PROGBITS, SHF_EXECINSTR
            out.append((sh_addr, data[sh_offset : sh_offset + sh_size]))
    return ("x86_64", out)


def _read_elf(data: bytes) -> tuple[str, list[tuple[int, bytes]], Callable[[], Image] | None]:
    machine, sections = _elf_sections(data)
    return (machine, sections, (lambda: elf_image(data, sections)) if machine == "x86_64" else None)


def _read_pe(data: bytes) -> tuple[str, list[tuple[int, bytes]], Callable[[], Image] | None]:
    import pefile

    pe = pefile.PE(data=data, fast_load=True)
    machine = pe.FILE_HEADER.Machine
    if machine != 0x8664:
        pe.close()
        return (f"machine=0x{machine:04x}", [], None)
    out: list[tuple[int, bytes]] = []
    for s in pe.sections:
        if s.Characteristics & 0x20000000:  # IMAGE_SCN_MEM_EXECUTE
            raw = s.get_data()
            size = min(len(raw), s.Misc_VirtualSize or len(raw))
            out.append((pe.OPTIONAL_HEADER.ImageBase + s.VirtualAddress, raw[:size]))

    def image() -> Image:
        try:
            return pe_image(pe, out)
        finally:
            pe.close()

    return ("x86_64", out, image)


def binary_format(path: Path) -> str | None:
    """ "ELF", "PE" or None, from the magic bytes (symlinks and non-binaries give None)."""
    if path.is_symlink() or not path.is_file():
        return None
    try:
        with open(path, "rb") as f:
            head = f.read(64)
            if head[:4] == b"\x7fELF":
                return "ELF"
            if head[:2] == b"MZ" and len(head) >= 64:
                pe_off = struct.unpack_from("<I", head, 0x3C)[0]
                f.seek(pe_off)
                if f.read(4) == b"PE\0\0":
                    return "PE"
    except OSError:
        return None
    return None


def _disassemble(sections: Iterable[tuple[int, bytes]]) -> Iterator[list[tuple[int, int, str, str]]]:
    """Linear sweep: one list of (address, size, mnemonic, operands) per section."""
    md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
    md.skipdata = True  # step over bytes that are not instructions (jump tables, padding) instead of stopping
    for addr, code in sections:
        yield list(md.disasm_lite(code, addr))


def audit_binary(
    path: Path | str, *, rel_path: str | None = None, counted: bool | None = None, dispatch: bool = True
) -> BinaryAudit:
    """Disassemble every executable section of one ELF or PE x86-64 file and count extensions.

    With `dispatch` (default), instructions reached only after a CPU-feature flag test are counted in
    `guarded` as well (see `app.core.builder.dispatch`).

    Raises:
        AuditError: not an ELF/PE file, or unreadable.
    """
    p = Path(path)
    start = time.monotonic()
    fmt = binary_format(p)
    if fmt is None:
        raise AuditError(
            f"{p.name} is not an ELF or PE binary.", context=str(p), hint="Give a .so/.dll/.exe or a backend folder."
        )
    try:
        data = p.read_bytes()
        machine, sections, image_of = _read_elf(data) if fmt == "ELF" else _read_pe(data)
    except (OSError, struct.error, IndexError) as exc:
        raise AuditError(f"Could not read {p.name}: {exc}", context=str(p)) from exc
    except Exception as exc:  # pefile.PEFormatError and friends
        raise AuditError(f"Could not parse {p.name} as {fmt}: {exc}", context=str(p)) from exc
    name = rel_path or p.name
    is_counted = counts_for_target(name) if counted is None else counted
    if machine != "x86_64" or image_of is None:
        return BinaryAudit(
            name,
            fmt,
            machine,
            0,
            0,
            seconds=time.monotonic() - start,
            counted=is_counted,
            skipped=f"not x86-64 ({machine})",
        )
    per_ext: dict[str, Counter[str]] = {}
    n = 0
    cache: dict[tuple[str, str], str | None] = {}
    # For the dispatch analysis: where each judged instruction is, where cpuid/xgetbv are, what code names what.
    sites: dict[int, tuple[str, str]] = {}
    cpuid: list[int] = []
    referenced: set[int] = set()
    calls: dict[int, list[int]] = {}
    written: dict[int, int] = {}  # global -> bytes a store (or a taken address) may change from there
    swept: list[list[tuple[int, int, str, str]]] = []
    for insns in _disassemble(sections):
        swept.append(insns)
        n += len(insns)
        for addr, size, mnemonic, op_str in insns:
            c = mnemonic[0]
            if "rip" in op_str:
                # Globals named by code, with how much a store to them (or a taken address) may change; a
                # zero-initialised one nothing changes stays 0. Reads count 0 bytes (they bound taken addresses).
                t = rip_target(op_str, addr + size)
                if t is not None:
                    first = op_str.split(", ", 1)[0]
                    changed = 0
                    if mnemonic == "lea" or ("[rip" in first and mnemonic not in _READS_ONLY):
                        changed = store_extent(mnemonic, first)
                    if changed or t not in written:
                        written[t] = max(written.get(t, 0), changed)
            if c in "cjl":
                if c == "c" and mnemonic == "cpuid":
                    cpuid.append(addr)
                else:
                    target = direct_reference(mnemonic, op_str, addr + size)
                    if target is not None:
                        referenced.add(target)
                        if mnemonic == "call":
                            calls.setdefault(target, []).append(addr)
            elif c == "x" and mnemonic == "xgetbv":
                cpuid.append(addr)
            # The op string matters only for v*/k* mnemonics; cache on (mnemonic, register kinds).
            key = (mnemonic, _op_key(op_str) if c in ("v", "k") else "")
            ext = cache.get(key, "?")
            if ext == "?":
                ext = classify(mnemonic, op_str)
                cache[key] = ext
            if ext is not None:
                per_ext.setdefault(ext, Counter())[mnemonic] += 1
                if ext not in ALWAYS_BENIGN:
                    sites[addr] = (ext, mnemonic)
    counts = {e: sum(per_ext[e].values()) for e in EXTENSIONS if e in per_ext}
    top = {e: per_ext[e].most_common(4) for e in counts}
    guarded: dict[str, int] = {}
    guard_stats: dict[str, int] = {}
    top_unguarded: dict[str, list[tuple[str, int]]] = {}
    if dispatch and sites:
        res = analyse_guards(image_of(), sites, cpuid, referenced, calls, swept, written)
        guard_stats = res.stats
        g: Counter[str] = Counter()
        ung: dict[str, Counter[str]] = {}
        for addr, (ext, mnemonic) in sites.items():
            if addr in res.guarded:
                g[ext] += 1
            else:
                ung.setdefault(ext, Counter())[mnemonic] += 1
        guarded = {e: g[e] for e in EXTENSIONS if g[e]}
        top_unguarded = {e: ung[e].most_common(4) for e in EXTENSIONS if e in ung}
    else:
        top_unguarded = {e: top[e] for e in top if e not in ALWAYS_BENIGN}
    code_bytes = sum(len(c) for _, c in sections)
    return BinaryAudit(
        name,
        fmt,
        machine,
        code_bytes,
        n,
        counts,
        top,
        time.monotonic() - start,
        is_counted,
        guarded=guarded,
        top_unguarded=top_unguarded,
        guard_stats=guard_stats,
    )


_READS_ONLY = frozenset({"cmp", "test", "bt", "push", "call", "jmp"})
_OPKEY_RE = re.compile(r"zmm|ymm|xmm(?:1[6-9]|2\d|3[01])|\{k|\bk[0-7]\b|,\s*xmm\d+$")


def _op_key(op_str: str) -> str:
    return "|".join(_OPKEY_RE.findall(op_str))


def counts_for_target(rel_path: str) -> bool:
    """True for binaries built from llama.cpp (judged against the target CPU)."""
    name = os.path.basename(rel_path).lower()
    if any(fnmatch.fnmatch(name, g) for g in NOT_COUNTED_GLOBS):
        return False
    return any(fnmatch.fnmatch(name, g) for g in COUNTED_GLOBS)


def find_binaries(folder: Path) -> list[Path]:
    """Every ELF/PE regular file under `folder` (symlinks are not followed: their targets are listed)."""
    out: list[Path] = []
    for root, dirs, files in os.walk(folder):
        dirs.sort()
        for f in sorted(files):
            p = Path(root) / f
            if binary_format(p) is not None:
                out.append(p)
    return out


def _audit_one(args: tuple[str, str]) -> BinaryAudit:
    return audit_binary(args[0], rel_path=args[1])


def audit_folder(
    folder: Path | str,
    *,
    jobs: int | None = None,
    on_file: Callable[[BinaryAudit], None] | None = None,
    include: Callable[[str], bool] | None = None,
) -> FolderAudit:
    """Audit every ELF/PE binary in a folder (recursively), in parallel processes (`jobs`, default CPUs≤4).

    `include(rel_path)` may restrict which files are disassembled (e.g. only counted ones).
    """
    root = Path(folder)
    if not root.is_dir():
        if root.is_file():
            b = audit_binary(root, counted=True)  # a file named on its own is always judged
            return FolderAudit(str(root), (b,), b.seconds)
        raise AuditError(f"{root} does not exist.", context=str(root), hint="Give a backend folder or a binary.")
    start = time.monotonic()
    work = [(str(p), p.relative_to(root).as_posix()) for p in find_binaries(root)]
    if include is not None:
        work = [w for w in work if include(w[1])]
    # Largest first, so one big library does not end up alone at the tail.
    work.sort(key=lambda w: -os.path.getsize(w[0]))
    if jobs is None:
        # Process start-up costs more than it saves on a small folder (measured: 5 libs, 9 MB: 1.1 s vs 1.3 s).
        total = sum(os.path.getsize(w[0]) for w in work)
        jobs = 1 if total < 32 * 1024 * 1024 else min(os.cpu_count() or 1, 4)
    n_jobs = max(1, min(jobs, len(work) or 1))
    results: list[BinaryAudit] = []
    if n_jobs == 1 or len(work) < 2:
        for w in work:
            results.append(_audit_one(w))
            if on_file:
                on_file(results[-1])
    else:
        with ProcessPoolExecutor(max_workers=n_jobs) as ex:
            for b in ex.map(_audit_one, work):
                results.append(b)
                if on_file:
                    on_file(b)
    results.sort(key=lambda b: b.path)
    return FolderAudit(str(root), tuple(results), time.monotonic() - start)


def describe_count(b: BinaryAudit, extension: str) -> str:
    """ "AVX2 38" or "AVX2 38 (all behind a CPU check)" / "(12 behind a CPU check)"."""
    n, g = b.uses(extension), b.guarded.get(extension, 0)
    if not g:
        return f"{extension} {n}"
    return f"{extension} {n} ({'all' if g == n else g} behind a CPU check)"


def benign_reason(rel_path: str, extension: str) -> str | None:
    if extension in ALWAYS_BENIGN:
        return "tzcnt is encoded as rep bsf and runs as bsf on CPUs without BMI1"
    name = os.path.basename(rel_path).lower()
    for glob, ext, reason in BENIGN_HITS:
        if ext == extension and fnmatch.fnmatch(name, glob):
            return reason
    return None


def audit_violations(folder_audit: FolderAudit, usable_isa: Iterable[str]) -> list[Violation]:
    """Extensions that counted binaries use but the target CPU lacks (benign hits excluded).

    `usable_isa` uses the canonical names of `HardwareReport.cpu.isa` ("AVX", "AVX512F", ...) or
    this module's; use `usable_extensions()` to convert a CPU's ISA list / Linux flags.
    """
    usable = usable_extensions(usable_isa)
    out: list[Violation] = []
    for b in folder_audit.binaries:
        if not b.counted:
            continue
        for ext in b.counts:
            count = b.unguarded(ext)
            if count <= 0 or ext in usable or benign_reason(b.path, ext):
                continue
            examples = tuple(f"{m} ×{n}" for m, n in b.top_unguarded.get(ext, b.top_mnemonics.get(ext, []))[:3])
            out.append(Violation(b.path, ext, count, examples, b.guarded.get(ext, 0)))
    return out


_FLAG_TO_EXT: Mapping[str, str] = {
    # Linux /proc/cpuinfo flag -> extension
    "pni": "SSE3",
    "sse3": "SSE3",
    "ssse3": "SSSE3",
    "sse4_1": "SSE4.1",
    "sse4_2": "SSE4.2",
    "popcnt": "POPCNT",
    "abm": "LZCNT",
    "lzcnt": "LZCNT",
    "avx": "AVX",
    "f16c": "F16C",
    "fma": "FMA",
    "bmi1": "BMI1",
    "bmi2": "BMI2",
    "avx2": "AVX2",
    "avx512f": "AVX512",
    # canonical HardwareReport names
    "SSE4.1": "SSE4.1",
    "SSE4.2": "SSE4.2",
    "AVX512F": "AVX512",
}


def usable_extensions(isa_or_flags: Iterable[str]) -> frozenset[str]:
    """Map canonical ISA names (SSE4.2, AVX, AVX512F, ...) and/or Linux cpu flags to this module's names.

    POPCNT and LZCNT are implied: every SSE4.2 CPU has POPCNT, and LZCNT (ABM) comes with every
    BMI1 CPU of both vendors (Haswell / Piledriver) — unless given explicitly as flags.
    """
    out: set[str] = set()
    for x in isa_or_flags:
        if x in EXTENSIONS:
            out.add(x)
        mapped = _FLAG_TO_EXT.get(x) or _FLAG_TO_EXT.get(x.lower())
        if mapped:
            out.add(mapped)
    if "SSE4.2" in out:
        out.add("POPCNT")
    if "BMI1" in out:
        out.add("LZCNT")
    if "SSE4.2" in out:
        out.update({"SSE3", "SSSE3", "SSE4.1"})
    if "AVX" in out:
        out.update({"SSE3", "SSSE3", "SSE4.1", "SSE4.2", "POPCNT"})
    return frozenset(out)
