"""The two JSON files LM Studio reads in every folder (docs/lmstudio-contract.md §15 #4, §5.3, §6.3)."""

from __future__ import annotations

import json
from collections.abc import Iterable
from pathlib import Path

from app.core.lmstudio.backends import DISPLAY_DATA_FILE, MANIFEST_FILE, BackendInfo
from app.core.lmstudio.doctor.registry import Check, Context, Finding, Repairer, label, refetch_advice
from app.core.lmstudio.jsondoc import UTF8_BOM, atomic_write_bytes
from app.core.lmstudio.provenance import read_provenance, stored_copy


class JsonBom(Check):
    codes = (("json-bom", "JSON file starts with a BOM"),)
    about = (
        "Notepad and some editors write a UTF-8 byte order mark; LM Studio's packs never have one and whether it "
        "reads one is unknown (§5.3). Ours and third-party files lose the BOM (backed up first); in an official "
        "folder it is reported only."
    )

    def detect_backend(self, ctx: Context, b: BackendInfo) -> Iterable[Finding]:
        kind = ctx.kind(b).kind
        for code, rel in (("manifest-bom", MANIFEST_FILE), ("display-data-bom", DISPLAY_DATA_FILE)):
            if b.has_problem(code):
                yield Finding(
                    "json-bom",
                    "error",
                    label(b),
                    f"{rel} of {label(b)} starts with a UTF-8 BOM, which LM Studio may reject",
                    f"rewrite {rel} as UTF-8 without BOM (backed up first)"
                    if ctx.may_change(b)
                    else "official folder, left as it is: " + refetch_advice(kind),
                    auto=ctx.may_change(b),
                    target=str(b.folder / rel),
                    kind=kind,
                )

    def fix(self, r: Repairer, f: Finding) -> str:
        t = Path(f.target)
        r.backup_file(t)
        atomic_write_bytes(t, t.read_bytes()[len(UTF8_BOM) :])
        return f"removed the BOM from {t}"


class JsonCrlf(Check):
    codes = (("json-crlf", "JSON file has Windows line endings"),)
    about = (
        "CRLF line endings in a manifest or display-data. LM Studio reads them (theIvanR's pack runs with a CRLF "
        "manifest, §5.3), so this is information; ours and third-party files are rewritten with LF (backed up "
        "first, content unchanged) so every tool reads them alike."
    )

    def detect_backend(self, ctx: Context, b: BackendInfo) -> Iterable[Finding]:
        if not b.valid or not ctx.may_change(b):
            return
        for rel in (MANIFEST_FILE, DISPLAY_DATA_FILE):
            p = b.folder / rel
            try:
                crlf = b"\r\n" in p.read_bytes()
            except OSError:
                continue
            if crlf:
                yield Finding(
                    "json-crlf",
                    "info",
                    label(b),
                    f"{rel} of {label(b)} has Windows (CRLF) line endings; LM Studio reads them",
                    f"rewrite {rel} with LF line endings (backed up first)",
                    auto=True,
                    target=str(p),
                    kind=ctx.kind(b).kind,
                )

    def fix(self, r: Repairer, f: Finding) -> str:
        t = Path(f.target)
        r.backup_file(t)
        atomic_write_bytes(t, t.read_bytes().replace(b"\r\n", b"\n"))
        return f"rewrote {t} with LF line endings"


_UNREADABLE = {
    "manifest-encoding": ("json-encoding", MANIFEST_FILE),
    "manifest-syntax": ("json-invalid", MANIFEST_FILE),
    "manifest-not-object": ("json-invalid", MANIFEST_FILE),
    "manifest-field-missing": ("manifest-fields", MANIFEST_FILE),
    "display-data-encoding": ("json-encoding", DISPLAY_DATA_FILE),
    "display-data-syntax": ("json-invalid", DISPLAY_DATA_FILE),
}


class JsonUnreadable(Check):
    codes = (
        ("json-invalid", "JSON file is not valid JSON"),
        ("json-encoding", "JSON file is not UTF-8"),
        ("manifest-fields", "Manifest lacks required fields"),
    )
    about = (
        "LM Studio cannot read the folder. Ours is restored from the copy stored at install (when its hash still "
        "matches); other folders need their files again from where they came from."
    )

    def detect_backend(self, ctx: Context, b: BackendInfo) -> Iterable[Finding]:
        prov = read_provenance(b.folder) if b.ours else None
        kind = ctx.kind(b).kind
        for p in b.problems:
            if p.code not in _UNREADABLE:
                continue
            code, rel = _UNREADABLE[p.code]
            copy = stored_copy(b.folder, rel, prov) if prov else None
            utf16 = code == "json-encoding" and ctx.may_change(b) and _utf16_json(b.folder / rel) is not None
            if copy is not None:
                fix = f"restore {rel} from the copy stored at install"
            elif utf16:
                fix = f"rewrite {rel} as UTF-8 (Notepad's 'Unicode' is UTF-16; same text, backed up first)"
            else:
                fix = refetch_advice(kind)
            yield Finding(
                code,
                "error",
                label(b),
                f"{p.message}; LM Studio cannot read {label(b)}",
                fix,
                auto=copy is not None or utf16,
                target=str(b.folder / rel),
                kind=kind,
                data={"utf16": utf16 and copy is None},
            )

    def fix(self, r: Repairer, f: Finding) -> str:
        t = Path(f.target)
        if f.data.get("utf16"):
            text = _utf16_json(t)
            if text is None:
                raise RuntimeError(f"{t} is no longer UTF-16 JSON")
            r.backup_file(t)
            atomic_write_bytes(t, text.encode("utf-8"))
            return f"rewrote {t} as UTF-8"
        data = stored_copy(t.parent, t.name, read_provenance(t.parent) or {})
        if data is None:
            raise RuntimeError(f"no stored copy of {t}")
        r.backup_file(t)
        atomic_write_bytes(t, data)
        return f"restored {t} from the copy stored at install"


def _utf16_json(p: Path) -> str | None:
    """The text of a JSON file saved as UTF-16 with a byte order mark (Notepad's "Unicode"), when it is valid JSON."""
    try:
        data = p.read_bytes()
    except OSError:
        return None
    if not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        return None
    try:
        text = data.decode("utf-16")
        json.loads(text)
    except (UnicodeDecodeError, ValueError):
        return None
    return text
