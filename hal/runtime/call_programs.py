"""Programs whose backend calls are known before the submission: the half that
:mod:`hal.runtime.native_programs` (one native fill or copy) and
:mod:`hal.runtime.dispatch_programs` (templated dispatch programs) share.

Such a program stands in for the general path's
:class:`~hal.runtime.programs.CheckedProgram`: ``encode`` records its calls into a new backend
command buffer, and what only the general path has — the plan (``describe``), the compiled
program a profile needs, the culprit search of a wgpu rejection — comes from its owner, made
on first use.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Protocol

from hal.backends.protocol import BackendError
from hal.errors import FailedPreconditionError
from hal.runtime.programs import CheckedProgram, wgpu_failure

if TYPE_CHECKING:
    from hal.core.plan import Plan
    from hal.core.segments import Segment
    from hal.runtime.buffer import Buffer
    from hal.runtime.device import Device
    from hal.runtime.programs import Programs

__all__ = ["CallsOwner", "CallsProgram"]

_WHAT = "queue_execute"


class CallsOwner(Protocol):
    """What a :class:`CallsProgram` needs of the command buffer's programs that made it."""

    @property
    def device(self) -> Device:
        """The device the programs encode on."""
        ...

    @property
    def resources(self) -> tuple[Buffer, ...]:
        """The buffers the plan uses."""
        ...

    @property
    def views(self) -> Sequence[Any]:
        """The buffer views the commands were recorded on."""
        ...

    @property
    def plan(self) -> Plan:
        """The plan, as the general path lowers it."""
        ...

    def full(self) -> Programs:
        """The general path's programs of the same command buffer."""
        ...

    def culprit_segments(self) -> Sequence[Segment]:
        """The command buffer's segments, for naming the command wgpu rejects."""
        ...


class CallsProgram:
    """A submission's program of backend calls (``calls``: the backend's encode steps);
    ``plan``, :meth:`checked` and :meth:`encode_profiled` are the general path's."""

    __slots__ = ("_calls", "_checked", "_owner", "has_steps", "resources")

    def __init__(self, owner: CallsOwner, calls: Any, has_steps: bool) -> None:
        self._owner = owner
        self.resources = owner.resources
        self._calls = calls  # holds what the calls bind, as compile_plan's keepalive does
        self.has_steps = has_steps
        self._checked: CheckedProgram | None = None

    @property
    def calls(self) -> Any:
        """The backend encode steps this program records."""
        return self._calls

    @property
    def plan(self) -> Plan:
        """The plan (the general path's: for the profiler and ``describe``)."""
        return self._owner.plan

    def checked(self) -> CheckedProgram:
        """The general path's compiled program (for a profiled submission)."""
        checked = self._checked
        if checked is None:
            checked = self._checked = self._owner.full().prepare(None)
        return checked

    def encode(self, label: str = "hal") -> Any:
        """A new backend command buffer of the calls. Raises FailedPreconditionError (a
        buffer released since the checks), InvalidArgumentError naming the command wgpu
        rejects, or BackendError if the device was lost."""
        owner = self._owner
        try:
            return owner.device.backend.encode(self._calls, label)
        except BackendError as error:
            for buffer in (*self.resources, *owner.views):
                if buffer.is_released:
                    raise FailedPreconditionError(
                        f"{_WHAT}: a buffer the command buffer uses was released"
                    ) from None
            raise wgpu_failure(owner.device, owner.culprit_segments(), error) from None

    def encode_profiled(self, timer: Any) -> Any:
        """:meth:`encode` with GPU timestamps: the general path's program does it."""
        return self.checked().encode_profiled(timer)
