"""Helpers shared by the examples: results, size parsing, workgroup grids, timing, checks."""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hal.errors import InvalidArgumentError

if TYPE_CHECKING:
    from hal.runtime.command_buffer import CommandBuffer
    from hal.runtime.device import Device

__all__ = [
    "WAIT_S",
    "ExampleResult",
    "Timing",
    "compare",
    "grid",
    "parse_size",
    "time_execute",
]

WAIT_S = 120.0
"""Seconds any example waits for the GPU before raising DeadlineExceededError."""


@dataclass(frozen=True, slots=True)
class Timing:
    """Wall-clock seconds of ``queue_execute`` + wait: the first (which also lowers and
    compiles the plan) and the median of the repetitions after it."""

    first_s: float
    median_s: float
    repeats: int


@dataclass(frozen=True, slots=True)
class ExampleResult:
    """The outcome of one example run: whether the GPU result matched numpy, the largest
    absolute error, the timing and a one-line description of the work (sizes, throughput)."""

    name: str
    ok: bool
    max_abs_error: float
    timing: Timing
    detail: str

    def summary(self) -> str:
        """A one-line report: name, work, median time, error and verdict."""
        verdict = "OK" if self.ok else "MISMATCH"
        return (
            f"{self.name}: {self.detail}; {self.timing.median_s * 1e3:.3f} ms median of "
            f"{self.timing.repeats} (first {self.timing.first_s * 1e3:.3f} ms); "
            f"max abs error {self.max_abs_error:.3g} vs numpy: {verdict}"
        )


def parse_size(text: str | None, default: tuple[int, ...], what: str) -> tuple[int, ...]:
    """Parse ``"64"`` or ``"64x32x16"`` (``x`` or ``,`` separated positive ints) into a tuple
    of ``len(default)`` ints. A single number sets every dimension; fewer numbers than
    dimensions fill from the left and keep the defaults for the rest.

    Raises InvalidArgumentError for a malformed size, a non-positive value or too many
    numbers."""
    if text is None or not text.strip():
        return default
    parts = text.replace(",", "x").lower().split("x")
    try:
        values = [int(p) for p in parts]
    except ValueError:
        raise InvalidArgumentError(
            f"{what}: size {text!r} is not positive integers separated by 'x'"
        ) from None
    if any(v <= 0 for v in values):
        raise InvalidArgumentError(f"{what}: size {text!r} has a value <= 0")
    if len(values) > len(default):
        raise InvalidArgumentError(
            f"{what}: size {text!r} has {len(values)} numbers; at most {len(default)}"
        )
    if len(values) == 1:
        return (values[0],) * len(default)
    return (*values, *default[len(values) :])


def grid(groups: int, limit: int) -> tuple[int, int, int]:
    """Workgroup counts ``(x, y, 1)`` with ``x * y >= groups`` and both at most ``limit``
    (the adapter's max-compute-workgroups-per-dimension); kernels index workgroups as
    ``wid.y * num_workgroups.x + wid.x`` and skip indices past ``groups``.

    Raises InvalidArgumentError when ``groups`` exceeds ``limit ** 2``."""
    if groups <= limit:
        return (groups, 1, 1)
    rows = -(-groups // limit)
    if rows > limit:
        raise InvalidArgumentError(f"{groups} workgroups do not fit a {limit} x {limit} grid")
    return (-(-groups // rows), rows, 1)


def time_execute(
    device: Device, cb: CommandBuffer, repeats: int, timeout: float = WAIT_S
) -> Timing:
    """Submit the reusable (DEFAULT-mode) command buffer ``cb`` ``repeats + 1`` times, each
    time waiting for it to finish, and time ``queue_execute`` + wait.

    Raises DeadlineExceededError when one run takes longer than ``timeout`` seconds,
    InvalidArgumentError for ``repeats < 1``."""
    if repeats < 1:
        raise InvalidArgumentError(f"time_execute: repeats {repeats} must be >= 1")
    semaphore = device.create_semaphore()
    samples: list[float] = []
    for value in range(1, repeats + 2):
        start = time.perf_counter()
        device.queue_execute(cb, signal=[(semaphore, value)])
        semaphore.wait(value, timeout=timeout)
        samples.append(time.perf_counter() - start)
    return Timing(samples[0], statistics.median(samples[1:]), repeats)


def compare(got: np.ndarray, want: np.ndarray, rtol: float, atol: float) -> tuple[bool, float]:
    """``(np.allclose(got, want, rtol, atol) and shapes equal, max |got - want|)``."""
    if got.shape != want.shape:
        return False, float("inf")
    if got.size == 0:
        return True, 0.0
    diff = np.abs(got.astype(np.float64) - want.astype(np.float64))
    ok = bool(np.allclose(got, want, rtol=rtol, atol=atol))
    return ok, float(np.max(diff))
