"""Runtime CPU dispatch: which SIMD instructions of a binary run only after it tested a CPUID-derived flag.

Many programs carry AVX2/FMA/LZCNT code that a CPU without those extensions never executes, because the
program first asks CPUID and branches on the answer: the MSVC runtime fills `__isa_available`/`__favor`
at start-up and its STL vectorised algorithms and FMA3 math test them; GCC's `__builtin_cpu_supports`
reads `__cpu_model` filled by `__cpu_indicator_init`; ifunc resolvers and `target_clones` pick an
implementation the same way. The ISA audit (`app.core.builder.audit`) counts such instructions as
*guarded*: they are no violation. This module decides which instructions are guarded.

Method (static, conservative; docs/audit.md has the worked examples and limits):

1. **Flag globals.** Every `cpuid`/`xgetbv` is followed (linear decode up to `ret`) and every store to a
   RIP-relative global after it marks that global as a CPU-feature flag. When a `cpuid` sits in a helper
   that stores nothing itself (a `cpuid(regs, leaf)` wrapper), the stores after each call of that helper
   count instead. Symbols named like the known flags (`__isa_available`, `__cpu_model`, ...) count too.
2. **Code reached without a flag test.** A recursive-descent walk starts at every entry the binary gives
   away: the entry point, exports (PE export table, ELF dynamic symbols), every pointer into code found in
   the base relocations / ELF relocations (function-pointer tables, vtables, init arrays, ifunc resolvers),
   and every function start (PE `.pdata`, ELF symbols) that no code references directly. It follows
   fall-through, direct jumps, direct calls and RIP-relative `lea` of code addresses, tracking which
   registers hold a value loaded from a flag global. A conditional branch whose condition came from a
   `cmp`/`test`/`bt`/ALU op on a flag (in memory or in such a register) is a *flag test*: the walk does
   not cross it. Everything this walk reaches is unguarded.
3. **Guarded code.** A second walk starts at both successors of every flag test and marks what it reaches
   and the walk 2 did not: guarded. Functions reached only from there (a `__log_fma3` called from `log`
   after its FMA3 check, an AVX2 kernel whose address an ifunc resolver returns after
   `__builtin_cpu_supports`) are guarded with them.
4. An instruction that neither walk reaches (a switch case behind a jump table, bytes between functions)
   is guarded only if it lies inside a function (`.pdata` range / ELF symbol size) whose entry is guarded;
   otherwise it is unguarded.

Limits (all err towards "unguarded", i.e. a reported violation, except the first): both successors of a
flag test are guarded, whichever way the branch goes, so a function that tests a flag and then runs AVX2
code on both paths is misjudged; a flag spilled to the stack or passed as an argument is not followed;
indirect calls and jumps are not resolved (their targets are found through relocations, function starts
and `lea` only).
"""

from __future__ import annotations

import bisect
import itertools
import re
import struct
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field

import capstone

# Globals of well-known dispatchers, by symbol name (ELF symbols; PE images carry none).
KNOWN_FLAG_SYMBOLS: frozenset[str] = frozenset(
    {
        "__isa_available",
        "__isa_enabled",
        "__favor",
        "__use_fma3_lib",
        "__fma3_is_available",
        "__cpu_model",
        "__cpu_features2",
        "_dl_x86_cpu_features",
    }
)

_TERMINATORS = frozenset({"ret", "retf", "jmp", "ljmp", "int3", "ud2", "hlt", "iretq", "iretd"})
_PREFIXES = ("rep ", "repe ", "repz ", "repne ", "repnz ", "lock ", "notrack ", "bnd ")
# Instructions that set EFLAGS from their operands (what a following jcc tests).
_FLAG_SETTERS = frozenset(
    [
        "add",
        "sub",
        "adc",
        "sbb",
        "and",
        "or",
        "xor",
        "cmp",
        "test",
        "inc",
        "dec",
        "neg",
        "shl",
        "shr",
        "sar",
        "sal",
        "rol",
        "ror",
        "rcl",
        "rcr",
        "bt",
        "bts",
        "btr",
        "btc",
        "imul",
        "mul",
        "bsf",
        "bsr",
        "popcnt",
        "lzcnt",
        "tzcnt",
        "andn",
        "bextr",
        "blsi",
        "blsmsk",
        "blsr",
        "ptest",
        "vptest",
        "vtestps",
        "vtestpd",
        "comiss",
        "comisd",
        "ucomiss",
        "ucomisd",
        "vcomiss",
        "vcomisd",
        "vucomiss",
        "vucomisd",
        "cmpxchg",
        "xadd",
    ]
)
_COMPARES = frozenset({"cmp", "test", "bt", "ptest", "vptest"})
# Ops whose result still carries the flag's information when applied to a flag value.
_KEEPS_TAINT = frozenset({"and", "or", "shr", "sar", "shl", "sal", "rol", "ror", "bt", "not", "bts", "btr"})
_STORES = frozenset(
    [
        "mov",
        "or",
        "and",
        "xor",
        "add",
        "sub",
        "bts",
        "btr",
        "btc",
        "inc",
        "dec",
        "movd",
        "movq",
        "movdqa",
        "movdqu",
        "movaps",
        "movups",
        "vmovd",
        "vmovq",
        "vmovdqa",
        "vmovdqu",
        "vmovaps",
        "vmovups",
        "xchg",
    ]
)
_REG_FAMILY: dict[str, str] = {}
for _base in ("a", "b", "c", "d"):
    for _r in (f"r{_base}x", f"e{_base}x", f"{_base}x", f"{_base}l", f"{_base}h"):
        _REG_FAMILY[_r] = f"r{_base}x"
