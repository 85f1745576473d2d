"""The PyInstaller bundle, built by the real `scripts/build_bundle.sh` and run FROZEN, headless.

The build (about a minute on 2 cores) is cached in the persistent test cache under a hash of everything that goes
into it (sources, data, spec, scripts, pyproject, Python/PyInstaller/PySide6 versions, the names of the system's
shared libraries): a fresh machine builds it,
an unchanged tree reuses it. Nothing is stood in: the frozen executable runs as users run it, on Qt's offscreen
platform and on a real X server (Xvfb) with the xcb platform users get.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import app
from tests.conftest import HWDATA, REPO, persistent_test_cache
from tests.lmstudio_homes import make_home

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="the bundle test runs on Linux CI")

IVY = HWDATA / "cpuinfo" / "ivybridge-i5-3570k.txt"
BUILD_INPUTS = ("app", "resources", "patches", "installer.spec", "scripts/build_bundle.sh",
                "scripts/bundle_entry.py", "scripts/build_capstone_x86.py", "pyproject.toml")
SMOKE_RE = re.compile(r"^smoke: first window shown at (\d+\.\d+): (.*)$", re.M)


def _input_files() -> list[Path]:
    files: list[Path] = []
    for name in BUILD_INPUTS:
        p = REPO / name
        if p.is_file():
            files.append(p)
        elif p.is_dir():
            files += [f for f in p.rglob("*") if f.is_file() and "__pycache__" not in f.parts]
    return sorted(files)


def bundle_key() -> str:
    """Hash of every build input; the same key means the same bundle."""
    h = hashlib.sha256()
    for dist in ("pyinstaller", "PySide6-Essentials", "capstone", "pycryptodomex"):
        h.update(f"{dist}={importlib.metadata.version(dist)}\n".encode())
    h.update(sys.version.encode())
    # PyInstaller bundles the system libraries Qt links: a newly installed one changes the bundle.
    for libdir in ("/lib/x86_64-linux-gnu", "/usr/lib/x86_64-linux-gnu", "/usr/lib64", "/usr/lib"):
        if os.path.isdir(libdir):
            h.update("\n".join(sorted(n for n in os.listdir(libdir) if ".so" in n)).encode())
    for f in _input_files():
        h.update(f"{f.relative_to(REPO).as_posix()}\0".encode())
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def build_bundle(cache: Path) -> Path:
    """The bundle for this tree: reused from the cache when built before, else built (atomically) by the script."""
    key = bundle_key()
    done = cache / key
    bundle = done / "dist" / "lms-unlocked"
    if (done / "complete").is_file() and (bundle / "lms-unlocked").is_file():
        return bundle
    staging = cache / f"{key}.tmp-{os.getpid()}"
    shutil.rmtree(staging, ignore_errors=True)
    r = subprocess.run(
        ["bash", str(REPO / "scripts" / "build_bundle.sh"), "--dist", str(staging / "dist"), "--work",
         str(staging / "work")],
        cwd=REPO, capture_output=True, text=True, stdin=subprocess.DEVNULL, timeout=900, check=False,
    )
    assert r.returncode == 0, f"build_bundle.sh failed:\n{r.stdout[-4000:]}\n{r.stderr[-8000:]}"
    (staging / "build.log").write_text(r.stdout + r.stderr, encoding="utf-8")
    shutil.copy(staging / "work" / "installer" / "pruned.tsv", staging / "pruned.tsv")
    shutil.rmtree(staging / "work")
    (staging / "complete").write_text(key, encoding="utf-8")
    shutil.rmtree(done, ignore_errors=True)
    staging.rename(done)
    # Keep the two newest bundles (the tree switches back and forth between branches); drop the rest.
    entries = sorted((p for p in cache.iterdir() if p.is_dir()), key=lambda p: p.stat().st_mtime, reverse=True)
    for old in entries[2:]:
        shutil.rmtree(old, ignore_errors=True)
    return bundle


@pytest.fixture(scope="module")
def bundle() -> Path:
    return build_bundle(persistent_test_cache() / "bundle")


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    """The frozen program's environment: a throw-away HOME (so no real LM Studio home is touched), offscreen Qt."""
    xdg = tmp_path / "xdg"
    xdg.mkdir(mode=0o700)
    (tmp_path / "home").mkdir()
    e = {**os.environ, "HOME": str(tmp_path / "home"), "XDG_RUNTIME_DIR": str(xdg), "QT_QPA_PLATFORM": "offscreen"}
    e.pop("PYTHONPATH", None)  # the frozen program must not need (or see) the source tree
    return e


