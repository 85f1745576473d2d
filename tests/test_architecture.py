"""Architecture rules: app/core is Qt-free (lint rule that really fires + runtime import check)."""

from __future__ import annotations

import os
import pkgutil
import shutil
import subprocess
import sys
from pathlib import Path

import app.core

REPO = Path(__file__).resolve().parents[1]


def _ruff() -> str:
    exe = Path(sys.executable).with_name("ruff")
    return str(exe) if exe.exists() else (shutil.which("ruff") or "ruff")


def test_lint_rule_rejects_qt_import_in_core(tmp_path: Path) -> None:
    """The banned-api rule must fail on a PySide6 import placed in app/core (not elsewhere)."""
    probe = REPO / "app" / "core" / "_arch_probe_tmp.py"
    probe.write_text("from PySide6.QtCore import QObject\n\n_ = QObject\n", encoding="utf-8")
    try:
        r = subprocess.run([_ruff(), "check", "--no-cache", "--select", "TID251", str(probe)],
                           capture_output=True, text=True, cwd=REPO)
    finally:
        probe.unlink()
    assert r.returncode != 0
    assert "TID251" in r.stdout and "app/core must not import Qt" in r.stdout

    qt_probe = REPO / "app" / "qt" / "_arch_probe_tmp.py"
    qt_probe.write_text("from PySide6.QtCore import QObject\n\n_ = QObject\n", encoding="utf-8")
    try:
        r = subprocess.run([_ruff(), "check", "--no-cache", "--select", "TID251", str(qt_probe)],
                           capture_output=True, text=True, cwd=REPO)
    finally:
        qt_probe.unlink()
    assert r.returncode == 0, r.stdout


