"""``hal bench``: find the benchmark scripts and run them with a progress bar (tqdm when
installed), their results written to ``--out`` or a temporary folder, never the checkout.

The scripts live in ``benchmarks/`` of the source checkout; they do not ship with an
installed hal. ``benchmarks/run_all.py`` runs the whole suite when it exists; otherwise
``dispatch_overhead.py`` and ``queue_latency.py`` run one after the other.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TextIO

from hal.tools.cli_run import UsageError

__all__ = [
    "DEFAULT_SCRIPTS",
    "SUITE_SCRIPT",
    "BenchmarkNotFoundError",
    "find_scripts",
    "run_bench",
    "unmet_targets",
]

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


class _Progress:
    """Progress over the scripts: a tqdm bar on ``stream`` when tqdm is installed (the
    ``bench`` extra), else one plain line per step. Child output is printed above it."""

    def __init__(self, total: int, stream: TextIO) -> None:
        self.total = total
        self.stream = stream
        self.done = 0
        self.started = time.perf_counter()
        self.lock = threading.Lock()
        try:
            from tqdm import tqdm
        except ImportError:
            self.bar: Any = None
        else:
            self.bar = tqdm(total=total, file=stream, unit="script", dynamic_ncols=True)

    def start(self, label: str) -> None:
        with self.lock:
            if self.bar is not None:
                self.bar.set_description(label)
            else:
                self.stream.write(f"[{self.done}/{self.total}] {label}\n")
                self.stream.flush()

    def finish(self, status: str) -> None:
        with self.lock:
            self.done += 1
            if self.bar is not None:
                self.bar.set_description(status)
                self.bar.update(1)
            else:
                elapsed = time.perf_counter() - self.started
                self.stream.write(f"[{self.done}/{self.total}] {status} ({elapsed:.0f} s)\n")
                self.stream.flush()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()

    def echo(self, line: str, out: TextIO) -> None:
        with self.lock:
            if self.bar is not None:
                self.bar.write(line.rstrip("\n"), file=out)
            else:
                out.write(line)
                out.flush()


def _run_one(
    script: Path, extra: Sequence[str], timeout: float | None, bar: _Progress
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


def _json_argument(script: Path, extra: Sequence[str], out: Path) -> list[str]:
    """``--json OUT/<script>.json`` for a script that takes ``--json`` (every script of
    benchmarks/ does; its Markdown and plots go next to it) unless the user passed one."""
    if "--json" in extra or "--json" not in script.read_text(errors="replace"):
        return []
    return ["--json", str(out / f"{script.stem}.json")]


def unmet_targets(result: Path) -> list[str]:
    """The targets a result file marks as not met (``"met": false`` in its ``targets``
    list, as benchmarks/run_all.py writes); none for a missing or unreadable file."""
    try:
        report = json.loads(result.read_text())
    except (OSError, ValueError):
        return []
    targets = report.get("targets") if isinstance(report, dict) else None
    if not isinstance(targets, list):
        return []
    return [str(t.get("target")) for t in targets if isinstance(t, dict) and t.get("met") is False]


def run_bench(
    explicit_dir: str | None,
    names: Sequence[str],
    extra: Sequence[str],
    timeout: float | None,
    list_only: bool,
    out: str | None = None,
    fail_on_targets: bool = False,
) -> int:
    """Run (or with ``list_only`` list) the benchmark scripts, their result files going to
    ``out`` (default: a new temporary folder; never the checkout), and print a summary.
    Returns 0 when every script exited 0 (and, with ``fail_on_targets``, every performance
    target was met), else 1. Raises BenchmarkNotFoundError and UsageError (see
    find_scripts)."""
    scripts = find_scripts(explicit_dir, names)
    if list_only:
        for script in scripts:
            print(script)
        return 0
    folder = Path(out) if out else Path(tempfile.mkdtemp(prefix="hal-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    print(f"results: {folder}", flush=True)
    bar = _Progress(len(scripts), sys.stderr)
    results: list[tuple[str, int, float, list[str]]] = []
    try:
        for script in scripts:
            bar.start(f"running {script.name}")
            arguments = [*extra, *_json_argument(script, extra, folder)]
            code, elapsed = _run_one(script, arguments, timeout, bar)
            unmet = unmet_targets(folder / f"{script.stem}.json")
            results.append((script.name, code, elapsed, unmet))
            bar.finish(f"{script.name} {'ok' if code == 0 else f'FAILED (exit {code})'}")
    finally:
        bar.close()
    print("\nbenchmark summary:")
    for name, code, elapsed, unmet in results:
        status = "ok" if code == 0 else f"exit {code}"
        missed = f"  targets not met: {', '.join(unmet)}" if unmet else ""
        print(f"  {name:<28} {status:>8} {elapsed:8.1f} s{missed}")
    print(f"results in {folder}")
    failed = any(code != 0 for _, code, _, _ in results)
    missed_any = any(unmet for *_, unmet in results)
    if missed_any and not fail_on_targets:
        print("(targets not met do not fail the run; --fail-on-targets makes them exit 1)")
    return 1 if failed or (fail_on_targets and missed_any) else 0
