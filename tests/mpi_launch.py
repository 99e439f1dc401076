"""The MPI launcher that belongs to the MPI library mpi4py runs on, for the tests that start
several ranks (tests/test_collectives.py).

A launcher of another MPI family starts every process as a world of one rank (each one prints
every result alone), so the launcher is matched to ``MPI.Get_library_version()``: the
``mpiexec`` next to the interpreter (the MPICH wheel of the ``mpi`` extra puts one there), then
``mpiexec`` and ``mpirun`` on PATH, each asked for ``--version``. Open MPI refuses to run as
root and to start more ranks than cores unless told to, so those flags come with it.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

__all__ = ["Launcher", "find_launcher"]


@dataclass(frozen=True, slots=True)
class Launcher:
    """How to start ``ranks`` processes: ``argv(ranks, timeout)`` prefixes the program and
    ``env`` is added to the environment."""

    family: str
    path: str
    env: tuple[tuple[str, str], ...]

    def argv(self, ranks: int, timeout: float) -> list[str]:
        """The command line before the program for ``ranks`` processes, bounded by the
        launcher's own timeout where it has one (``timeout`` seconds)."""
        if self.family == "openmpi":
            return [self.path, "--oversubscribe", "--timeout", str(int(timeout)), "-n", str(ranks)]
        return [self.path, "-n", str(ranks)]


def _family(text: str) -> str | None:
    """'openmpi', 'mpich' or None from a library version or a launcher's ``--version``."""
    lowered = text.lower()
    if "open mpi" in lowered or "openrte" in lowered or "open-mpi" in lowered:
        return "openmpi"
    if "mpich" in lowered or "hydra" in lowered:
        return "mpich"
    return None


def _launcher_family(path: str) -> str | None:
    try:
        done = subprocess.run(
            [path, "--version"], capture_output=True, text=True, timeout=20, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return None
    return _family(done.stdout + done.stderr)


@cache
def find_launcher(library_version: str) -> Launcher | str:
    """The launcher for an MPI library whose ``MPI.Get_library_version()`` is
    ``library_version``, or a sentence saying why there is none (the tests skip with it)."""
    wanted = _family(library_version)
    if wanted is None:
        return f"mpi4py runs on an MPI library this test does not know: {library_version[:60]!r}"
    candidates = [str(Path(sys.executable).parent / "mpiexec")]
    candidates += [found for name in ("mpiexec", "mpirun") if (found := shutil.which(name))]
    seen: list[str] = []
    for path in dict.fromkeys(candidates):
        if not Path(path).exists():
            continue
        family = _launcher_family(path)
        seen.append(f"{path} ({family or 'unknown'})")
        if family == wanted:
            env: tuple[tuple[str, str], ...] = ()
            if wanted == "openmpi" and hasattr(os, "geteuid") and os.geteuid() == 0:
                env = (("OMPI_ALLOW_RUN_AS_ROOT", "1"), ("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1"))
            return Launcher(wanted, path, env)
    return f"mpi4py runs on {wanted}, and no launcher of it was found (seen: {seen or 'none'})"
