"""The test configurations ``make test`` runs: every WebGPU implementation, backend and adapter
profile present on this machine, each as its own pytest process (``HAL_*`` variables select
it). Prints which ran, with pytest's summary line and time, and which were skipped and why;
exits non-zero when any configuration fails.

    python tests/configurations.py            # every configuration present
    python tests/configurations.py --list     # what would run, and why the others would not
    python tests/configurations.py gl metal   # only these (by name)

Configurations (all on the machine's default adapter unless named):

* ``vulkan``: wgpu-native on the default adapter (lavapipe's Vulkan in CI), the whole suite.
* ``gl``: wgpu-native's GL backend (Mesa llvmpipe in CI), the ``SUBSET`` and ``GL_EXTRA``.
* ``metal``, ``d3d12``: the default adapter under the Metal / D3D12 profile
  (hal.core.profiles), the ``SUBSET``.
* ``dawn``: Dawn (wgpudawn) where it is installed and hal opens it: tests/test_dawn.py and
  the ``SUBSET`` with ``HAL_IMPLEMENTATION=dawn``.
* ``mpi``: where mpi4py is importable (the ``mpi`` extra), the multi-process collectives:
  ``mpiexec -n 2`` and ``-n 3`` of tests/mpi_collectives_worker.py and the data-parallel example
  under ``mpiexec -n 2``, each bounded by hydra's ``MPIEXEC_TIMEOUT`` (tests/test_collectives.py).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent

SUBSET = (
    "tests/test_dispatch.py",
    "tests/test_copy.py",
    "tests/test_fill.py",
    "tests/test_update.py",
    "tests/test_queue_ops.py",
    "tests/test_semaphores.py",
    "tests/test_semaphore_scenarios.py",
    "tests/test_completion.py",
    "tests/test_errors.py",
    "tests/test_hostile_api.py",
    "tests/test_hostile.py",
    "tests/test_host_access.py",
    "tests/test_transfers_fast.py",
    "tests/test_table_kernels.py",
    "tests/test_binding_tables.py",
    "tests/test_table_rebase.py",
    "tests/test_constants_typed.py",
    "tests/test_wgsl_reflection.py",
    "tests/test_profiling.py",
    "tests/test_profiles.py",
    "tests/test_fuzz.py",
    "tests/test_lowering_property.py",
)
"""What the profile and Dawn configurations run: every command (dispatch, copy, fill,
update, indirect), every queue operation (execute, alloca/dealloca, barriers, waits,
signals), host access and transfers, binding tables, constants, profiling, the error paths
(test_errors, test_hostile_api), the hostile programs (test_hostile) and both fuzzers at
``SUBSET_FUZZ_EXAMPLES``."""

SUBSET_FUZZ_EXAMPLES = "60"

GL_EXTRA = (
    "tests/test_kernels.py",
    "tests/test_examples.py",
    "tests/test_cli.py",
    "tests/test_hostile.py",
    "tests/test_collectives.py",
    "tests/test_multi_device.py",
)
"""Besides the subset, what the GL configuration runs: the kernels and examples (naga's GLSL
translation), the hostile programs, the host steps of collectives and several devices."""


@dataclass(frozen=True, slots=True)
class Configuration:
    """One pytest run: ``name``, what it is, its ``HAL_*`` environment and pytest arguments."""

    name: str
    description: str
    env: Mapping[str, str] = field(default_factory=dict)
    args: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Outcome:
    """How a configuration ended: pytest's exit status, summary line and wall seconds."""

    configuration: Configuration
    returncode: int
    summary: str
    seconds: float