for _base in ("si", "di", "bp", "sp"):
    for _r in (f"r{_base}", f"e{_base}", _base, f"{_base}l"):
        _REG_FAMILY[_r] = f"r{_base}"
for _n in range(8, 16):
    for _r in (f"r{_n}", f"r{_n}d", f"r{_n}w", f"r{_n}b"):
        _REG_FAMILY[_r] = f"r{_n}"
# Caller-saved registers: a call clears their taint (Windows x64 keeps rsi/rdi, System V does not).
_VOLATILE_SYSV = frozenset({"rax", "rcx", "rdx", "rsi", "rdi", "r8", "r9", "r10", "r11"})
_VOLATILE_WIN64 = frozenset({"rax", "rcx", "rdx", "r8", "r9", "r10", "r11"})
# What a mnemonic does to control flow, cached per mnemonic string (prefixes included).
_PLAIN, _CALL, _BRANCH, _END = 0, 1, 2, 3
_CATEGORY: dict[str, int] = {}
_STRIPPED: dict[str, str] = {}


def _category(mnemonic: str) -> int:
    m = _STRIPPED[mnemonic] = strip_prefix(mnemonic)
    if m == "call":
        cat = _CALL
    elif m[0] == "j" or m.startswith("loop"):
        cat = _BRANCH
    elif m in _TERMINATORS:
        cat = _END
    else:
        cat = _PLAIN
    _CATEGORY[mnemonic] = cat
    return cat


_REG_TOKEN_RE = re.compile(r"\b[a-z][a-z0-9]{1,4}\b")
_MEM_RE = re.compile(r"\[(\w+)( \+ \w+\*\d)?(?: ([+-]) (0x[0-9a-f]+|\d+))?\]")
_RIP_RE = re.compile(r"\[rip ([+-]) (0x[0-9a-f]+|\d+)\]")
_SIZE = {"byte": 1, "word": 2, "dword": 4, "qword": 8, "xmmword": 16, "ymmword": 32, "zmmword": 64}
# Conditional branches that read only ZF: True when they jump on ZF=1.
_ZF_BRANCH = {"je": True, "jz": True, "jne": False, "jnz": False}
_MAX_STATES = 4  # taint states explored per address before falling back to "no register holds a flag"
_CHUNK = 24  # instructions decoded per capstone call while following a block (most blocks are shorter)
_FLAG_SCAN = 1500  # instructions decoded after a cpuid while looking for the flag stores


@dataclass
class Image:
    """What the guard analysis needs from one x86-64 binary (filled by the PE/ELF readers in audit.py)."""

    sections: list[tuple[int, bytes]]  # executable sections (virtual address, bytes)
    entries: set[int] = field(default_factory=set)  # entry point, exports: always reachable from outside
    data_refs: set[int] = field(default_factory=set)  # pointers into code stored in data (relocations)
    functions: list[tuple[int, int]] = field(default_factory=list)  # known function (start, end); end may = start
    fragments: list[tuple[int, int]] = field(default_factory=list)  # further parts of functions (chained .pdata)
    flag_symbols: dict[int, int] = field(default_factory=dict)  # address -> size of known flag globals
    # Writable data (start, end, initial bytes; past the bytes: zero) and what the loader writes there
    # (relocation slots) or what pointers in data name (address-taken globals).
    data: list[tuple[int, int, bytes]] = field(default_factory=list)
    pointed: set[int] = field(default_factory=set)
    slots: set[int] = field(default_factory=set)  # relocation slots: 8 bytes the loader writes
    pointers: dict[int, int] = field(default_factory=dict)  # relocated slot -> the data address it holds
    win64: bool = False  # Windows x64 calling convention (PE) rather than System V (ELF)

    def initially_zero(self, addr: int, size: int = 4) -> bool:
        for d0, d1, raw in self.data:
            if d0 <= addr and addr + size <= d1:
                return not any(raw[addr - d0 : addr - d0 + size])
        return False

    def contains(self, addr: int) -> bool:
        return any(a <= addr < a + len(code) for a, code in self.sections)


@dataclass
class GuardResult:
    guarded: set[int]  # addresses (of the asked instructions) judged guarded
    flags: dict[int, int]  # flag global address -> size
    stats: dict[str, int]
    unguarded_blocks: set[int] = field(default_factory=set)  # starts of the blocks walk 2 reached


def strip_prefix(mnemonic: str) -> str:
    while mnemonic.startswith(_PREFIXES):
        mnemonic = mnemonic.split(" ", 1)[1]
    return mnemonic


def rip_target(op_str: str, next_addr: int) -> int | None:
    m = _RIP_RE.search(op_str)
    if m is None:
        return None
    disp = int(m.group(2), 0)
    return next_addr + disp if m.group(1) == "+" else next_addr - disp


def _imm_target(op_str: str) -> int | None:
    if op_str.startswith("0x"):
        try:
            return int(op_str, 16)
        except ValueError:
            return None
    if op_str.isdigit():
        return int(op_str)
    return None


