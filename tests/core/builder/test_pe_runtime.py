"""Windows backends must not need the compiler's runtime DLLs: real PE files built here with mingw-w64."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from app.core.builder.abi import foreign_runtime_imports

CPP = (
    '#include <string>\nextern "C" __declspec(dllexport) int f(const char *s) { return (int)std::string(s).size(); }\n'
)


@pytest.fixture
def gxx() -> str:
    cxx = shutil.which("x86_64-w64-mingw32-g++")
    if cxx is None:
        pytest.skip("x86_64-w64-mingw32-g++ missing: scripts/test.sh installs g++-mingw-w64-x86-64")
    return cxx


def test_dynamic_libstdcxx_is_found_static_is_clean(gxx: str, tmp_path: Path) -> None:
    src = tmp_path / "a.cpp"
    src.write_text(CPP)
    subprocess.run([gxx, "-shared", "-o", str(tmp_path / "dyn.dll"), str(src)], check=True)
    subprocess.run(
        [
            gxx,
            "-shared",
            "-static-libgcc",
            "-static-libstdc++",
            "-static",
            "-o",
            str(tmp_path / "static.dll"),
            str(src),
        ],
        check=True,
    )
    found = foreign_runtime_imports(tmp_path, ["dyn.dll", "static.dll", "a.cpp"])
    assert ("dyn.dll", "libstdc++-6.dll") in found
    assert not [f for f, _d in found if f == "static.dll"]
    # A runtime DLL shipped in the folder itself is not foreign.
    (tmp_path / "libstdc++-6.dll").write_bytes(b"MZ")
    assert ("dyn.dll", "libstdc++-6.dll") not in foreign_runtime_imports(tmp_path, ["dyn.dll"])
