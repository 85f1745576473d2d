"""jsondoc: byte-identical round trips of the real files; BOM dropped; line endings and unknown keys kept."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from app.core.lmstudio.errors import JsonFileError
from app.core.lmstudio.jsondoc import UTF8_BOM, load_json, save, write_json
from tests.lmstudio_homes import LINUX_CUDA_MANIFEST, WIN_AVX_MANIFEST, WIN_DISPLAY_DATA


@pytest.mark.parametrize("src", [WIN_AVX_MANIFEST, WIN_DISPLAY_DATA, LINUX_CUDA_MANIFEST], ids=lambda p: p.name)
def test_real_files_round_trip_byte_identical(tmp_path: Path, src: Path) -> None:
    dst = tmp_path / src.name
    dst.write_bytes(src.read_bytes())
    doc = load_json(dst)
    save(doc)
    assert dst.read_bytes() == src.read_bytes()


def test_crlf_manifest_facts() -> None:
    doc = load_json(WIN_AVX_MANIFEST)
    assert (doc.bom, doc.newline, doc.indent, doc.final_newline) == (False, "\r\n", 2, False)
    dd = load_json(WIN_DISPLAY_DATA)
    assert (dd.newline, dd.indent) == ("\n", 2)
    assert isinstance(dd.data, list) and dd.data[0][0] == "en"  # nested [[lang, obj]] kept


def test_bom_is_dropped_crlf_and_unknown_keys_kept(tmp_path: Path) -> None:
    p = tmp_path / "m.json"
    p.write_bytes(UTF8_BOM + b'{\r\n    "name": "x",\r\n    "unknown_field": {"k": "\xc3\xbc"}\r\n}\r\n')
    doc = load_json(p)
    assert doc.bom and doc.newline == "\r\n" and doc.indent == 4 and doc.final_newline
    data = dict(doc.data)
    data["name"] = "y"
    save(doc.with_data(data))
    raw = p.read_bytes()
    assert not raw.startswith(UTF8_BOM)
    assert raw == '{\r\n    "name": "y",\r\n    "unknown_field": {\r\n        "k": "ü"\r\n    }\r\n}\r\n'.encode()


def test_multiline_strings_stay_escaped_under_crlf(tmp_path: Path) -> None:
    p = tmp_path / "d.json"
    p.write_bytes(b'[\r\n  "a\\nb"\r\n]')
    save(load_json(p))
    assert p.read_bytes() == b'[\r\n  "a\\nb"\r\n]'


@pytest.mark.parametrize(
    ("raw", "kind"),
    [
        (b'{"name": ', "syntax"),
        (b"\xff\xfe{\x00}\x00", "encoding"),
        (b'{"name": "\xe9"}', "encoding"),  # Latin-1, not UTF-8
    ],
)
def test_bad_files_raise_typed_errors(tmp_path: Path, raw: bytes, kind: str) -> None:
    p = tmp_path / "bad.json"
    p.write_bytes(raw)
    with pytest.raises(JsonFileError) as ei:
        load_json(p)
    assert ei.value.kind == kind and ei.value.exit_code == 2 and str(p) in ei.value.message
    assert p.read_bytes() == raw


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(JsonFileError) as ei:
        load_json(tmp_path / "none.json")
    assert ei.value.kind == "missing"


def test_write_json_default_style(tmp_path: Path) -> None:
    p = tmp_path / "new.json"
    write_json(p, [{"model_format": "gguf", "name": "ü"}])
    assert json.loads(p.read_text(encoding="utf-8")) == [{"model_format": "gguf", "name": "ü"}]
    assert p.read_bytes().endswith(b"]\n") and "ü" in p.read_text(encoding="utf-8")