def direct_reference(mnemonic: str, op_str: str, next_addr: int) -> int | None:
    """The code address a call/jmp/jcc/lea names directly, else None (used by the audit's linear sweep)."""
    c = mnemonic[:1]
    if c == "j" or mnemonic == "call" or mnemonic.endswith((" jmp", " call")) or mnemonic.startswith("loop"):
        return _imm_target(op_str)
    if mnemonic == "lea" and "rip" in op_str:
        return rip_target(op_str, next_addr)
    return None


Insn = tuple[int, int, str, str]  # address, size, mnemonic, operands (capstone's disasm_lite)


@dataclass
class _Block:
    insns: list[Insn]
    refs: list[int]  # direct call targets and RIP-relative lea targets (code the block makes reachable)
    reads_flag: bool  # some instruction has a RIP-relative operand inside a flag global
    last: str  # mnemonic of the last instruction, prefixes stripped
    target: int | None  # its direct branch target
    fall: int | None  # the address after the block when execution can continue there


class _Code:
    """Basic blocks from the executable sections, taken from the audit's linear sweep where it agrees, cached."""

    def __init__(self, image: Image, stops: set[int], swept: list[list[Insn]] | None = None) -> None:
        self.secs = sorted(image.sections)
        self.starts = [a for a, _ in self.secs]
        self.md = capstone.Cs(capstone.CS_ARCH_X86, capstone.CS_MODE_64)
        self.stops = stops  # function starts: a block never falls through into one
        self.blocks: dict[int, _Block] = {}
        self.swept = [(lst[0][0], [x[0] for x in lst], lst) for lst in (swept or []) if lst]
        self.swept.sort()
        self.interesting: Callable[[int, str], bool] = lambda _a, _m: False
        self.getters: frozenset[int] = frozenset()  # functions that return a flag (see `_flag_getters`)

    def contains(self, addr: int) -> bool:
        i = bisect.bisect_right(self.starts, addr) - 1
        return i >= 0 and addr < self.secs[i][0] + len(self.secs[i][1])

    def linear(self, addr: int, limit: int) -> Iterator[Insn]:
        """Up to `limit` instructions from `addr` on (the linear sweep's where it has them)."""
        return itertools.islice(self._decoded(addr), limit)

    def _swept_at(self, addr: int) -> tuple[list[Insn], int] | None:
        """(the sweep's instruction list, index of `addr` in it) when the linear sweep has `addr`."""
        k = bisect.bisect_right(self.swept, (addr, [addr + 1])) - 1
        if k >= 0:
            _first, addrs, insns = self.swept[k]
            j = bisect.bisect_left(addrs, addr)
            if j < len(addrs) and addrs[j] == addr:
                return (insns, j)
        return None

    def _decoded(self, addr: int) -> Iterator[Insn]:
        """Instructions from `addr` on: the linear sweep's when `addr` is one of its boundaries, else fresh."""
        found = self._swept_at(addr)
        if found is not None:
            yield from map(found[0].__getitem__, range(found[1], len(found[0])))  # islice would walk from 0
        else:
            yield from self._decoded_fresh(addr)

    def _decoded_fresh(self, addr: int) -> Iterator[Insn]:
        i = bisect.bisect_right(self.starts, addr) - 1
        if i < 0:
            return
        base, code = self.secs[i]
        off = addr - base
        while 0 <= off < len(code):
            progressed = False
            for insn in self.md.disasm_lite(code[off : off + _CHUNK * 15], base + off, _CHUNK):
                progressed = True
                yield insn
                off = insn[0] + insn[1] - base
            if not progressed:
                return  # undecodable bytes

    def block(self, addr: int) -> _Block:
        """Instructions from `addr` to the first branch/ret (inclusive), or up to a function start."""
        got = self.blocks.get(addr)
        if got is not None:
            return got
        out: list[Insn] = []
        refs: list[int] = []
        reads_flag = False
        last, target, fall = "", None, None
        stops = self.stops
        cat_of = _CATEGORY.get
        found = self._swept_at(addr)
        source: Iterable[Insn] = (
            map(found[0].__getitem__, range(found[1], len(found[0])))
            if found is not None
            else self._decoded_fresh(addr)
        )
        for insn in source:
            a, s, m, o = insn
            if out and a in stops:
                break
            out.append(insn)
            fall = a + s
            cat = cat_of(m)
            if cat is None:
                cat = _category(m)
            if "rip" in o:
                t = rip_target(o, fall)
                if t is not None:
                    if m == "lea" and self.contains(t):
                        refs.append(t)
                    elif self.interesting(t, _STRIPPED[m]):
                        reads_flag = True
            elif cat == _CALL:
                t = _imm_target(o)
                if t is not None:
                    refs.append(t)
                    if t in self.getters:
                        reads_flag = True
            if cat >= _BRANCH:
                last = _STRIPPED[m]
                if cat == _BRANCH:
                    target = _imm_target(o)
                    if last == "jmp":
                        fall = None
                else:
                    fall = None
                break
        if fall is not None and fall in stops:
            fall = None
        blk = _Block(out, refs, reads_flag, last, target, fall)
        self.blocks[addr] = blk
        return blk


_TAKEN = 64  # bytes after an address that is taken (lea, relocated pointer) that code may write through it


def store_extent(mnemonic: str, destination: str) -> int:
    """How many bytes from a global a store to `destination` (or `lea` of it) may change."""
    return _TAKEN if mnemonic == "lea" else _mem_size(destination)