def test_importing_every_core_module_loads_no_qt() -> None:
    """Import all of app.core in a fresh interpreter; PySide6 must not end up in sys.modules."""
    names = [m.name for m in pkgutil.walk_packages(app.core.__path__, "app.core.")]
    assert len(names) >= 3
    code = (
        "import importlib, sys\n"
        f"for n in {names!r}:\n"
        "    importlib.import_module(n)\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('PySide6', 'shiboken6', 'PyQt5', 'PyQt6'))\n"
        "print(bad)\n"
        "sys.exit(1 if bad else 0)\n"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr


def test_every_python_file_under_app_is_linted() -> None:
    """ruff must read every .py of the package: an exclude that matches a package name (e.g. a bare "build")
    would silently drop that package from lint, and with it the Qt ban above."""
    r = subprocess.run([_ruff(), "check", "--no-cache", "--show-files", "app", "tests", "bench", "scripts"],
                       capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stderr
    linted = {Path(line.strip()).resolve() for line in r.stdout.splitlines() if line.strip().endswith(".py")}
    on_disk = {p.resolve() for top in ("app", "tests", "bench", "scripts") for p in (REPO / top).rglob("*.py")
               if "__pycache__" not in p.parts}
    missing = sorted(str(p.relative_to(REPO)) for p in on_disk - linted)
    assert not missing, f"not linted: {missing}"
    assert any("builder" in p.parts for p in linted)


def _citations(doc: str, stale: str) -> tuple[set[str], dict[str, list[str]], list[str]]:
    """(sections docs/<doc> has, section -> files citing `docs/<doc> §N`, files matching the `stale` pattern)."""
    import re

    text = (REPO / "docs" / doc).read_text(encoding="utf-8")
    sections = set(re.findall(r"^#{2,3} (\d+(?:\.\d+)?)[. ]", text, flags=re.M))
    cite = re.compile(re.escape(f"docs/{doc}") + r"[ ,;(]+((?:§[\d.]+(?:[ ,;]*(?:and )?)?)+)")
    cited: dict[str, list[str]] = {}
    bad: list[str] = []
    for top in ("app", "tests", "docs", "bench", "scripts"):
        for p in (REPO / top).rglob("*"):
            if p.suffix not in (".py", ".md", ".json", ".sh", ".yml") or "fixtures" in p.parts or p.name in \
                    (doc, "test_architecture.py"):
                continue
            body = p.read_text(encoding="utf-8")
            rel = str(p.relative_to(REPO))
            if re.search(stale, body):
                bad.append(rel)
            for m in cite.finditer(body):
                for n in re.findall(r"§(\d+(?:\.\d+)?)", m.group(1)):
                    cited.setdefault(n, []).append(rel)
    return sections, cited, bad


def test_contract_citations_point_into_the_repository() -> None:
    """Comments and texts cite docs/lmstudio-contract.md §N, a section that exists there; never the old
    "reference §N" of a document outside the repository."""
    sections, cited, stale = _citations(
        "lmstudio-contract.md", r"reference (lmstudio-backends\.md )?§|shared/reference/lmstudio-backends")
    assert {"1", "2.1", "9.4", "15", "16.4", "18"} <= sections
    assert not stale, f"cite docs/lmstudio-contract.md instead: {stale}"
    assert len(cited) >= 15
    missing = {n: where for n, where in cited.items() if n not in sections}
    assert not missing, f"cited sections that docs/lmstudio-contract.md does not have: {missing}"


def test_build_notes_citations_point_into_the_repository() -> None:
    """llama.cpp build facts are cited as docs/llama-build-notes.md §N (a section it has), never build.md outside."""
    sections, cited, stale = _citations("llama-build-notes.md", r"(?<![\w-])build\.md|style guide §")
    assert {"1.1", "2.1", "3.1", "4", "5", "7.2", "9"} <= sections
    assert not stale, f"cite docs/llama-build-notes.md instead: {stale}"
    assert len(cited) >= 8
    missing = {n: where for n, where in cited.items() if n not in sections}
    assert not missing, f"cited sections that docs/llama-build-notes.md does not have: {missing}"


def _lint_imports() -> str:
    exe = Path(sys.executable).with_name("lint-imports")
    return str(exe) if exe.exists() else (shutil.which("lint-imports") or "lint-imports")


def test_layer_contracts_hold_and_a_planted_violation_breaks_them(tmp_path: Path) -> None:
    """`lint-imports` (scripts/test.sh) keeps the layer rules of pyproject.toml; each planted violation, in a copy
    of the package, breaks exactly its own contract, also through an indirect import."""
    import tomllib

    config = tomllib.loads((REPO / "pyproject.toml").read_text(encoding="utf-8"))
    contracts = config["tool"]["importlinter"]["contracts"]
    n = len(contracts)
    assert {"core-is-headless", "hardware-knows-no-lmstudio", "wizard-not-cli"} <= {c["id"] for c in contracts}
    r = subprocess.run([_lint_imports(), "--no-cache"], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
    assert f"{n} kept, 0 broken" in r.stdout

    plants = {
        "core-is-headless": ("app/core/_planted.py", "from app.cli import main\n"),
        "hardware-knows-no-lmstudio": ("app/core/hardware/_planted.py", "from app.core.lmstudio import home\n"),
        "wizard-not-cli": ("app/qt/_planted.py", "import app.cli_cmds.common\n"),
    }
    for contract, (rel, code) in plants.items():
        work = tmp_path / contract
        shutil.copytree(REPO / "app", work / "app", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(REPO / "pyproject.toml", work / "pyproject.toml")
        (work / rel).write_text(code, encoding="utf-8")
        r = subprocess.run([_lint_imports(), "--no-cache"], capture_output=True, text=True, cwd=work,
                           env={**os.environ, "PYTHONPATH": str(work)})
        assert r.returncode != 0, f"{contract}: {r.stdout}"
        assert f"{n - 1} kept, 1 broken" in r.stdout and rel.replace("/", ".").removesuffix(".py") in r.stdout
        broken = [line for line in r.stdout.splitlines() if line.endswith("BROKEN")]
        assert len(broken) == 1, r.stdout

    # indirect: the probe importing a core module that itself reads LM Studio's folders is a violation too
    work = tmp_path / "indirect"
    shutil.copytree(REPO / "app", work / "app", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(REPO / "pyproject.toml", work / "pyproject.toml")
    (work / "app" / "core" / "hardware" / "_planted.py").write_text("import app.core.patchonly\n", encoding="utf-8")
    r = subprocess.run([_lint_imports(), "--no-cache"], capture_output=True, text=True, cwd=work,
                       env={**os.environ, "PYTHONPATH": str(work)})
    assert r.returncode != 0, r.stdout
    assert "app.core.hardware is not allowed to import app.core.lmstudio" in r.stdout
    assert "app.core.hardware._planted -> app.core.patchonly" in r.stdout