def frozen(bundle: Path, *args: str, env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(bundle / "lms-unlocked"), *args], capture_output=True, text=True, env=env,
                          cwd=env["HOME"], stdin=subprocess.DEVNULL, timeout=timeout, check=False)


def from_source(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "app", *args], capture_output=True, text=True,
                          env={**env, "PYTHONPATH": str(REPO)}, cwd=REPO, stdin=subprocess.DEVNULL, timeout=120,
                          check=False)


def test_version(bundle: Path, env: dict[str, str]) -> None:
    r = frozen(bundle, "--version", env=env)
    assert r.returncode == 0 and r.stdout.strip() == f"lms-unlocked {app.__version__}", r.stderr


def _source_modules() -> set[str]:
    mods = set()
    for f in (REPO / "app").rglob("*.py"):
        parts = list(f.relative_to(REPO).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        mods.add(".".join(parts))
    return mods - {"app.__main__"}


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*")
                  if p.is_file() and "__pycache__" not in p.parts and p.suffix not in (".py", ".pyc"))


def test_frozen_self_test_sees_every_module_and_data_file(bundle: Path, env: dict[str, str], tmp_path: Path) -> None:
    out = tmp_path / "selftest.json"
    r = frozen(bundle, env={**env, "LMS_UNLOCKED_BUNDLE_SELFTEST": str(out)})
    report: dict[str, Any] = json.loads(out.read_text(encoding="utf-8"))
    broken = {k: v for k, v in report["modules"].items() if v != "ok"}
    assert r.returncode == 0 and not broken, broken
    # Every app.* module (the CLI imports sub-commands by name, so these are hidden imports) is in and imports.
    assert set(report["modules"]) == _source_modules()
    internal = bundle / "_internal"
    assert report["frozen"] and Path(report["meipass"]) == internal == Path(report["resource_root"])
    # app.core.paths finds the data files where the spec put them, all of them.
    assert Path(report["data_path"]) == internal / "app" / "data"
    assert report["data_files"] == _files(REPO / "app" / "data")
    # icon.ico only in the Windows bundle: PyInstaller embeds it in the .exe, nothing reads it at run time
    assert report["resource_files"] == [f for f in _files(REPO / "resources") if not f.endswith(".ico")]
    assert report["patch_files"] == _files(REPO / "patches")
    assert report["version"] == app.__version__ and report["stdio"] == {"stdin": True, "stdout": True, "stderr": True}
    assert Path(report["qt"]["plugins"]) == internal / "PySide6" / "Qt" / "plugins"


def test_frozen_program_runs_without_standard_streams(bundle: Path, env: dict[str, str], tmp_path: Path) -> None:
    """The windowed Windows executable starts with sys.stdin/stdout/stderr = None. Stood in for here by closing
    the three descriptors (CPython then sets the same None streams): a command still runs to exit code 0."""
    out = tmp_path / "selftest.json"
    script = 'exec "$0" "$@" <&- >&- 2>&-'
    r = subprocess.run(["bash", "-c", script, str(bundle / "lms-unlocked")],
                       env={**env, "LMS_UNLOCKED_BUNDLE_SELFTEST": str(out)}, timeout=120, check=False)
    assert r.returncode == 0
    assert json.loads(out.read_text(encoding="utf-8"))["stdio"] == {"stdin": False, "stdout": False, "stderr": False}
    r = subprocess.run(["bash", "-c", script, str(bundle / "lms-unlocked"), "probe", "--json"], env=env,
                       timeout=120, check=False)
    assert r.returncode == 0  # from source (no devnull streams) this exits 1: AttributeError on sys.stdout None