def _mem_size(op: str) -> int:
    return _SIZE.get(op.split(" ", 1)[0], 8)


def _mem_operand(op: str) -> tuple[str, int, bool] | None:
    """(base register family, displacement, indexed) of a `[reg]`, `[reg + d]` or `[reg + idx*s + d]` operand."""
    m = _MEM_RE.search(op)
    if m is None:
        return None
    fam = _REG_FAMILY.get(m.group(1))
    if fam is None:
        return None
    disp = int(m.group(4), 0) if m.group(4) else 0
    return (fam, -disp if m.group(3) == "-" else disp, bool(m.group(2)))


def find_flag_globals(
    image: Image, cpuid_sites: Iterable[int], call_sites: dict[int, list[int]], code: _Code | None = None
) -> dict[int, int]:
    """Globals stored after a cpuid/xgetbv in its function (or after a call of a helper that runs cpuid):
    address -> size. Stores through a register that holds a global's address (`lea r, [rip+X]`, or a
    pointer loaded from a relocated slot) count too: GCC's `__cpu_indicator_init` writes `__cpu_model` so."""
    code = code or _Code(image, set())
    flags: dict[int, int] = dict(image.flag_symbols)
    known = {f[0] for f in image.functions} | image.entries | image.data_refs | set(call_sites)
    starts = sorted(known)

    def function_start(addr: int) -> int:
        k = bisect.bisect_right(starts, addr) - 1
        return starts[k] if k >= 0 and addr - starts[k] < 1 << 20 else addr

    def stores_after(site: int, skip: bool) -> dict[int, int]:
        found: dict[int, int] = {}
        start = function_start(site)
        ptrs: dict[str, int] = {}
        after = 0
        for a, s, m, o in code.linear(start, _FLAG_SCAN * 4):
            if a != start and a in known and a > site:
                break
            if a >= site:
                after += 1
                if after > _FLAG_SCAN:
                    break
                if skip and a == site:
                    continue
            if " " in m:
                m = strip_prefix(m)
            ops = o.split(", ", 1)
            dst = ops[0]
            fam = _REG_FAMILY.get(dst)
            if fam is not None:
                t = rip_target(o, a + s) if "[rip" in o else None
                if t is not None and m == "lea":
                    ptrs[fam] = t
                elif t is not None and m == "mov" and t in image.pointers:
                    ptrs[fam] = image.pointers[t]
                else:
                    ptrs.pop(fam, None)
                continue
            if a < site or not (m in _STORES or m.startswith("set")) or "[" not in dst:
                continue
            if "[rip" in dst:
                t = rip_target(dst, a + s)
                if t is not None:
                    found[t] = _mem_size(dst)
                continue
            mem = _mem_operand(dst)
            if mem is not None and mem[0] in ptrs:
                found[ptrs[mem[0]] + mem[1]] = 64 if mem[2] else _mem_size(dst)
        return found

    for site in cpuid_sites:
        got = stores_after(site, False)
        if got:
            flags.update(got)
            continue
        # A cpuid helper: the globals its callers store after calling it are the flags.
        for caller in call_sites.get(function_start(site), []):
            flags.update(stores_after(caller, True))
    return flags


