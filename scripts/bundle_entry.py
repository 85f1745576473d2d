"""Entry point of the PyInstaller bundle (installer.spec): the same program as `python -m app`, plus two things
only a frozen program needs.

* `multiprocessing.freeze_support()` first: py-cpuinfo (the CPU probe off Linux) runs CPUID in a
  multiprocessing child; a frozen Windows/macOS program is re-launched for that child and must divert to it
  before parsing our command line (otherwise the child would open a second wizard).
* The windowed Windows executable has no standard streams (sys.stdout/stderr/stdin are None): they are pointed at
  os.devnull so a library's print, a log handler or a CLI command run from the wrong executable cannot crash it
  (the console twin `lms-unlocked-cli.exe` is the one for the command line).
* `LMS_UNLOCKED_BUNDLE_SELFTEST=FILE` (or `-` for stdout): instead of starting, write a JSON report of what the
  frozen program can see (resource root, data/resource/patch files, whether every `app.*` module imports, the Qt
  build) and exit 0 if every module imported. tests/test_bundle.py uses it to check the bundle from the inside:
  hidden imports and data files placed where app.core.paths looks. With `LMS_UNLOCKED_BUNDLE_SELFTEST_ICU=1` the
  report also holds what Qt's ICU-backed APIs answer (icu_probe).
"""

from __future__ import annotations

import multiprocessing
import os
import sys

# Which standard streams the OS gave the process, before _null_missing_streams() fills the gaps.
ORIGINAL_STDIO = {name: getattr(sys, name) is not None for name in ("stdin", "stdout", "stderr")}


def _null_missing_streams() -> None:
    for name, mode in (("stdin", "r"), ("stdout", "w"), ("stderr", "w")):
        if getattr(sys, name) is None:
            setattr(sys, name, open(os.devnull, mode, encoding="utf-8"))  # noqa: SIM115 - lives as long as the process


def _files_under(root: str) -> list[str]:
    out: list[str] = []
    for dirpath, _dirs, files in os.walk(root):
        out.extend(os.path.relpath(os.path.join(dirpath, f), root).replace(os.sep, "/") for f in files)
    return sorted(out)


def selftest() -> dict[str, object]:
    """What the frozen program sees. Imports every app.* module (that is the point), so it is slow-ish (~1 s)."""
    import importlib
    import pkgutil
    import traceback

    import app
    from app.core import paths

    modules: dict[str, str] = {"app": "ok"}
    for info in pkgutil.walk_packages(app.__path__, "app."):
        if info.name == "app.__main__":  # running it is starting the program
            continue
        try:
            importlib.import_module(info.name)
            modules[info.name] = "ok"
        except Exception:
            modules[info.name] = traceback.format_exc(limit=3)
    qt: dict[str, str] = {}
    try:
        from PySide6 import QtCore

        qt = {
            "version": QtCore.qVersion(),
            "plugins": QtCore.QLibraryInfo.path(QtCore.QLibraryInfo.LibraryPath.PluginsPath),
        }
    except Exception as exc:  # reported, not fatal: the CLI works without Qt
        qt = {"error": repr(exc)}
    return {
        "frozen": bool(getattr(sys, "frozen", False)),
        "meipass": getattr(sys, "_MEIPASS", None),
        "executable": sys.executable,
        "version": app.__version__,
        "resource_root": str(paths.resource_root()),
        "data_path": str(paths.data_path()),
        "resource_path": str(paths.resource_path()),
        "patches_dir": str(paths.patches_dir()),
        "data_files": _files_under(str(paths.data_path())),
        "resource_files": _files_under(str(paths.resource_path())),
        "patch_files": _files_under(str(paths.patches_dir())),
        "modules": modules,
        "qt": qt,
        "stdio": ORIGINAL_STDIO,
    }


def icu_probe() -> dict[str, object]:
    """What Qt's ICU-backed APIs answer: collation, time-zone names and ids, case mapping, which legacy codecs exist.

    The Linux bundle replaces ICU's data and its i18n library by stubs (installer.spec); tests/test_bundle.py runs
    this in the bundle as built and in a copy holding the wheel's real ICU libraries and compares the answers.
    """
    from PySide6 import QtCore

    out: dict[str, object] = {}
    words = ["zebra", "Äpfel", "apple", "Zürich", "école", "Eagle", "10", "9"]
    for loc in ("C", "en_US", "de_DE", "sv_SE", "ja_JP"):
        col = QtCore.QCollator(QtCore.QLocale(loc))
        out[f"collate/{loc}"] = [col.compare(a, b) for a in words for b in words]
        col.setNumericMode(True)
        col.setCaseSensitivity(QtCore.Qt.CaseSensitivity.CaseInsensitive)
        out[f"collate-numeric-ci/{loc}"] = [col.compare(a, b) for a in words for b in words]
        keys = [col.sortKey(w) for w in words]
        out[f"sortkey/{loc}"] = [k1.compare(k2) for k1 in keys for k2 in keys]
    tz_type, tz_name = QtCore.QTimeZone.TimeType, QtCore.QTimeZone.NameType
    for zone in (b"Europe/Berlin", b"America/Sao_Paulo", b"Asia/Kolkata", b"UTC", b"US/Pacific"):
        tz = QtCore.QTimeZone(zone)
        out[f"tz/{zone.decode()}"] = [tz.isValid(), bytes(tz.id().data()).decode()] + [
            tz.displayName(t, n, QtCore.QLocale(loc))
            for t in (tz_type.StandardTime, tz_type.DaylightTime)
            for n in (tz_name.LongName, tz_name.ShortName, tz_name.OffsetName)
            for loc in ("en_US", "de_DE")
        ]
    out["tz/count"] = len(QtCore.QTimeZone.availableTimeZoneIds())
    out["case"] = [QtCore.QLocale(loc).toUpper("istanbul ß") + "|" + QtCore.QLocale(loc).toLower("İSTANBUL Σ")
                   for loc in ("en_US", "tr_TR", "el_GR")]
    out["codecs"] = [QtCore.QStringDecoder(c).isValid() for c in ("Shift_JIS", "ISO-8859-5", "KOI8-R", "UTF-8")]
    return out


def _run_selftest(target: str) -> int:
    import json

    report = selftest()
    if os.environ.get("LMS_UNLOCKED_BUNDLE_SELFTEST_ICU"):
        report["icu"] = icu_probe()
    text = json.dumps(report, indent=2, sort_keys=True)
    if target == "-":
        sys.stdout.write(text + "\n")
    else:
        with open(target, "w", encoding="utf-8") as fh:
            fh.write(text + "\n")
    modules = report["modules"]
    assert isinstance(modules, dict)
    return 0 if all(v == "ok" for v in modules.values()) else 1


def main() -> int:
    multiprocessing.freeze_support()
    _null_missing_streams()
    target = os.environ.get("LMS_UNLOCKED_BUNDLE_SELFTEST")
    if target:
        return _run_selftest(target)
    from app.cli import main as cli_main

    return cli_main()


if __name__ == "__main__":
    sys.exit(main())
