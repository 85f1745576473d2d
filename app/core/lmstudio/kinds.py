"""Which of three kinds a backend folder is: ``official``, ``ours`` or ``third-party``.

* ``ours``: our provenance file is in it (docs/lmstudio-contract.md §9.4).
* ``official``: what LM Studio's own unpacker leaves: a name in the official grammar with the official ISE
  token (§4.1), a manifest whose ISE, platform and arch are what that name ships with (§5.2), the folder named
  ``<name>-<version>`` (§4.1, every official example), no other project's marker file, and - on Windows, where
  every PE file carries its link time - LM Studio's libraries all built together (the real theIvanR 1.48.0 pack
  has ggml DLLs linked four days after LM Studio's own ``llm_engine.dll``).
* ``third-party``: everything else. One that kept an official ``name`` without official content is a
  *name clash* (:attr:`KindVerdict.name_clash`): LM Studio and its auto-update take it for their own pack.

A folder whose manifest cannot be read is ``official`` when its folder name is one of LM Studio's
(``<official name>-<version>``: damaged, so never changed, re-downloaded in LM Studio), else ``third-party``.
Reading only; never raises for a broken folder.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from app.core.lmstudio.backends import BackendInfo, read_backend
from app.core.lmstudio.naming import OFFICIAL_ISE, looks_official, official_grammar

Kind = Literal["official", "ours", "third-party"]
KINDS: tuple[Kind, ...] = ("official", "ours", "third-party")
KIND_WORDS: dict[str, str] = {
    "official": "LM Studio's own",
    "ours": "installed by lms-unlocked",
    "third-party": "third-party (community or hand-made)",
}
# provenance files other projects put into the folders they make (§9.4)
FOREIGN_MARKERS = ("ffprocessor-build.json", "PRISM_VERSION")
# the MSVC runtime is not built by LM Studio: its PE time stamps are reproducible-build hashes, not dates
_RUNTIME_PREFIXES = ("vcruntime", "msvcp", "vcomp", "concrt", "ucrtbase", "api-ms-", "vccorlib")
# LM Studio's own binaries in every Windows pack (§8.1): the anchor for "built together"
_LMS_OWN_PREFIXES = ("llm_engine", "liblmstudio_bindings", "lmstudiocore")
BUILD_SPREAD_S = 2 * 86400  # LM Studio's 1.48.0 files were linked within 4 minutes of each other


@dataclass(frozen=True)
class KindVerdict:
    kind: Kind
    reasons: tuple[str, ...] = ()  # why not official (empty for official)
    name_clash: bool = False  # uses an official name without being LM Studio's own folder

    @property
    def words(self) -> str:
        return KIND_WORDS[self.kind]


def pe_link_time(path: Path) -> int | None:
    """The COFF header's TimeDateStamp of a PE file, or None when ``path`` is not one."""
    try:
        with open(path, "rb") as fh:
            head = fh.read(4096)
    except OSError:
        return None
    if head[:2] != b"MZ" or len(head) < 0x40:
        return None
    off = struct.unpack_from("<I", head, 0x3C)[0]
    if off + 12 > len(head) or head[off : off + 4] != b"PE\0\0":
        return None
    return int(struct.unpack_from("<I", head, off + 8)[0])


def _plausible_date(stamp: int) -> bool:
    return datetime(2015, 1, 1, tzinfo=UTC).timestamp() <= stamp < datetime(2045, 1, 1, tzinfo=UTC).timestamp()


def _day(stamp: int) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d")


def foreign_builds(folder: Path) -> list[str]:
    """PE files of a Windows pack linked apart from LM Studio's own (more than two days), as sentences."""
    stamps: dict[str, int] = {}
    try:
        files = sorted(p for p in folder.iterdir() if p.suffix.lower() in (".dll", ".node", ".exe") and p.is_file())
    except OSError:
        return []
    for p in files:
        if p.name.lower().startswith(_RUNTIME_PREFIXES):
            continue
        t = pe_link_time(p)
        if t is not None and _plausible_date(t):
            stamps[p.name] = t
    own = [t for n, t in stamps.items() if n.lower().startswith(_LMS_OWN_PREFIXES)]
    if not own:
        return []
    lo, hi = min(own), max(own)
    odd = sorted(n for n, t in stamps.items() if t < lo - BUILD_SPREAD_S or t > hi + BUILD_SPREAD_S)
    if not odd:
        return []
    days = sorted({_day(stamps[n]) for n in odd})
    return [
        f"{', '.join(odd)} linked on {', '.join(days)}, apart from LM Studio's own libraries ({_day(lo)}): "
        "rebuilt or swapped"
    ]


def _official_content(b: BackendInfo) -> list[str]:
    """Why ``b`` (official grammar name) is not what LM Studio ships; empty when it is."""
    parts = official_grammar(b.name) or {}
    why: list[str] = []
    want = OFFICIAL_ISE.get(parts.get("ise", ""), ())
    if want and tuple(b.ise) not in want:
        shown = ", ".join(repr(x) if x == "" else x for x in b.ise) or "nothing"
        why.append(f"its manifest lists ISE {shown}, LM Studio's {b.name} lists {', '.join(want[0]) or 'none'}")
    if parts and b.platform and b.platform != parts["os"]:
        why.append(f"its manifest says platform {b.platform}, the name says {parts['os']}")
    if parts and b.arch and b.arch.lower() != parts["arch"]:
        why.append(f"its manifest says architecture {b.arch}, the name says {parts['arch']}")
    if b.folder.name != b.expected_folder_name:
        why.append(f"LM Studio names its folders {b.expected_folder_name}, this one is {b.folder.name} (a copy)")
    markers = [m for m in FOREIGN_MARKERS if (b.folder / m).exists()]
    if markers:
        why.append(f"it carries another project's marker file {', '.join(markers)}")
    if b.platform == "win":
        why += foreign_builds(b.folder)
    return why


def classify_backend(b: BackendInfo) -> KindVerdict:
    """The kind of an already-read backend folder (see the module doc)."""
    if b.ours:
        return KindVerdict("ours", name_clash=looks_official(b.name))
    if not b.valid:
        # a damaged folder under one of LM Studio's folder names is treated as LM Studio's: never changed
        m = re.fullmatch(r"(.+)-\d+\.\d+\.\d+", b.folder.name)
        if m and looks_official(m.group(1)):
            return KindVerdict("official")
        return KindVerdict("third-party", ("LM Studio cannot read its manifest and the folder has none of its names",))
    if not looks_official(b.name):
        return KindVerdict("third-party", (f"{b.name} is not one of LM Studio's names",))
    why = _official_content(b)
    if why:
        return KindVerdict("third-party", tuple(why), name_clash=True)
    return KindVerdict("official")


def classify_folder(folder: Path) -> KindVerdict:
    """The kind of the backend folder at ``folder`` (installed or not)."""
    return classify_backend(read_backend(Path(folder)))