def analyse_guards(
    image: Image,
    asked: Iterable[int],
    cpuid_sites: Iterable[int],
    referenced: set[int],
    call_sites: dict[int, list[int]],
    swept: list[list[Insn]] | None = None,
    written: Mapping[int, int] | None = None,
) -> GuardResult:
    """Which of the `asked` instruction addresses run only after a CPU-feature flag test.

    `referenced`: every code address some instruction names directly (from the audit's linear sweep);
    `call_sites`: call target -> addresses of the calls (only needed for cpuid helpers); `swept`: the
    linear sweep's instructions per section (reused instead of decoding again); `written`: globals some
    instruction stores to or takes the address of (with `Image.data`, this finds globals that stay 0).
    """
    asked_set = set(asked)
    fn_starts = {f[0] for f in image.functions}
    code = _Code(image, fn_starts, swept)
    flags = find_flag_globals(image, list(cpuid_sites), call_sites, code)
    stats = {"flags": len(flags)}
    if not flags or not asked_set:
        stats.update(guarded=0)
        return GuardResult(set(), flags, stats)
    flag_starts = sorted(flags)

    def is_flag(addr: int) -> bool:
        k = bisect.bisect_right(flag_starts, addr) - 1
        return k >= 0 and addr < flag_starts[k] + max(flags[flag_starts[k]], 1)

    extent: dict[int, int] = dict(written or {})
    for w in image.pointed:  # what relocated pointers name: code may write the object through them
        extent[w] = max(extent.get(w, 0), _TAKEN)
    for w in image.slots:
        extent[w] = max(extent.get(w, 0), 8)
    # A taken address may reach up to _TAKEN bytes, but not into the next global the code names on its own.
    order = sorted(extent)
    for i, w in enumerate(order[:-1]):
        if extent[w] >= _TAKEN:
            extent[w] = min(extent[w], order[i + 1] - w)

    def is_zero(addr: int) -> bool:
        """A global initialised to 0 that no instruction writes and no pointer names: it stays 0."""
        for w in range(addr - _TAKEN + 1, addr + 4):
            n = extent.get(w)
            if n is not None and w + n > addr:
                return False
        return image.initially_zero(addr)

    def near_flag(addr: int) -> bool:
        k = bisect.bisect_left(flag_starts, addr)
        return is_flag(addr) or (k < len(flag_starts) and flag_starts[k] - addr < 64)

    def interesting(addr: int, mnemonic: str) -> bool:
        """Does a RIP-relative operand make this block worth following register by register?"""
        if mnemonic == "lea":
            return near_flag(addr)
        if mnemonic == "mov" and addr in image.pointers:
            return near_flag(image.pointers[addr])
        return is_flag(addr) or is_zero(addr)

    volatile = _VOLATILE_WIN64 if image.win64 else _VOLATILE_SYSV
    code.interesting = interesting
    code.getters = _flag_getters(code, call_sites, near_flag, is_flag, image.pointers)
    stats["getters"] = len(code.getters)
    roots = set(image.entries) | image.data_refs | {f for f in fn_starts if f not in referenced}

    unguarded: set[int] = set()  # block starts reached without crossing a flag test
    guarded: set[int] = set()  # block starts reached only across one
    guard_seeds: list[int] = []
    dead_tests: list[int] = []
    flag_tests: list[int] = []
    unknown_tests: list[int] = []
    seen: dict[int, set[frozenset[str]]] = {}
    empty: frozenset[str] = frozenset()

    def walk_unguarded(starts: Iterable[int]) -> None:
        work: list[tuple[int, frozenset[str]]] = [(r, empty) for r in starts if code.contains(r)]
        while work:
            addr, taint = work.pop()
            states = seen.setdefault(addr, set())
            if taint in states:
                continue
            if len(states) >= _MAX_STATES:
                taint = empty
                if taint in states:
                    continue
            states.add(taint)
            unguarded.add(addr)
            blk = code.block(addr)
            cc: str | None = None
            picked: set[int] = set()
            hoisted: set[int] = set()
            if taint or blk.reads_flag:
                taint, cc, picked, hoisted = _track(
                    blk.insns, set(taint), is_flag, is_zero, image.pointers, code.getters, volatile
                )
                guard_seeds.extend(picked)
            is_test = bool(cc and cc.startswith("flag:") and blk.last[:1] == "j" and blk.last != "jmp")
            if is_test and hoisted:
                # `lea r15, [kernel_avx2]` hoisted above the flag test and used only after it: guarded.
                guard_seeds.extend(hoisted)
                picked |= hoisted
            work.extend((r, empty) for r in blk.refs if r not in picked)
            if not blk.last:
                if blk.fall is not None:
                    work.append((blk.fall, taint))
            elif blk.last == "jmp":
                if blk.target is not None:
                    work.append((blk.target, taint))
            elif blk.last[0] == "j" or blk.last.startswith("loop"):
                side = _present_side(cc[5:], blk.last) if cc and cc.startswith("flag:") else None
                if side is None and cc and cc.startswith("flag:") and blk.last[0] == "j":
                    # A flag test whose direction we cannot tell (`cmp [flag], ebp` with ebp zeroed in an
                    # earlier block): both sides are taken as guarded.
                    guard_seeds.extend(x for x in (blk.target, blk.fall) if x is not None)
                    unknown_tests.append(addr)
                elif side is not None:
                    # Only the side where the CPU has the feature is guarded; the other goes on unguarded.
                    have, lack = (blk.target, blk.fall) if side == "taken" else (blk.fall, blk.target)
                    if have is not None:
                        guard_seeds.append(have)
                        flag_tests.append(have)
                    if lack is not None:
                        work.append((lack, taint))
                elif cc == "zero" and blk.last in _ZF_BRANCH:
                    # A branch on a global this binary never sets: one side is dead code.
                    live, dead = (blk.target, blk.fall) if _ZF_BRANCH[blk.last] else (blk.fall, blk.target)
                    if live is not None:
                        work.append((live, taint))
                    if dead is not None:
                        guard_seeds.append(dead)
                        dead_tests.append(dead)
                else:
                    work.extend((x, taint) for x in (blk.target, blk.fall) if x is not None)

    def walk_guarded() -> None:
        while guard_seeds:
            addr = guard_seeds.pop()
            if addr in guarded or addr in seen or not code.contains(addr):
                continue
            guarded.add(addr)
            blk = code.block(addr)
            guard_seeds.extend(blk.refs)
            guard_seeds.extend(x for x in (blk.target, blk.fall) if x is not None)

    walk_unguarded(roots)
    walk_guarded()
    # Functions neither walk reached (called only from code that is itself unreached, or through pointers we
    # cannot see): assume anything may call them.
    for _round in range(8):
        missing = [f for f in fn_starts if f not in seen and f not in guarded]
        if not missing:
            break
        walk_unguarded(missing)
        walk_guarded()

    def addresses(starts: Iterable[int]) -> set[int]:
        return {a for b in starts for a, _s, _m, _o in code.block(b).insns}

    u_addr = addresses(seen)
    g_addr = addresses(x for x in guarded if x not in seen) - u_addr
    # Instructions neither walk reached: guarded only inside a function whose entry is guarded.
    funcs = sorted(f for f in (*image.functions, *image.fragments) if f[1] > f[0])
    fstarts = [f[0] for f in funcs]
    result: set[int] = set()
    unreached = 0
    for a in asked_set:
        if a in u_addr:
            continue
        if a in g_addr:
            result.add(a)
            continue
        unreached += 1
        k = bisect.bisect_right(fstarts, a) - 1
        if k >= 0 and funcs[k][0] <= a < funcs[k][1] and funcs[k][0] in guarded and funcs[k][0] not in seen:
            result.add(a)
    stats.update(
        roots=len(roots),
        flag_tests=len(flag_tests),
        flag_tests_both_sides=len(unknown_tests),
        dead_branches=len(dead_tests),
        unguarded_blocks=len(seen),
        guarded_blocks=len(guarded),
        unreached=unreached,
        guarded=len(result),
    )
    return GuardResult(result, flags, stats, set(seen))


