"""The GitHub Actions workflows cannot run here: check their syntax, structure, and that every command they run
exists and parses with the real CLI parser (so a renamed flag breaks this test, not a release)."""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
import tarfile
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.cli import build_parser
from tests.conftest import REPO
from tests.httpserver import LocalHTTPServer

WORKFLOWS = REPO / ".github" / "workflows"
EXPR = re.compile(r"\$\{\{\s*(.*?)\s*\}\}")


def load(name: str) -> dict[str, Any]:
    doc = yaml.safe_load((WORKFLOWS / name).read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    # YAML 1.1 reads the key `on` as True.
    doc["on"] = doc.pop(True, doc.get("on"))
    return doc


def all_workflows() -> list[str]:
    return sorted(p.name for p in WORKFLOWS.glob("*.yml"))


def steps(doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    return [(job, step) for job, spec in doc["jobs"].items() for step in spec["steps"]]


def matrix_rows(job: dict[str, Any]) -> list[dict[str, Any]]:
    m = job.get("strategy", {}).get("matrix", {})
    axes = {k: v for k, v in m.items() if k not in ("include", "exclude")}
    rows: list[dict[str, Any]] = [{}]
    for key, values in axes.items():
        rows = [{**r, key: v} for r in rows for v in values]
    if m.get("include"):
        rows = [r for r in rows if r] + list(m["include"])
    return rows


def test_the_workflows_exist() -> None:
    assert {"bundle.yml", "backends.yml", "test.yml"} <= set(all_workflows())


def test_the_test_workflow_runs_the_readme_test_command_on_every_push_and_pull_request() -> None:
    doc = load("test.yml")
    assert set(doc["on"]) >= {"push", "pull_request"}
    for trigger in ("push", "pull_request"):
        assert not (doc["on"][trigger] or {}), f"{trigger}: no branch or path filter, every one runs the tests"
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    command = "bash scripts/test.sh"
    assert f"\n    {command}\n" in readme, "the README's test command"
    (job,) = doc["jobs"].values()
    assert job["runs-on"].startswith("ubuntu-")  # scripts/test.sh installs Debian/Ubuntu packages with apt
    runs = [s["run"].strip() for s in job["steps"] if "run" in s]
    assert runs == [command], runs
    setup = [s for s in job["steps"] if s.get("uses", "").startswith("actions/setup-python")]
    assert [s["with"]["python-version"] for s in setup] == ["3.11"]
    # nothing outside the checkout: the command must not need ../shared
    assert "shared" not in yaml.safe_dump(job)


@pytest.mark.parametrize("name", all_workflows())
def test_structure(name: str) -> None:
    doc = load(name)
    assert isinstance(doc["name"], str) and doc["on"], "a workflow needs a name and triggers"
    assert doc.get("permissions") == {"contents": "read"}, "least privilege by default; jobs widen it"
    for job_name, job in doc["jobs"].items():
        assert "runs-on" in job and job["steps"], job_name
        for need in [job["needs"]] if isinstance(job.get("needs"), str) else job.get("needs", []):
            assert need in doc["jobs"], f"{job_name} needs unknown job {need}"
    for job_name, step in steps(doc):
        assert ("uses" in step) != ("run" in step), f"{job_name}: a step has exactly one of uses/run: {step}"
        if "uses" in step:
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@v\d+(\.\d+)*", step["uses"]), f"pin actions to a version: {step}"


@pytest.mark.parametrize("name", all_workflows())
def test_expressions_name_only_what_exists(name: str) -> None:
    doc = load(name)
    for job_name, job in doc["jobs"].items():
        text = yaml.safe_dump(job)
        keys = {k for row in matrix_rows(job) for k in row}
        for expr in EXPR.findall(text):
            for ref in re.findall(r"\bmatrix\.(\w+)", expr):
                assert ref in keys, f"{name}:{job_name} uses matrix.{ref}, not in its matrix"
            for ref in re.findall(r"\bsecrets\.(\w+)", expr):
                assert ref == "CATALOG_SIGNING_KEY" and job_name == "publish", "the signing key lives in publish only"
            for ref in re.findall(r"\bneeds\.(\w+)", expr):
                assert ref in doc["jobs"]


@pytest.mark.parametrize("name", all_workflows())
def test_scripts_they_call_exist(name: str) -> None:
    for _job, step in steps(load(name)):
        for script in re.findall(r"\bbash\s+(scripts/\S+)", step.get("run", "")):
            assert (REPO / script).is_file(), script


def test_bundle_matrix_builds_on_three_systems_with_the_test_suites_script() -> None:
    doc = load("bundle.yml")
    oses = {row["os"].split("-")[0] for row in matrix_rows(doc["jobs"]["build"])}
    assert oses == {"ubuntu", "windows", "macos"}
    runs = [s.get("run", "") for _j, s in steps(doc)]
    assert any("bash scripts/build_bundle.sh --clean-venv --archive" in r for r in runs)
    # The local test suite builds the bundle through the very same script.
    assert "scripts/build_bundle.sh" in (REPO / "tests" / "test_bundle.py").read_text(encoding="utf-8")


def _cli_invocations(doc: dict[str, Any]) -> list[tuple[dict[str, Any], list[str]]]:
    """Every `lms-unlocked ...` command, once per matrix row, with ${{ matrix.* }} filled in."""
    out = []
    for job in doc["jobs"].values():
        for step in job["steps"]:
            lines = step.get("run", "").replace("\\\n", " ").splitlines()  # one shell line each
            for row in matrix_rows(job) or [{}]:
                for line in lines:
                    filled = EXPR.sub(lambda m, row=row: str(row.get(m.group(1).removeprefix("matrix."), "X")), line)
                    for cmd in re.findall(r"lms-unlocked\s+([^;|&]+)", filled):
                        out.append((row, [a.replace("$", "") for a in shlex.split(cmd.replace('"', ""))]))
    return out


def test_backend_commands_parse_with_the_real_cli() -> None:
    doc = load("backends.yml")
    invocations = _cli_invocations(doc)
    commands = {argv[0] for _row, argv in invocations}
    assert {"build", "publish"} <= commands
    parser = build_parser()
    for _row, argv in invocations:
        args = parser.parse_args(argv)  # SystemExit (a failed test) on an unknown flag or command
        assert args.command == argv[0]
        if argv[0] == "build":
            assert args.generic and args.template_dir and args.json, "release builds use generic flags"
        if argv[0] == "publish" and args.merge:
            # Only the publish job signs, and its key comes from the CI secret store, never from a file.
            assert args.key_env == "CATALOG_SIGNING_KEY" and not args.key and args.out
        elif argv[0] == "publish":
            # Build jobs publish overlays (on the template they built from), unsigned, filed by variant.
            assert args.template and args.variant and args.out and not args.full
            assert not args.key and not args.key_env, "the signing key never reaches a build runner"


def _cc(text: str) -> tuple[int, ...]:
    return tuple(int(x) for x in text.split("."))


def test_backend_matrix_covers_every_variant_on_windows_and_linux() -> None:
    from app.core.builder.plan import parse_variant
    from app.core.hardware.probe import load_report_file

    variants = {v["id"]: v for v in
                json.loads((REPO / "app" / "data" / "variants.json").read_text(encoding="utf-8"))["variants"]}
    rows = matrix_rows(load("backends.yml")["jobs"]["build"])
    for row in rows:
        build = parse_variant(row["variant"])  # a build variant the real `build` accepts
        catalog = variants[row["catalog_variant"]]  # ... filed under a variant the app recommends
        assert build.framework == {"none": "cpu"}.get(catalog["gpu_framework"], catalog["gpu_framework"]), row
        platform = "linux" if row["os"].startswith("ubuntu") else "win"
        assert row["template"].startswith(f"llama.cpp-{platform}-x86_64-"), row
        assert re.fullmatch(r"\d+\.\d+\.\d+", row["version"]), row
        # The template is the official pack of the same framework: the variant keeps its .node bindings.
        family = {"vulkan": "-vulkan-avx2", "cuda": "-nvidia-cuda-avx2"}.get(build.framework, "-x86_64-avx2")
        assert row["template"].endswith(family), row
        assert bool(row["cuda_toolkit"]) == (build.framework == "cuda"), row
        if build.framework == "cuda":
            # The GPU class comes from a target report; its compute capabilities must fit the catalog variant,
            # Kepler (< 5.0) only with the -kepler build and CUDA 11.x, the rest with CUDA 12.
            report_arg = re.search(r"--report (\S+)", row["build_args"])
            assert report_arg, row
            report = load_report_file(REPO / report_arg.group(1))
            ccs = [_cc(g.compute_capability) for g in report.nvidia_gpus]
            req = catalog["requires"]
            assert ccs and all(_cc(req["nvidia_cc_min"]) <= c <= _cc(req["nvidia_cc_max"]) for c in ccs), row
            kepler = any(c < (5, 0) for c in ccs)
            assert kepler == ("kepler" in build.tags) and all(c < (5, 0) for c in ccs) == kepler, row
            assert row["cuda_toolkit"].startswith("11.8" if kepler else "12."), row
    for platform, runner in (("linux", "ubuntu"), ("win", "windows")):
        wanted = {k for k, v in variants.items() if platform in v["requires"].get("platforms", [platform])}
        assert {r["catalog_variant"] for r in rows if r["os"].startswith(runner)} == wanted, platform


def test_templates_are_only_used_pinned() -> None:
    doc = load("backends.yml")
    fetch = next(s["run"] for _j, s in steps(doc) if "fetch_template.sh" in s.get("run", ""))
    assert "${{ matrix.template }} ${{ matrix.version }}" in fetch
    script = (REPO / "scripts" / "fetch_template.sh").read_text(encoding="utf-8")
    assert "https://extensions.lmstudio.ai" in script and "sha256sum -c" in script
    assert ".github/backend-templates.sha256" in script
    pins = (REPO / ".github" / "backend-templates.sha256").read_text(encoding="utf-8").splitlines()
    assert all(line.startswith("#") or re.fullmatch(r"[0-9a-f]{64}  backend-\S+\.tar\.gz", line) for line in pins)


def _fetch(tmp_path: Path, srv: LocalHTTPServer, pins: str, name: str = "llama.cpp-linux-x86_64-avx2"
           ) -> subprocess.CompletedProcess[str]:
    tmp_path.mkdir(parents=True, exist_ok=True)
    (tmp_path / "pins").write_text(pins)
    env = {**os.environ, "LMS_TEMPLATE_BASE_URL": srv.url("").rstrip("/"), "LMS_TEMPLATE_PINS": str(tmp_path / "pins")}
    return subprocess.run(["bash", str(REPO / "scripts" / "fetch_template.sh"), name, "2.14.0", str(tmp_path / "t")],
                          capture_output=True, text=True, env=env, timeout=60, stdin=subprocess.DEVNULL)


def test_fetch_template_script_over_loopback(tmp_path: Path) -> None:
    """The workflow's template step for real: a stand-in official pack (tests/lmstudio_homes.py) packed the way LM
    Studio's download location serves it, fetched over a loopback HTTP server, taken only when pinned and equal."""
    from tests.lmstudio_homes import write_backend

    pack = write_backend(tmp_path / "src" / "llama.cpp-linux-x86_64-avx2-2.14.0", "linux-cpu-2.14.0")
    tgz = tmp_path / "backend-llama.cpp-linux-x86_64-avx2-2.14.0.tar.gz"
    with tarfile.open(tgz, "w:gz") as tf:
        tf.add(pack, pack.name)
    sha = hashlib.sha256(tgz.read_bytes()).hexdigest()
    with LocalHTTPServer() as srv:
        srv.add("/" + tgz.name, tgz)
        ok = _fetch(tmp_path, srv, f"# pins\n{sha}  {tgz.name}\n")
        assert ok.returncode == 0, ok.stderr
        folder = Path(ok.stdout.strip())
        assert (folder / "backend-manifest.json").read_bytes() == (pack / "backend-manifest.json").read_bytes()
        assert folder.name == pack.name and (folder / "libggml-cpu.so").is_symlink()
        wrong = _fetch(tmp_path / "w", srv, f"{'0' * 64}  {tgz.name}\n")
        assert wrong.returncode == 1 and "does not have the pinned sha256" in wrong.stderr
        unpinned = _fetch(tmp_path / "u", srv, "# nothing pinned\n")
        assert unpinned.returncode == 1 and "is not pinned" in unpinned.stderr
        assert not (tmp_path / "w" / "t").exists() and not (tmp_path / "u" / "t").exists()


def test_release_is_the_apps_default_catalog() -> None:
    """The publish job uploads to the release whose catalog.json the app loads by default."""
    from app.core.fetch.catalog import DEFAULT_CATALOG_URL, RELEASE_TAG

    upload = next(s["run"] for _j, s in steps(load("backends.yml")) if "gh release upload" in s.get("run", ""))
    assert f"gh release upload {RELEASE_TAG} " in upload and "catalog/*" in upload
    assert DEFAULT_CATALOG_URL.endswith(f"/releases/download/{RELEASE_TAG}/catalog.json")
