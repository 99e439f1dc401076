"""A non-editable install works: build the wheel from a copy of the checkout, install it with
``--no-deps`` into a fresh venv that sees the already-installed dependencies (a ``.pth`` file
naming this interpreter's site-packages), and run every CLI sub-command from a folder outside
the checkout through the installed ``hal`` script and ``python -m hal``."""

from __future__ import annotations

import os
import shutil
import site
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 120
SOURCES = ("hal", "shaders", "pyproject.toml", "README.md", "LICENSE")


def _can_build_here() -> bool:
    """Whether this venv has what an unisolated build needs: setuptools ≥ 77 (license
    expressions; it builds wheels itself). Otherwise pip builds in isolation from the
    configured index."""
    try:
        from importlib.metadata import version

        major = int(version("setuptools").split(".")[0])
    except Exception:
        return False
    return major >= 77


def _build_wheel(tmp: Path) -> Path:
    """The wheel of a copy of the checkout (building in place would leave build/ and
    *.egg-info behind). Without build isolation when this venv can (setuptools and wheel
    importable); otherwise isolated from the configured (local) index."""
    src = tmp / "src"
    src.mkdir()
    for name in SOURCES:
        path = REPO / name
        if path.is_dir():
            shutil.copytree(path, src / name, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(path, src / name)
    isolation = ["--no-build-isolation"] if _can_build_here() else []
    dist = tmp / "dist"
    done = subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", *isolation, "-w", dist, src],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    (wheel,) = dist.glob("hal_gpu-*.whl")
    return wheel


def _venv(tmp: Path, wheel: Path) -> Path:
    """A fresh venv with the wheel installed (no dependencies) that sees this interpreter's
    site-packages through a .pth file; returns its bin folder."""
    venv = tmp / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", venv], check=True)
    bindir = venv / ("Scripts" if os.name == "nt" else "bin")
    purelib = subprocess.run(
        [bindir / "python", "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    deps = [*site.getsitepackages(), sysconfig.get_path("purelib")]
    Path(purelib, "_hal_test_deps.pth").write_text("\n".join(dict.fromkeys(deps)) + "\n")
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "--python",
            bindir / "python",
            "install",
            "-q",
            "--no-deps",
            "--no-index",
            str(wheel),
        ],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return bindir


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(wheel, venv bin folder, a working folder outside the checkout)."""
    tmp = tmp_path_factory.mktemp("install")
    wheel = _build_wheel(tmp)
    bindir = _venv(tmp, wheel)
    work = tmp / "work"
    work.mkdir()
    return wheel, bindir, work


def _run(argv: list[object], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME")}
    env["PYTHONSAFEPATH"] = "1"  # `python -m` must not put the cwd first (it is not the repo)
    return subprocess.run(
        [str(a) for a in argv], cwd=cwd, env=env, capture_output=True, text=True, timeout=TIMEOUT
    )


def test_the_wheel_has_every_subpackage_shaders_and_py_typed(
    installed: tuple[Path, Path, Path],
) -> None:
    wheel, _, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    assert "hal/py.typed" in names
    shaders = sorted(p.name for p in (REPO / "shaders").glob("*.wgsl"))
    assert shaders and all(f"hal/shaders/{name}" in names for name in shaders)
    for init in (REPO / "hal").rglob("__init__.py"):
        assert init.relative_to(REPO).as_posix() in names, f"{init.parent} is not packaged"
    meta = next(n for n in names if n.endswith(".dist-info/METADATA"))
    metadata = zipfile.ZipFile(wheel).read(meta).decode()
    assert "Name: hal-gpu" in metadata and "License-Expression: MIT" in metadata
    assert "Classifier: Typing :: Typed" in metadata
    assert any(n.endswith(".dist-info/licenses/LICENSE") for n in names)
    entry_points = next(n for n in names if n.endswith(".dist-info/entry_points.txt"))
    assert "hal = hal.tools.cli:main" in zipfile.ZipFile(wheel).read(entry_points).decode()


def test_every_cli_subcommand_runs_from_the_install(installed: tuple[Path, Path, Path]) -> None:
    _, bindir, work = installed
    hal_script, python = bindir / "hal", bindir / "python"
    where = _run([python, "-c", "import hal; print(hal.__file__, hal.__version__)"], work)
    assert where.returncode == 0, where.stderr
    path, version = where.stdout.split()
    assert Path(path).is_relative_to(bindir.parent), path
    assert not Path(path).is_relative_to(REPO)

    done = _run([hal_script, "--version"], work)
    assert done.returncode == 0 and done.stdout.strip() == f"hal {version}"
    done = _run([hal_script, "--help"], work)
    assert done.returncode == 0 and done.stdout.startswith("usage: hal ")
    done = _run([python, "-m", "hal", "--help"], work)
    assert done.returncode == 0 and done.stdout.startswith("usage: python -m hal ")

    done = _run([hal_script, "devices"], work)
    assert done.returncode == 0, done.stderr
    assert "implementation=wgpu-native" in done.stdout and "limits:" in done.stdout

    np.save(work / "x.npy", np.arange(64, dtype=np.float32))
    kernel = work / "double.wgsl"
    kernel.write_text(
        "@group(0) @binding(0) var<storage, read> x: array<f32>;\n"
        "@group(0) @binding(1) var<storage, read_write> y: array<f32>;\n"
        "@compute @workgroup_size(64) fn main(@builtin(global_invocation_id) i: vec3u) {\n"
        "  y[i.x] = 2.0 * x[i.x];\n}\n"
    )
    done = _run(
        [
            hal_script,
            "run",
            kernel,
            "--workgroups",
            "1",
            "--input",
            "x.npy",
            "--output",
            "y.npy:f32:64",
        ],
        work,
    )
    assert done.returncode == 0, done.stderr
    np.testing.assert_array_equal(np.load(work / "y.npy"), 2 * np.arange(64, dtype=np.float32))

    done = _run([hal_script, "example", "--list"], work)
    assert done.returncode == 0 and "prefix_sum" in done.stdout and "usage" not in done.stderr
    done = _run(
        [python, "-m", "hal", "example", "softmax", "--size", "4x64", "--repeat", "1"], work
    )
    assert done.returncode == 0, done.stderr
    assert "softmax: [4x64]" in done.stdout and "OK" in done.stdout

    done = _run([hal_script, "bench", "--help"], work)
    assert done.returncode == 0 and done.stdout.startswith("usage: hal bench")
    assert "--out" in done.stdout and "--fail-on-targets" in done.stdout
    # The benchmark scripts ship with the checkout only: the installed CLI says so.
    done = _run([hal_script, "bench", "--list"], work)
    assert done.returncode == 1 and "source checkout" in done.stderr