_GETTER_MAX = 12  # instructions: a flag getter is a tiny leaf function


def _flag_getters(
    code: _Code,
    call_sites: Mapping[int, list[int]],
    near_flag: Callable[[int], bool],
    is_flag: Callable[[int], bool],
    pointers: Mapping[int, int],
) -> frozenset[int]:
    """Called functions that just read a flag and return it (numpy's `npy_cpu_have(id)`: bounds check, then
    `lea rcx, [rip + npy__cpu_have]; movzx eax, byte ptr [rax + rcx]; ret`)."""
    out: set[int] = set()
    for target in call_sites:
        ptrs: set[str] = set()
        reads = False
        for a, s, m, o in code.linear(target, _GETTER_MAX):
            if " " in m:
                m = strip_prefix(m)
            if m in ("call", "jmp") or m.startswith("v"):
                break
            if m == "ret":
                if reads:
                    out.add(target)
                break
            if "[rip" in o:
                t = rip_target(o, a + s)
                if t is not None:
                    if (m == "lea" and near_flag(t)) or (m == "mov" and near_flag(pointers.get(t, -1))):
                        fam = _REG_FAMILY.get(o.split(", ", 1)[0])
                        if fam:
                            ptrs.add(fam)
                    elif is_flag(t):
                        reads = True
            elif ptrs and "[" in o:
                mem = o[o.index("[") + 1 : o.index("]")] if "]" in o else ""
                if any(_REG_FAMILY.get(r.split("*")[0].strip()) in ptrs for r in mem.split("+")):
                    reads = True
    return frozenset(out)


def _compare_kind(m: str, ops: list[str], flag_mem: bool, taint: set[str], zero: set[str]) -> str:
    """How a compare involves the flag: "bits" (test), "bt", "first-zero"/"first-imm" (cmp flag, 0 / N),
    "second-zero"/"second-imm" (cmp x, flag), or "other" (no known polarity)."""
    if m in ("test", "ptest", "vptest"):
        return "bits"
    if m == "bt":
        return "bt"
    if len(ops) != 2:
        return "other"
    first = (flag_mem and "[" in ops[0]) or _REG_FAMILY.get(ops[0]) in taint
    other = ops[1] if first else ops[0]
    if other == "0" or _REG_FAMILY.get(other) in zero:
        return ("first" if first else "second") + "-zero"
    try:
        int(other, 0)
    except ValueError:
        return "other"
    return ("first" if first else "second") + "-imm"


# For each compare kind: the jcc -> the side ("taken" or "fall") on which the CPU has the feature
# (bit set, flag non-zero, level at least N). Only that side is guarded: code after the test that both sides reach
# (MSVC's auto-vectoriser tests `__isa_available >= 6` before an AVX-512 loop and falls back to the plain
# loop) stays unguarded. Anything else has no known direction: both sides count as guarded.
_PRESENT_SIDE: dict[str, dict[str, str]] = {
    "bits": {"jne": "taken", "jnz": "taken", "je": "fall", "jz": "fall"},
    "bt": {"jb": "taken", "jc": "taken", "jae": "fall", "jnc": "fall", "jnb": "fall"},
    "first-zero": {
        "je": "fall",
        "jz": "fall",
        "jne": "taken",
        "jnz": "taken",
        "ja": "taken",
        "jg": "taken",
        "jbe": "fall",
        "jle": "fall",
    },
    "first-imm": {
        "ja": "taken",
        "jae": "taken",
        "jg": "taken",
        "jge": "taken",
        "jb": "fall",
        "jbe": "fall",
        "jl": "fall",
        "jle": "fall",
        "je": "taken",
        "jz": "taken",
    },
    "second-zero": {
        "je": "fall",
        "jz": "fall",
        "jne": "taken",
        "jnz": "taken",
        "jb": "taken",
        "jl": "taken",
        "jae": "fall",
        "jge": "fall",
    },
    "second-imm": {
        "jb": "taken",
        "jbe": "taken",
        "jl": "taken",
        "jle": "taken",
        "ja": "fall",
        "jae": "fall",
        "jg": "fall",
        "jge": "fall",
        "je": "taken",
        "jz": "taken",
    },
}


def _present_side(kind: str, jcc: str) -> str | None:
    return _PRESENT_SIDE.get(kind, {}).get(jcc)


