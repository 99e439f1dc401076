"""The lowered form of a command buffer: compute passes and native transfers, as plain data.

A :class:`Plan` is what :func:`hal.core.lowering.lower` returns and what :mod:`hal.encoder`
replays. It names memory as :class:`Region`s of a user allocation or of the plan's own
``STAGING`` (bytes known at lowering time, uploaded once) and ``SCRATCH`` (temporary) buffers.
"""

from __future__ import annotations

import enum
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from hal.core.builtins import BuiltinKernel

if TYPE_CHECKING:
    from hal.core.refs import BufferHandle

__all__ = [
    "AuxBuffer",
    "ClearBuffer",
    "ComputePass",
    "CopyBuffer",
    "Dispatch",
    "Plan",
    "PlanStats",
    "Region",
    "Step",
]

# Runtime objects core handles without importing the runtime (hal.core stays pure).
Executable = Any


class AuxBuffer(enum.Enum):
    """Buffers a plan owns.

    ``STAGING`` holds update bytes and ``CONSTANTS`` dispatch constants where there are no
    immediates; both are uploaded once per plan, and they are separate because builtin copies
    bind STAGING read-write while a dispatch reads CONSTANTS. ``SCRATCH`` holds shadows of
    writable bindings, ``READ_SCRATCH`` shadows of read-only bindings and indirect parameters:
    wgpu rejects one buffer bound read-write and read-only in the same dispatch.
    """

    STAGING = "staging"
    CONSTANTS = "constants"
    SCRATCH = "scratch"
    READ_SCRATCH = "read_scratch"


@dataclass(frozen=True, slots=True)
class Region:
    """``size`` bytes at ``offset`` of ``resource`` (a root Buffer or an AuxBuffer)."""

    resource: BufferHandle | AuxBuffer
    offset: int
    size: int

    def describe(self) -> str:
        """Short text for dumps."""
        if isinstance(self.resource, AuxBuffer):
            name = self.resource.value
        else:
            name = f"buf#{id(self.resource) & 0xFFFF:04x}"
        return f"{name}[{self.offset}:{self.offset + self.size}]"


@dataclass(frozen=True, slots=True)
class Dispatch:
    """One dispatch inside a compute pass (a user kernel or a builtin).

    ``bindings`` are (binding index, layout kind, window). ``constants`` are immediate bytes;
    where the adapter lacks immediates they were staged instead and ``constants_offset`` is
    their CONSTANTS offset. Either ``workgroups`` or ``indirect`` (a 12-byte region) is set.
    """

    kernel: Executable | BuiltinKernel
    entry_point: str
    bindings: tuple[tuple[int, str, Region], ...]
    constants: bytes
    constants_offset: int | None
    workgroups: tuple[int, int, int] | None
    indirect: Region | None
    label: str

    @property
    def is_builtin(self) -> bool:
        """True for a builtin fill/copy kernel."""
        return isinstance(self.kernel, BuiltinKernel)


@dataclass(frozen=True, slots=True)
class ComputePass:
    """Dispatches recorded into one wgpu compute pass; wgpu orders them itself."""

    dispatches: tuple[Dispatch, ...]


@dataclass(frozen=True, slots=True)
class CopyBuffer:
    """A native ``copy_buffer_to_buffer`` (4-byte aligned, distinct buffers)."""

    source: Region
    target: Region


@dataclass(frozen=True, slots=True)
class ClearBuffer:
    """A native ``clear_buffer`` (zeros, 4-byte aligned)."""

    target: Region


Step = ComputePass | CopyBuffer | ClearBuffer


@dataclass(frozen=True, slots=True)
class PlanStats:
    """Counts describing a plan (``cb.stats``)."""

    segments: int
    compute_passes: int
    dispatches: int
    builtin_dispatches: int
    native_copies: int
    native_clears: int
    staged_bytes: int
    shadowed_bindings: int
    scratch_bytes: int
    pass_switches: int = 0
    regions: int = 1

    def as_dict(self) -> dict[str, int]:
        """The counts as a plain dict."""
        return asdict(self)

    def __getitem__(self, key: str) -> int:
        return int(getattr(self, key))


@dataclass(frozen=True, slots=True)
class Plan:
    """The lowered command buffer: ``steps`` in order, the STAGING and CONSTANTS bytes, the
    SCRATCH and
    READ_SCRATCH sizes, the allocations it touches and its statistics."""

    steps: tuple[Step, ...]
    staging: bytes
    constants: bytes
    scratch_size: int
    read_scratch_size: int
    resources: frozenset[BufferHandle]
    stats: PlanStats
    notes: tuple[str, ...] = ()

    @property
    def passes(self) -> tuple[ComputePass, ...]:
        """The compute passes, in order."""
        return tuple(s for s in self.steps if isinstance(s, ComputePass))

    def describe(self) -> str:
        """Human-readable listing of the steps."""
        lines = []
        for i, step in enumerate(self.steps):
            if isinstance(step, ComputePass):
                lines.append(f"  [{i}] compute pass ({len(step.dispatches)} dispatches)")
                for d in step.dispatches:
                    size = (
                        d.workgroups
                        if d.workgroups is not None
                        else (f"indirect {d.indirect.describe() if d.indirect else ''}")
                    )
                    binds = ", ".join(f"{b}={r.describe()}" for b, _, r in d.bindings)
                    lines.append(f"        dispatch {d.label} {size} [{binds}]")
            elif isinstance(step, CopyBuffer):
                lines.append(
                    f"  [{i}] copy_buffer_to_buffer {step.source.describe()} -> "
                    f"{step.target.describe()}"
                )
            else:
                lines.append(f"  [{i}] clear_buffer {step.target.describe()}")
        s = self.stats
        lines.append(
            f"  stats: {s.compute_passes} passes, {s.dispatches} dispatches "
            f"({s.builtin_dispatches} builtin), {s.native_copies} copies, "
            f"{s.native_clears} clears, {s.staged_bytes} staged bytes, "
            f"{s.shadowed_bindings} shadowed bindings, {s.pass_switches} pass switches, "
            f"{s.regions} barrier regions"
        )
        if self.notes:
            lines.append("  decisions:")
            lines.extend(f"    - {note}" for note in self.notes)
        return "\n".join(lines)