def test_bundle_holds_qt_widgets_only_and_the_pruning_kept_what_runs(bundle: Path) -> None:
    internal = bundle / "_internal"
    names = {p.relative_to(internal).as_posix() for p in internal.rglob("*")}
    for banned in ("tkinter", "_tkinter", "PyQt5", "PyQt6", "PySide2", "numpy", "pytest", "yaml"):
        assert not any(n == banned or n.startswith((banned + "/", banned + ".")) for n in names), banned
    for lib in ("QtNetwork", "QtQml", "QtQuick", "QtOpenGLWidgets", "QtPdf", "QtTest"):
        assert not any(f"libQt6{lib}." in n or f"PySide6/{lib}." in n for n in names), lib
    assert not any(Path(n).name.startswith("libvulkan.so") for n in names), "the system Vulkan loader must be used"
    plugins = internal / "PySide6" / "Qt" / "plugins"
    kept = {p.name for p in (plugins / "platforms").iterdir()}
    assert {"libqxcb.so", "libqwayland.so", "libqoffscreen.so"} <= kept
    assert not any("eglfs" in k or "vnc" in k or "linuxfb" in k for k in kept)
    assert not (plugins / "platformthemes" / "libqgtk3.so").exists()
    assert not (internal / "libcairo.so.2").exists()  # only the GTK3 theme needed it: dropped with it
    assert not (internal / "PySide6" / "Qt" / "translations").exists()
    icu = next((internal / "PySide6" / "Qt" / "lib").glob("libicudata.so.*"))
    assert icu.stat().st_size < 100_000  # the stub, not the 32 MB data library
    # Every kept binary still finds its libraries inside the bundle or on the system (nothing pruned too much).
    missing = []
    for so in [*internal.rglob("*.so"), *internal.rglob("*.so.*")]:
        if so.is_symlink():
            continue
        r = subprocess.run(["ldd", str(so)], capture_output=True, text=True, check=False,
                           env={**os.environ, "LD_LIBRARY_PATH": str(internal)})
        missing += [f"{so.name}: {line.strip()}" for line in r.stdout.splitlines() if "not found" in line]
    assert not missing, missing


def test_app_uses_no_qt_feature_that_needs_icu_data() -> None:
    """The Linux bundle ships ICU stub data (installer.spec): these Qt APIs would silently degrade there."""
    needs_icu = re.compile(r"\b(QCollator|QStringDecoder|QStringEncoder|QStringConverter|localeAwareCompare)\b")
    hits = [f"{f.relative_to(REPO)}:{i}" for f in (REPO / "app").rglob("*.py")
            for i, line in enumerate(f.read_text(encoding="utf-8").splitlines(), 1) if needs_icu.search(line)]
    assert not hits, f"uses ICU-backed Qt APIs; keep the full ICU data in installer.spec: {hits}"


def _comparable(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in ("created_at", "disk_free_bytes", "disk_measured_at")}


def test_probe_json_frozen_equals_source(bundle: Path, env: dict[str, str]) -> None:
    r = frozen(bundle, "probe", "--json", env=env)
    assert r.returncode == 0, r.stderr
    report = json.loads(r.stdout)
    assert report["cpu"]["isa"] and report["vulkan_devices"], "the frozen probe saw no CPU ISA / Vulkan device"
    s = from_source("probe", "--json", env=env)
    assert s.returncode == 0, s.stderr
    assert _comparable(report) == _comparable(json.loads(s.stdout))


