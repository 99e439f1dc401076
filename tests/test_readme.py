"""README.md runs as written.

Every ```python block runs, in order, in ONE namespace in this process (each block may use
what the blocks before it defined). A block whose first line is ``# needs: X`` runs only when
X is present: ``dawn`` (wgpudawn importable and hal opens a Dawn device), ``mpi`` (mpi4py
importable; blocks for several processes run only under ``mpiexec``), ``gpu`` (a non-CPU
adapter). Every command line of the ```sh/```bash/```console blocks runs too, from a
scratch folder, except ``make`` lines (they bootstrap a venv and run the whole suite) and
lines ending in ``# slow`` (they take more than seconds of GPU time: ``hal bench``,
``hal demo``).
"""

from __future__ import annotations

import contextlib
import importlib.util
import io
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

REPO = Path(__file__).resolve().parent.parent
README = REPO / "README.md"
TIMEOUT = 120

_FENCE = re.compile(r"^```([A-Za-z]*)[ \t]*\n(.*?)^```[ \t]*$", re.M | re.S)
_SHELLS = ("sh", "bash", "console", "shell")


def blocks(language: tuple[str, ...]) -> list[tuple[int, str]]:
    """(line number, text) of README's fenced blocks in one of ``language``, in order."""
    text = README.read_text()
    found = []
    for match in _FENCE.finditer(text):
        if match.group(1) in language:
            found.append((text.count("\n", 0, match.start()) + 1, match.group(2)))
    return found


def _dawn_opens() -> bool:
    if importlib.util.find_spec("wgpudawn") is None:
        return False
    import hal

    try:
        hal.create_device(implementation="dawn").close()
    except hal.HalError:
        return False
    return True


def _gpu() -> bool:
    import hal

    return any(a.adapter_type != "cpu" for a in hal.available_adapters())


def _mpi() -> bool:
    return importlib.util.find_spec("mpi4py") is not None


def _under_mpiexec() -> bool:
    return any(k in os.environ for k in ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK"))


def missing_need(code: str) -> str | None:
    """Why a block cannot run here (None: it can), from its ``# needs: X[, Y]`` line."""
    first = code.lstrip().splitlines()[0] if code.strip() else ""
    match = re.match(r"#\s*needs:\s*(.+)", first)
    if not match:
        return None
    for need in (n.strip() for n in match.group(1).split(",")):
        if need == "dawn" and not _dawn_opens():
            return "needs dawn: wgpudawn is not installed or opens no device"
        if need == "gpu" and not _gpu():
            return "needs gpu: only CPU adapters here"
        if need == "mpi" and not _mpi():
            return "needs mpi: mpi4py is not installed"
        if need in ("mpi", "processes") and not _under_mpiexec():
            return f"needs {need}: several processes, run it under mpiexec"
        if need not in ("dawn", "gpu", "mpi", "processes"):
            return f"needs {need}: unknown requirement"
    return None


def test_readme_has_the_expected_blocks() -> None:
    python = blocks(("python",))
    assert len(python) >= 4
    assert "buffer_view_from_numpy" in python[0][1]
    assert blocks(_SHELLS)


def test_python_blocks_run_in_order(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # the profiling snippet writes trace.json
    namespace: dict[str, Any] = {"__name__": "__readme__"}
    skipped = []
    ran = 0
    try:
        for line, code in blocks(("python",)):
            reason = missing_need(code)
            if reason is not None:
                skipped.append(f"README.md:{line}: {reason}")
                continue
            out = io.StringIO()
            with contextlib.redirect_stdout(out):
                exec(compile(code, f"README.md:{line}", "exec"), namespace)
            ran += 1
            assert "Traceback" not in out.getvalue()
        _check_results(namespace, tmp_path)
    finally:
        for value in list(namespace.values()):
            if type(value).__name__ == "Device" and hasattr(value, "close"):
                value.close()
    assert ran >= 4, skipped
    for reason in skipped:
        print("skipped", reason)


def _check_results(namespace: dict[str, Any], folder: Path) -> None:
    """What the snippets claim in their comments."""
    import numpy as np

    dst, raw, buf, out = (namespace[k] for k in ("dst", "raw", "buf", "out"))
    got = dst.to_numpy()
    assert got.dtype == np.float32 and got.shape == (1024,)
    np.testing.assert_array_equal(got, np.arange(1024, dtype=np.float32) * 2 + 1)
    assert raw.to_numpy()[0] == 0x7F
    assert buf.to_numpy()[0] == 0x01010101  # the async snippet's fill
    np.testing.assert_array_equal(out.to_numpy()[3:1027], np.full(1024, 0xAB, np.uint8))
    assert (folder / "trace.json").is_file()


def _command_lines(code: str) -> list[str]:
    """The commands of a shell block: continuation lines joined, comments and prompts
    (``$ ``) stripped of their markers."""
    lines: list[str] = []
    pending = ""
    for raw in code.splitlines():
        text = raw.rstrip()
        if text.startswith("$ "):
            text = text[2:]
        if text.endswith("\\"):
            pending += text[:-1] + " "
            continue
        text = pending + text
        pending = ""
        if text.strip() and not text.lstrip().startswith("#"):
            lines.append(text.strip())
    return lines


def shell_commands() -> list[tuple[int, str]]:
    """(block line, command) of every README shell command."""
    return [(line, c) for line, code in blocks(_SHELLS) for c in _command_lines(code)]


def _why_not_run(command: str) -> str | None:
    if command.startswith("make "):
        return "make bootstraps .venv and runs the whole suite (not run here)"
    if re.search(r"#\s*slow\s*$", command):
        return "marked # slow in README.md"
    return None


def _argv(command: str) -> tuple[dict[str, str], list[str]]:
    """(environment assignments, argv) with ``python``/``.venv/bin/python`` as this
    interpreter and ``hal`` as ``python -m hal``."""
    words = shlex.split(command, comments=True)
    env = {}
    while words and re.match(r"^[A-Z_][A-Z0-9_]*=", words[0]):
        key, _, value = words.pop(0).partition("=")
        env[key] = value
    if words and words[0] in ("python", "python3", ".venv/bin/python"):
        words[0] = sys.executable
    elif words and words[0] == "hal":
        words[:1] = [sys.executable, "-m", "hal"]
    return env, words


def test_shell_commands_are_classified() -> None:
    commands = [c for _, c in shell_commands()]
    assert any(c.startswith("make demo") for c in commands)
    skipped = {c for c in commands if _why_not_run(c)}
    assert any("hal bench" in c for c in skipped) and any("hal demo" in c for c in skipped)
    assert len(skipped) < len(commands)


def test_shell_commands_run(tmp_path: Path) -> None:
    (tmp_path / "shaders").symlink_to(REPO / "shaders")  # README paths are checkout-relative
    base = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    ran = 0
    for line, command in shell_commands():
        if _why_not_run(command):
            continue
        env, argv = _argv(command)
        done = subprocess.run(
            argv,
            cwd=tmp_path,
            env={**base, **env},
            capture_output=True,
            text=True,
            timeout=TIMEOUT,
        )
        assert done.returncode == 0, f"README.md:{line}: {command}\n{done.stderr}"
        ran += 1
    assert ran >= 5
    assert (tmp_path / "y.npy").is_file()  # `hal run` wrote its output where it was run