def _track(
    insns: list[Insn],
    taint: set[str],
    is_flag: Callable[[int], bool],
    is_zero: Callable[[int], bool],
    pointers: dict[int, int],
    getters: frozenset[int] = frozenset(),
    volatile: frozenset[str] = _VOLATILE_SYSV,
) -> tuple[frozenset[str], str | None, set[int], set[int]]:
    """Follow which registers hold a flag value through a block; return them, what the final condition
    codes came from: "flag:<kind>" (the block's conditional branch is a flag test), "zero" (a compare that found
    a never-set global equal to zero: ZF is known to be 1) or None; the code addresses (`lea`) a `cmov` picked
    on a flag test (a branchless ifunc resolver: `cmovne rax, rdx` between two implementations); and the code
    addresses loaded by `lea` that the block does not use itself (hoisted above a final flag test)."""
    cc: str | None = None
    zero: set[str] = set()  # registers known to be 0 (within this block)
    ptrs: dict[str, int] = {}  # registers holding the address of a global (within this block)
    code_addr: dict[str, int] = {}  # registers holding a code address from `lea` (within this block)
    picked: set[int] = set()
    unused: dict[str, int] = {}  # code addresses loaded by `lea` and not used yet in this block
    for a, s, m, o in insns:
        if unused:
            for r in _REG_TOKEN_RE.findall(o):
                unused.pop(_REG_FAMILY.get(r, r), None)
        if " " in m:
            m = strip_prefix(m)
        if m == "call":
            taint -= volatile
            zero -= volatile
            cc = None
            if _imm_target(o) in getters:
                taint.add("rax")  # `npy_cpu_have(AVX2)`-style getter: its result is a flag
            continue
        rip = rip_target(o, a + s) if "rip" in o else None
        ops = o.split(", ")
        dst = _REG_FAMILY.get(ops[0]) if ops else None
        if m.startswith("cmov") and cc is not None and cc.startswith("flag"):
            picked.update(code_addr[r] for r in (_REG_FAMILY.get(x) for x in ops) if r in code_addr)
        if dst is not None and m not in _COMPARES:
            ptrs.pop(dst, None)
            code_addr.pop(dst, None)
            if m == "lea" and rip is not None and not (is_flag(rip) or is_zero(rip)):
                code_addr[dst] = rip
                unused[dst] = rip
            if rip is not None and (m == "lea" or (m == "mov" and rip in pointers)):
                ptrs[dst] = rip if m == "lea" else pointers[rip]  # the register now holds a global's address
                taint.discard(dst)
                zero.discard(dst)
                continue
        flag_mem = rip is not None and is_flag(rip)
        if rip is None and ptrs and "[" in o:
            mem = _mem_operand(o)
            flag_mem = mem is not None and mem[0] in ptrs and is_flag(ptrs[mem[0]] + mem[1])
        zero_mem = rip is not None and not flag_mem and is_zero(rip)
        if m == "xor" and len(ops) == 2 and ops[0] == ops[1] and dst:
            zero.add(dst)
            taint.discard(dst)
            cc = None
            continue
        if zero_mem or zero:
            z = [op == "0" or _REG_FAMILY.get(op) in zero or (zero_mem and "[rip" in op) for op in ops]
            if len(z) == 2 and ((m == "test" and any(z)) or (m == "cmp" and all(z))):
                cc = "zero"
                continue
            if m.startswith("mov") and dst and zero_mem:
                zero.add(dst)
                taint.discard(dst)
                continue
        if dst in zero and m not in ("cmp", "test", "push"):
            zero.discard(dst)
        if not taint and not flag_mem:
            if m in _FLAG_SETTERS:
                cc = None
            continue
        src_t = flag_mem or any(_REG_FAMILY.get(x) in taint for x in ops[1:])
        if m in _COMPARES:
            cc = ("flag:" + _compare_kind(m, ops, flag_mem, taint, zero)) if src_t or (dst in taint) else None
            continue
        if m in _FLAG_SETTERS:
            keeps = dst in taint and m in _KEEPS_TAINT
            cc = ("flag:" + ("bits" if m == "and" else "other")) if src_t or keeps else None
            if dst:
                same = len(ops) > 1 and ops[0] == ops[1] and m in ("xor", "sub")
                if (src_t or keeps) and not same:
                    taint.add(dst)
                else:
                    taint.discard(dst)
            continue
        if dst:
            if m.startswith("mov") and src_t:
                taint.add(dst)
            elif m not in ("push", "nop"):
                taint.discard(dst)
    return frozenset(taint), cc, picked, set(unused.values())


# --- reading what the binaries give away -------------------------------------------------------------------------