def test_doctor_json_against_a_temp_home(bundle: Path, env: dict[str, str], tmp_path: Path) -> None:
    home = make_home(tmp_path, backends=["linux-cpu-2.14.0", "linux-vulkan-2.14.0"],
                     settings={"autoUpdateExtensionPacks": True})
    args = ("doctor", "--json", "--home", str(home), "--cpuinfo", str(IVY))
    r = frozen(bundle, *args, env=env)
    doc = json.loads(r.stdout)
    assert doc["ok"] is True and doc["findings"], r.stderr
    s = from_source(*args, env=env)
    assert (r.returncode, doc) == (s.returncode, json.loads(s.stdout))


def _normalized(text: str, bundle: Path) -> Any:
    """A command's JSON with what legitimately differs between two runs made equal: the resource root (frozen:
    the bundle, source: the checkout), timings, and random transaction ids."""
    text = text.replace(str(bundle / "_internal"), str(REPO))
    text = re.sub(r"(staging|backups?|txn|transactions?)([/\\])[0-9a-f]{8,32}", r"\1\2<id>", text)
    doc = json.loads(text)

    def scrub(x: Any) -> Any:
        if isinstance(x, dict):
            return {k: scrub(v) for k, v in x.items() if k not in ("seconds", "elapsed", "duration", "created_at")}
        if isinstance(x, list):
            return [scrub(v) for v in x]
        return x

    return scrub(doc)


@pytest.mark.parametrize("what", ["audit", "catalog", "catalog-keyring", "catalog-wrong-key", "archive", "build-plan"])
def test_frozen_commands_with_native_and_data_dependencies_equal_source(
    what: str, bundle: Path, env: dict[str, str], tmp_path: Path
) -> None:
    """Each exercises what only works frozen if the spec collected it: capstone's x86-only ctypes library (audit),
    pycryptodomex's ed25519 + jsonschema on a catalog published here (catalog), the shipped key ring and its schema
    (catalog-keyring: it has no active key yet, so the same refusal both ways), a P-256 key refused the same way
    although the bundle leaves out NIST-curve arithmetic (catalog-wrong-key), py7zr and its codecs (archive), the
    variants data and patches/ series (build plan)."""
    import py7zr

    from app.core.fetch.publish import publish
    from tests.conftest import FIXTURES
    from tests.core.fetch.backend_folder import make_backend_folder
    from tests.lmstudio_homes import prepare_our_backend

    home = make_home(tmp_path, backends=["linux-cpu-2.14.0", "linux-vulkan-2.14.0"])
    cat = tmp_path / "cat"
    if what.startswith("catalog"):
        key = FIXTURES / "TEST-ONLY-catalog-signing.key"
        publish(make_backend_folder(tmp_path / "pub", payload=1000), cat, key_path=key)
    argv = {
        "audit": ["audit", str(bundle / "_internal" / "libpython3.11.so.1.0"), "--json", "--cpuinfo", str(IVY)],
        "catalog": ["install", "--catalog", str(cat), "--dry-run", "--json", "--home", str(home), "--cpuinfo", str(IVY),
                    "--entry", "llama.cpp-linux-x86_64-vulkan-avx1-unlocked@2.14.0",
                    "--public-key", str(FIXTURES / "TEST-ONLY-catalog-signing.pub")],
        "catalog-keyring": ["install", "--catalog", str(cat), "--dry-run", "--json", "--home", str(home), "--cpuinfo",
                            str(IVY)],
        "catalog-wrong-key": ["install", "--catalog", str(cat), "--dry-run", "--json", "--home", str(home), "--cpuinfo",
                              str(IVY), "--public-key", str(tmp_path / "p256.pem")],
        "archive": ["install", "--from", str(tmp_path / "ours.7z"), "--dry-run", "--json", "--home", str(home)],
        "build-plan": ["build", "--variant", "cpu-avx1", "--template", "llama.cpp-linux-x86_64-avx2@2.14.0",
                       "--home", str(home), "--cpuinfo", str(IVY), "--plan-only", "--json"],
    }[what]
    if what == "catalog-wrong-key":
        from Cryptodome.PublicKey import ECC

        (tmp_path / "p256.pem").write_text(ECC.generate(curve="P-256").public_key().export_key(format="PEM"))
    if what == "archive":
        folder = prepare_our_backend(tmp_path)
        with py7zr.SevenZipFile(tmp_path / "ours.7z", "w") as z:
            z.writeall(folder, folder.name)
    r = frozen(bundle, *argv, env=env)
    s = from_source(*argv, env=env)
    assert r.stdout.strip(), r.stderr
    assert (r.returncode, _normalized(r.stdout, bundle)) == (s.returncode, _normalized(s.stdout, bundle))
    assert "internal-error" not in r.stdout and "Traceback" not in r.stderr


