"""``python -m hal bench``: find the benchmark scripts and run them with a progress bar.

The scripts live in ``benchmarks/`` of the source checkout; they do not ship with an
installed hal. ``benchmarks/run_all.py`` runs the whole suite when it exists; otherwise
``dispatch_overhead.py`` and ``queue_latency.py`` run one after the other.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TextIO

from hal.tools.cli_run import UsageError

__all__ = ["DEFAULT_SCRIPTS", "SUITE_SCRIPT", "BenchmarkNotFoundError", "find_scripts", "run_bench"]

SUITE_SCRIPT = "run_all.py"
"""The script that runs the whole suite, preferred when present."""

DEFAULT_SCRIPTS = ("dispatch_overhead.py", "queue_latency.py")
"""What runs when there is no suite script."""

ENV_DIR = "HAL_BENCHMARKS_DIR"
"""Environment variable naming the benchmarks folder (overrides the search)."""


class BenchmarkNotFoundError(Exception):
    """No benchmarks folder with runnable scripts was found (exit status 1)."""


def candidate_dirs(explicit: str | None = None) -> list[Path]:
    """Folders searched for benchmark scripts, in order: ``explicit`` (``--dir``) alone if
    given, else ``$HAL_BENCHMARKS_DIR`` alone if set, else ``benchmarks/`` next to the hal
    package (a source checkout) and ``./benchmarks``."""
    if explicit:
        return [Path(explicit)]
    if os.environ.get(ENV_DIR):
        return [Path(os.environ[ENV_DIR])]
    package_root = Path(__file__).resolve().parents[2]
    found: list[Path] = []
    for path in (package_root / "benchmarks", Path.cwd() / "benchmarks"):
        if path.resolve() not in [p.resolve() for p in found]:
            found.append(path)
    return found


def find_scripts(explicit_dir: str | None, names: Sequence[str]) -> list[Path]:
    """The scripts to run: ``names`` (with or without ``.py``) when given, else
    ``run_all.py``, else those of ``DEFAULT_SCRIPTS`` that exist — from the first candidate
    folder that has any.

    Raises BenchmarkNotFoundError when no folder has them and UsageError for a named script
    that does not exist."""
    searched = candidate_dirs(explicit_dir)
    for folder in searched:
        if not folder.is_dir():
            continue
        if names:
            scripts = [folder / (n if n.endswith(".py") else f"{n}.py") for n in names]
            missing = [s.name for s in scripts if not s.is_file()]
            if missing:
                available = sorted(
                    p.stem for p in folder.glob("*.py") if not p.name.startswith("_")
                )
                raise UsageError(
                    f"no benchmark {', '.join(missing)} in {folder} "
                    f"(available: {', '.join(available) or 'none'})"
                )
            return scripts
        if (folder / SUITE_SCRIPT).is_file():
            return [folder / SUITE_SCRIPT]
        scripts = [folder / n for n in DEFAULT_SCRIPTS if (folder / n).is_file()]
        if scripts:
            return scripts
    where = ", ".join(str(p) for p in searched)
    raise BenchmarkNotFoundError(
        f"no benchmark scripts found (looked for {SUITE_SCRIPT} or "
        f"{' / '.join(DEFAULT_SCRIPTS)} in: {where}). The benchmarks ship with hal's source "
        f"checkout, not with an installed package: run from a checkout, or pass --dir "
        f"(or set {ENV_DIR})."
    )


class _ProgressBar:
    """A one-line bar on ``stream``: redrawn in place on a terminal, else printed once per
    step. Child output is printed above it."""

    def __init__(self, total: int, stream: TextIO, width: int = 24) -> None:
        self.total = total
        self.stream = stream
        self.width = width
        self.tty = stream.isatty()
        self.done = 0
        self.label = ""
        self.started = time.perf_counter()
        self.step_started = self.started
        self.lock = threading.Lock()

    def render(self) -> str:
        filled = self.width * self.done // max(self.total, 1)
        bar = "#" * filled + "-" * (self.width - filled)
        now = time.perf_counter()
        return (
            f"[{bar}] {self.done}/{self.total} {self.label} "
            f"({now - self.step_started:.0f} s, total {now - self.started:.0f} s)"
        )

    def _draw(self) -> None:
        if self.tty:
            self.stream.write("\r\x1b[K" + self.render())
            self.stream.flush()

    def start(self, label: str) -> None:
        with self.lock:
            self.label = label
            self.step_started = time.perf_counter()
            if not self.tty:
                self.stream.write(self.render() + "\n")
                self.stream.flush()
            self._draw()

    def finish(self, status: str) -> None:
        with self.lock:
            self.done += 1
            self.label = status
            if self.tty:
                self._draw()
                self.stream.write("\n")
            else:
                self.stream.write(self.render() + "\n")
            self.stream.flush()

    def tick(self) -> None:
        with self.lock:
            self._draw()

    def echo(self, line: str, out: TextIO) -> None:
        with self.lock:
            if self.tty:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
            out.write(line)
            out.flush()
            self._draw()


def _run_one(
    script: Path, extra: Sequence[str], timeout: float | None, bar: _ProgressBar
) -> tuple[int, float]:
    start = time.perf_counter()
    process = subprocess.Popen(
        [sys.executable, str(script), *extra],
        cwd=script.parent.parent,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        bufsize=1,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},  # lines arrive as they are printed
    )
    stop = threading.Event()

    def ticker() -> None:
        while not stop.wait(0.5):
            bar.tick()
            if timeout is not None and time.perf_counter() - start > timeout:
                process.kill()
                return

    thread = threading.Thread(target=ticker, daemon=True)
    thread.start()
    try:
        assert process.stdout is not None
        for line in process.stdout:
            bar.echo(line, sys.stdout)
        code = process.wait()
    finally:
        stop.set()
        thread.join()
        if process.poll() is None:
            process.kill()
            process.wait()
    elapsed = time.perf_counter() - start
    if timeout is not None and elapsed > timeout and code != 0:
        bar.echo(f"{script.name}: killed after the {timeout:g} s timeout\n", sys.stderr)
    return code, elapsed


def run_bench(
    explicit_dir: str | None,
    names: Sequence[str],
    extra: Sequence[str],
    timeout: float | None,
    list_only: bool,
) -> int:
    """Run (or with ``list_only`` list) the benchmark scripts; returns 0 when every script
    exited 0, else 1. Raises BenchmarkNotFoundError and UsageError (see find_scripts)."""
    scripts = find_scripts(explicit_dir, names)
    if list_only:
        for script in scripts:
            print(script)
        return 0
    bar = _ProgressBar(len(scripts), sys.stderr)
    results: list[tuple[str, int, float]] = []
    for script in scripts:
        bar.start(f"running {script.name}")
        code, elapsed = _run_one(script, extra, timeout, bar)
        results.append((script.name, code, elapsed))
        bar.finish(f"{script.name} {'ok' if code == 0 else f'FAILED (exit {code})'}")
    print("\nbenchmark summary:")
    for name, code, elapsed in results:
        print(f"  {name:<28} {'ok' if code == 0 else f'exit {code}':>8} {elapsed:8.1f} s")
    return 0 if all(code == 0 for _, code, _ in results) else 1