def _probe(code: str, env: Mapping[str, str] | None = None) -> str | None:
    """stdout of ``python -c code`` in a clean process (so this one never loads wgpu), or
    None when it fails."""
    try:
        done = subprocess.run(
            [sys.executable, "-c", code],
            cwd=REPO,
            env={**os.environ, **(env or {})},
            capture_output=True,
            text=True,
            timeout=120,
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    return done.stdout if done.returncode == 0 else None


def _backends(implementation: str) -> list[str] | None:
    """The backends of ``implementation``'s adapters, default first; None if it has none."""
    out = _probe(
        "import json, hal\n"
        f"a = hal.available_adapters({implementation!r})\n"
        "print(json.dumps([x.backend for x in a]))"
    )
    found = json.loads(out) if out else []
    return found or None


def _default_backend() -> str | None:
    out = _probe("import hal\nwith hal.create_device() as d: print(d.info.backend)")
    return out.strip() if out else None


def _subset(env: Mapping[str, str]) -> Configuration:
    return Configuration("", "", {"HAL_FUZZ_EXAMPLES": SUBSET_FUZZ_EXAMPLES, **env}, SUBSET)


def _gl(backends: Sequence[str], default: str) -> Configuration | str:
    if "gl" not in backends:
        return "wgpu-native lists no GL adapter (no EGL/GL driver: libegl-mesa0, libgl1-mesa-dri)"
    if default == "gl":
        return "GL is already the default adapter's backend (the first configuration)"
    # The subset plus every file that compiles kernels (naga's GLSL output is where GL
    # differs). The whole suite passes on GL too (`HAL_BACKEND=gl .venv/bin/python -m
    # pytest`), but takes 4 minutes of the 10 that make test may take on 2 cores.
    subset = _subset({"HAL_BACKEND": "gl"})
    return Configuration("gl", "wgpu-native/GL, subset + kernels", subset.env, GL_EXTRA + SUBSET)


def _profile(name: str, title: str) -> Callable[[Sequence[str], str], Configuration | str]:
    def make(backends: Sequence[str], default: str) -> Configuration | str:
        # Needs nothing beyond the default adapter: the profile only lowers its limits.
        subset = _subset({"HAL_ADAPTER_PROFILE": name})
        what = f"wgpu-native/{default} under the {title} profile, subset"
        return Configuration(name, what, subset.env, subset.args)

    return make


def _dawn(backends: Sequence[str], default: str) -> Configuration | str:
    if _probe("import wgpudawn") is None:
        return "wgpudawn is not installed (pip install '.[dawn]')"
    dawn = _backends("dawn")
    if not dawn:
        return "hal lists no adapter for implementation='dawn' (this hal lacks it, or no adapter)"
    subset = _subset({"HAL_IMPLEMENTATION": "dawn"})
    own = tuple(
        name
        for name in ("tests/test_dawn.py", "tests/test_host_memory.py")
        if (REPO / name).exists()
    )
    return Configuration(
        "dawn", f"Dawn/{dawn[0]}, test_dawn + test_host_memory + subset", subset.env, own + SUBSET
    )


def _mpi(backends: Sequence[str], default: str) -> Configuration | str:
    if _probe("import mpi4py.MPI") is None:
        return "mpi4py is not installed (pip install '.[mpi]')"
    return Configuration(
        "mpi",
        f"wgpu-native/{default}, collectives under mpiexec -n 2 and -n 3",
        {},
        ("tests/test_collectives.py", "-k", "mpiexec"),
    )


LATER: tuple[tuple[str, Callable[[Sequence[str], str], Configuration | str]], ...] = (
    ("gl", _gl),
    ("metal", _profile("metal", "Metal")),
    ("d3d12", _profile("d3d12", "D3D12")),
    ("dawn", _dawn),
    ("mpi", _mpi),
)


def plan() -> list[Configuration | tuple[str, str]]:
    """Every configuration, or (name, why it is skipped) for those this machine lacks."""
    backends = _backends("wgpu-native")
    default = _default_backend()
    if not backends or default is None:
        why = "wgpu-native opens no adapter (install Mesa: .ci/run, or `make adapter`)"
        return [(name, why) for name in ("vulkan", *(n for n, _ in LATER))]
    first = Configuration(default, f"wgpu-native/{default}, the whole suite")
    found: list[Configuration | tuple[str, str]] = [first]
    for name, make in LATER:
        made = make(backends, default)
        found.append(made if isinstance(made, Configuration) else (name, made))
    return found


_SUMMARY = re.compile(r"\b\d+ (passed|failed|errors?|skipped|xfailed|deselected)\b.* in [\d.]+s")


def run(configuration: Configuration) -> Outcome:
    """Run ``configuration``'s pytest, echoing its output; its outcome."""
    env = {**os.environ, **configuration.env}
    command = [sys.executable, "-m", "pytest", *configuration.args]
    start = time.monotonic()
    summary = ""
    with subprocess.Popen(
        command, cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    ) as process:
        assert process.stdout is not None
        for line in process.stdout:
            sys.stdout.write(line)
            if _SUMMARY.search(line):
                summary = line.strip().strip("= ")
    seconds = time.monotonic() - start
    return Outcome(configuration, process.returncode, summary or "(no summary line)", seconds)


def main(argv: Sequence[str]) -> int:
    """Run the configurations named in ``argv`` (all present when none); 1 if any failed."""
    wanted = [a for a in argv if not a.startswith("-")]
    planned = plan()
    outcomes: list[Outcome] = []
    skipped: list[tuple[str, str]] = []
    for item in planned:
        if isinstance(item, tuple):
            skipped.append(item)
            continue
        if wanted and item.name not in wanted:
            skipped.append((item.name, "not asked for"))
            continue
        if "--list" in argv:
            print(f"would run {item.name}: {item.description}; {_describe_env(item)}")
            continue
        print(f"\n=== configuration {item.name}: {item.description}; {_describe_env(item)}")
        sys.stdout.flush()
        outcomes.append(run(item))
    print("\n=== configurations")
    for o in outcomes:
        verdict = "ok" if o.returncode == 0 else f"FAILED (exit {o.returncode})"
        print(f"ran      {o.configuration.name:7} {verdict}: {o.summary} [{o.seconds:.0f} s wall]")
    for name, why in skipped:
        print(f"skipped: {name:7} {why}")
    return 0 if all(o.returncode == 0 for o in outcomes) else 1


def _describe_env(configuration: Configuration) -> str:
    env = " ".join(f"{k}={v}" for k, v in configuration.env.items()) or "no HAL_* settings"
    files = [a for a in configuration.args if a.endswith(".py")]
    what = "whole suite" if not configuration.args else f"{len(files)} test files"
    return f"{env}, {what}"


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