def test_frozen_signing_key_and_signature_verify_from_source(bundle: Path, env: dict[str, str],
                                                              tmp_path: Path) -> None:
    """The frozen `publish` makes a key and signs a catalog (pycryptodomex's ed25519 and its random source inside the
    bundle); the source tree verifies that signature with the public key the frozen program wrote."""
    from app.core.fetch.signing import load_public_key, verify_bytes
    from tests.lmstudio_homes import prepare_our_backend

    key = tmp_path / "k.pem"
    r = frozen(bundle, "publish", "--new-key", str(key), env=env)
    assert r.returncode == 0 and key.is_file() and (tmp_path / "k.pem.pub").is_file(), r.stderr
    folder = prepare_our_backend(tmp_path)
    r = frozen(bundle, "publish", str(folder), "--out", str(tmp_path / "cat"), "--key", str(key), "--no-audit",
               "--full", "--json", env=env)  # a pack of ours alone: published whole
    assert r.returncode == 0, r.stdout + r.stderr
    catalog = tmp_path / "cat" / "catalog.json"
    pub = load_public_key(tmp_path / "k.pem.pub")
    sig = (tmp_path / "cat" / "catalog.json.sig").read_text(encoding="utf-8")
    assert verify_bytes(catalog.read_bytes(), sig, pub, what="catalog") == json.loads(r.stdout)["key_id"]


def test_linux_bundle_leaves_system_libraries_to_the_system_and_holds_x86_only_capstone(bundle: Path) -> None:
    """installer.spec's LINUX_SYSTEM_LIBS are not bundled (the system's are used, as by the PySide6 wheel), the
    xcb-util libraries minimal installs lack are, and capstone's library is the x86-only build."""
    import ctypes

    import capstone

    internal = bundle / "_internal"
    top = {p.name for p in internal.iterdir()}
    for lib in ("libstdc++.so.6", "libgcc_s.so.1", "libX11.so.6", "libxkbcommon.so.0", "libglib-2.0.so.0",
                "libdbus-1.so.3", "libfontconfig.so.1", "libfreetype.so.6", "libzstd.so.1", "libXau.so.6",
                "libsystemd.so.0", "libgcrypt.so.20", "libpcre2-8.so.0"):
        assert lib not in top, lib
    assert {"libxcb-cursor.so.0", "libxcb-icccm.so.4", "libxkbcommon-x11.so.0"} <= top
    assert not [p for p in internal.rglob("*") if p.is_symlink() and not p.exists()], "dangling links"
    lib = internal / "capstone" / "lib" / "libcapstone.so"
    wheel_lib = Path(capstone.__file__).parent / "lib" / "libcapstone.so"
    assert lib.stat().st_size < wheel_lib.stat().st_size / 2
    cs = ctypes.CDLL(str(lib))
    cs.cs_support.restype = ctypes.c_bool
    assert cs.cs_support(capstone.CS_ARCH_X86) and not cs.cs_support(capstone.CS_ARCH_ARM)


# The oldest distribution each glibc release admits, and the libstdc++ it ships (GLIBCXX_3.4.N): RHEL 9 (glibc 2.34,
# GCC 11: 3.4.29), Ubuntu 22.04 (2.35, GCC 12: 3.4.30), Debian 12 (2.36, GCC 12: 3.4.30).
OLDEST_LIBSTDCXX_FOR_GLIBC = {34: 29, 35: 30, 36: 30}