def pe_image(pe: object, sections: list[tuple[int, bytes]]) -> Image:
    """Entries, function bounds (.pdata) and relocated pointers into code of a parsed `pefile.PE`."""
    import pefile

    assert isinstance(pe, pefile.PE)
    base = pe.OPTIONAL_HEADER.ImageBase
    img = Image(sections, win64=True)
    code = _Code(img, set())
    if pe.OPTIONAL_HEADER.AddressOfEntryPoint:
        img.entries.add(base + pe.OPTIONAL_HEADER.AddressOfEntryPoint)
    dirs = pe.OPTIONAL_HEADER.DATA_DIRECTORY

    def dir_bytes(index: int) -> tuple[int, bytes]:
        if len(dirs) <= index or not dirs[index].VirtualAddress or not dirs[index].Size:
            return (0, b"")
        rva, size = dirs[index].VirtualAddress, dirs[index].Size
        try:
            return (rva, pe.get_data(rva, size))
        except pefile.PEFormatError:
            return (0, b"")

    # Exports (directory 0): RVAs of exported functions.
    rva, data = dir_bytes(0)
    if len(data) >= 40:
        n_funcs, _n_names, funcs_rva = struct.unpack_from("<III", data, 20)
        try:
            table = pe.get_data(funcs_rva, 4 * n_funcs)
        except pefile.PEFormatError:
            table = b""
        exp_end = rva + len(data)
        for (f,) in struct.iter_unpack("<I", table[: 4 * (len(table) // 4)]):
            if f and not rva <= f < exp_end:  # forwarders point into the export directory
                img.entries.add(base + f)
    # Exception directory (3): RUNTIME_FUNCTION {begin, end, unwind} per function (and per chained part).
    # A part whose UNWIND_INFO has UNW_FLAG_CHAININFO continues another function (shrink-wrapped or split
    # code, entered by fall-through or a jump): its start is no function entry.
    _rva, data = dir_bytes(3)
    raw = {s.VirtualAddress: (s.VirtualAddress + len(s.get_data()), s.get_data()) for s in pe.sections}
    sec_starts = sorted(raw)
    for b, e, u in struct.iter_unpack("<III", data[: 12 * (len(data) // 12)]):
        if not b or e <= b:
            continue
        k = bisect.bisect_right(sec_starts, u) - 1
        chained = False
        if k >= 0 and u < raw[sec_starts[k]][0]:
            chained = bool(raw[sec_starts[k]][1][u - sec_starts[k]] >> 3 & 0x4)
        (img.fragments if chained else img.functions).append((base + b, base + e))
    for sec in pe.sections:
        if sec.Characteristics & 0x80000000:  # IMAGE_SCN_MEM_WRITE
            start = base + sec.VirtualAddress
            img.data.append((start, start + max(sec.Misc_VirtualSize, sec.SizeOfRawData), sec.get_data()))

    def in_data(a: int) -> bool:
        return any(d0 <= a < d1 for d0, d1, _ in img.data)

    # Base relocations (5): every IMAGE_REL_BASED_DIR64 slot holding a pointer into code is a data reference.
    _rva, data = dir_bytes(5)
    off = 0
    while off + 8 <= len(data):
        page, size = struct.unpack_from("<II", data, off)
        if size < 8:
            break
        for (entry,) in struct.iter_unpack("<H", data[off + 8 : off + size - (size - 8) % 2]):
            if entry >> 12 == 10:
                try:
                    (ptr,) = struct.unpack("<Q", pe.get_data(page + (entry & 0xFFF), 8))
                except (pefile.PEFormatError, struct.error):
                    continue
                if code.contains(ptr):
                    img.data_refs.add(ptr)
                elif in_data(ptr):
                    img.pointed.add(ptr)
                    img.pointers[base + page + (entry & 0xFFF)] = ptr
                img.slots.add(base + page + (entry & 0xFFF))  # the slot itself is written by the loader
        off += size
    return img


def elf_image(data: bytes, sections: list[tuple[int, bytes]]) -> Image:
    """Entries (e_entry, defined dynamic symbols), functions (symbols with sizes), relocated code pointers."""
    import io

    from elftools.common.exceptions import ELFError
    from elftools.elf.elffile import ELFFile
    from elftools.elf.relocation import RelocationSection
    from elftools.elf.sections import SymbolTableSection

    img = Image(sections)
    code = _Code(img, set())
    pointed: list[int] = []
    try:
        elf = ELFFile(io.BytesIO(data))
        if elf["e_entry"]:
            img.entries.add(elf["e_entry"])
        for sec in elf.iter_sections():
            if isinstance(sec, SymbolTableSection):
                dynamic = sec.name == ".dynsym"
                for sym in sec.iter_symbols():
                    kind = sym["st_info"]["type"]
                    value, size, shndx = sym["st_value"], sym["st_size"], sym["st_shndx"]
                    if shndx == "SHN_UNDEF" or not value:
                        continue
                    if sym.name in KNOWN_FLAG_SYMBOLS and kind == "STT_OBJECT":
                        img.flag_symbols[value] = max(size, 1)
                    if kind not in ("STT_FUNC", "STT_GNU_IFUNC", "STT_LOOS"):
                        continue
                    img.functions.append((value, value + size))
                    if dynamic or kind != "STT_FUNC":  # exported, or an ifunc resolver the loader calls
                        img.entries.add(value)
            elif isinstance(sec, RelocationSection):
                for rel in sec.iter_relocations():
                    t = rel["r_info_type"]
                    img.slots.add(rel["r_offset"])  # the slot is written by the loader
                    if t in (8, 37) and rel.is_RELA():  # R_X86_64_RELATIVE / IRELATIVE: addend is the pointer
                        ptr = rel["r_addend"]
                        if code.contains(ptr):
                            img.data_refs.add(ptr)
                        else:
                            pointed.append(ptr)
                            img.pointers[rel["r_offset"]] = ptr
            if sec["sh_flags"] & 0x3 == 0x3 and sec["sh_size"] and sec["sh_type"] in ("SHT_NOBITS", "SHT_PROGBITS"):
                raw = b"" if sec["sh_type"] == "SHT_NOBITS" else sec.data()  # WRITE|ALLOC: .data, .bss
                img.data.append((sec["sh_addr"], sec["sh_addr"] + sec["sh_size"], raw))
    except (ELFError, struct.error, KeyError, ValueError):
        pass
    img.pointed = set(pointed)
    return img