def _needed_versions(path: Path) -> dict[str, set[str]]:
    """ELF version requirements of `path`: {needed library: {version names}} (e.g. libc.so.6: {GLIBC_2.34})."""
    from elftools.elf.elffile import ELFFile
    from elftools.elf.gnuversions import GNUVerNeedSection

    out: dict[str, set[str]] = {}
    with path.open("rb") as fh:
        if fh.read(4) != b"\x7fELF":
            return out
        fh.seek(0)
        for section in ELFFile(fh).iter_sections():
            if isinstance(section, GNUVerNeedSection):
                for verneed, auxes in section.iter_versions():
                    out.setdefault(verneed.name, set()).update(aux.name for aux in auxes)
    return out


def test_system_libstdcxx_is_new_enough_wherever_the_bundle_runs(bundle: Path) -> None:
    """libstdc++ is left to the system (installer.spec): the newest GLIBCXX any bundled binary needs must be in the
    libstdc++ of the oldest distribution whose glibc is new enough for the bundle at all."""
    glibc, glibcxx = 0, 0
    for so in (bundle / "_internal").rglob("*.so*"):
        if so.is_symlink() or not so.is_file():
            continue
        for lib, names in _needed_versions(so).items():
            for name in names:
                if lib.startswith("libc.so") and name.startswith("GLIBC_2."):
                    glibc = max(glibc, int(name.split(".")[1]))
                elif lib.startswith("libstdc++") and name.startswith("GLIBCXX_3.4."):
                    glibcxx = max(glibcxx, int(name.split(".")[2]))
    assert glibc in OLDEST_LIBSTDCXX_FOR_GLIBC, f"glibc 2.{glibc}: add its oldest distribution's libstdc++"
    assert glibcxx <= OLDEST_LIBSTDCXX_FOR_GLIBC[glibc], (glibc, glibcxx)
    assert glibcxx >= 29  # the Qt libraries do need a recent libstdc++: the check saw them


def test_icu_stubs_answer_as_the_real_icu_libraries(bundle: Path, env: dict[str, str], tmp_path: Path) -> None:
    """The bundle's stub libicui18n answers Qt exactly as the wheel's real one does with the (stub) ICU data: the
    frozen self-test's report of QCollator, sort keys, QTimeZone names/ids, case mapping and codecs, and Qt's
    warnings, are the same from the bundle as built and from a copy holding the wheel's real libicui18n."""
    import PySide6

    qt_lib = Path(PySide6.__file__).parent / "Qt" / "lib"
    real = next(qt_lib.glob("libicui18n.so.*"))
    stub = bundle / "_internal" / "PySide6" / "Qt" / "lib" / real.name
    assert stub.stat().st_size < 100_000 < real.stat().st_size  # the stub is what ships
    copy = tmp_path / "bundle-real-icu"
    shutil.copytree(bundle, copy, symlinks=True)
    shutil.copy2(real, copy / "_internal" / "PySide6" / "Qt" / "lib" / real.name)
    answers = []
    for b in (bundle, copy):
        out = tmp_path / f"{b.name}.json"
        r = frozen(b, env={**env, "LMS_UNLOCKED_BUNDLE_SELFTEST": str(out), "LMS_UNLOCKED_BUNDLE_SELFTEST_ICU": "1"})
        assert r.returncode == 0, r.stderr
        answers.append((json.loads(out.read_text(encoding="utf-8"))["icu"], r.stderr))
    assert answers[0] == answers[1]
    icu = answers[0][0]
    # The probe is not vacuous: it saw Qt's own fallbacks (code-point collation, tz abbreviations, case mapping).
    assert icu["tz/Europe/Berlin"][:3] == [True, "Europe/Berlin", ""] and "CET" in icu["tz/Europe/Berlin"]
    assert icu["case"][1].startswith("İSTANBUL") and any(v != 0 for v in icu["collate/de_DE"])


def _run_wizard(bundle: Path, env: dict[str, str]) -> tuple[subprocess.CompletedProcess[str], float]:
    start = time.time()
    r = frozen(bundle, env={**env, "LMS_UNLOCKED_SMOKE_EXIT_MS": "300"}, timeout=60)
    return r, start


def _assert_clean_wizard_run(r: subprocess.CompletedProcess[str], start: float) -> None:
    m = SMOKE_RE.search(r.stderr)
    assert r.returncode == 0 and m, f"rc={r.returncode}\n{r.stderr}"
    assert m.group(2) == app.APP_NAME and start < float(m.group(1)) < time.time()
    noise = [line for line in r.stderr.splitlines() if line and not SMOKE_RE.match(line)]
    assert not noise, noise  # no Qt warning, no "QThread: Destroyed while thread is still running", no traceback


def test_wizard_opens_offscreen_and_closes_cleanly(bundle: Path, env: dict[str, str]) -> None:
    _assert_clean_wizard_run(*_run_wizard(bundle, env))


@pytest.fixture
def xvfb_display(tmp_path: Path) -> Iterator[str]:
    xvfb = shutil.which("Xvfb")
    if xvfb is None:
        pytest.skip("Xvfb is not installed (scripts/test.sh installs it)")
    read, write = os.pipe()
    proc = subprocess.Popen([xvfb, "-displayfd", str(write), "-screen", "0", "1280x800x24", "-nolisten", "tcp"],
                            pass_fds=(write,), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    os.close(write)
    try:
        with os.fdopen(read) as fh:
            display = fh.readline().strip()
        assert display, "Xvfb did not report a display"
        yield f":{display}"
    finally:
        proc.terminate()
        proc.wait(10)


def test_wizard_opens_on_a_real_x_server(bundle: Path, env: dict[str, str], xvfb_display: str) -> None:
    """The xcb platform plugin (what Linux users get) loads with the bundled libraries and shows the wizard."""
    x_env = {**env, "DISPLAY": xvfb_display, "QT_QPA_PLATFORM": "xcb"}
    x_env.pop("WAYLAND_DISPLAY", None)
    _assert_clean_wizard_run(*_run_wizard(bundle, x_env))


# Every call in app/ passes stdin and the no-console flags now; keep it that way.
KNOWN_BARE_SUBPROCESS_CALLS: set[str] = set()


def _bare_subprocess_calls() -> set[str]:
    """subprocess.run/Popen/... in app/ without stdin set or without the no-console flags (popen_platform_kwargs or
    creationflags): in the windowed Windows bundle such a child flashes a console window / gets no valid stdin."""
    import ast

    found = set()
    for f in sorted((REPO / "app").rglob("*.py")):
        tree = ast.parse(f.read_text(encoding="utf-8"))
        scopes = [n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)]
        for node in ast.walk(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and isinstance(node.func.value, ast.Name) and node.func.value.id == "subprocess"
                    and node.func.attr in ("run", "Popen", "call", "check_call", "check_output")):
                continue
            kw = {k.arg for k in node.keywords}
            splat = any(k.arg is None for k in node.keywords)  # **popen_platform_kwargs()
            if "stdin" in kw and ("creationflags" in kw or splat):
                continue
            scope = min((s for s in scopes if s.lineno <= node.lineno <= (s.end_lineno or s.lineno)),
                        key=lambda s: (s.end_lineno or s.lineno) - s.lineno, default=None)
            found.add(f"{f.relative_to(REPO).as_posix()}:{scope.name if scope else node.lineno}")
    return found


def test_child_processes_get_no_console_window_and_all_three_streams() -> None:
    new = _bare_subprocess_calls() - KNOWN_BARE_SUBPROCESS_CALLS
    assert not new, (f"pass stdin=subprocess.DEVNULL and **popen_platform_kwargs() (app.core.runner) to: {sorted(new)}")
