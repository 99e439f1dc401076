"""The queue operations behind a device's ``queue_execute``, ``queue_barrier``,
``queue_fill``, ``queue_update`` and ``queue_copy``, with the fixed cost of one call cut.

The device's methods are thin: they check that the device is open and call in here. What a
call used to pay besides its real work — importing the modules it needs (a function-level
import costs ~0.3–1 µs each, three per ``queue_copy``), creating its command buffer through
the public, validating path and passing the general ``queue_execute`` checks for a command
buffer hal itself has just made — is paid once per device here, so a single queue operation
costs its recording, its plan and its submission. Errors and their messages are those of the
command the operation records (``fill_buffer: …`` reads ``queue_fill: …``), raised before
anything is queued.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from hal.core.checks import check_sequence
from hal.enums import CommandBufferMode, CommandCategory
from hal.errors import HalError
from hal.runtime.command_buffer import CommandBuffer
from hal.runtime.peer import is_peer_source, queue_peer_copy
from hal.runtime.semaphore import normalise_points
from hal.runtime.transfer_lane import TransferLane
from hal.runtime.transfers import queue_update_staged

if TYPE_CHECKING:
    from hal.core.refs import BufferTarget
    from hal.runtime.device import Device
    from hal.runtime.execution import Executor
    from hal.runtime.semaphore import Point, WaitList
    from hal.runtime.transfers import HostTransfers

__all__ = ["QueueOps", "points"]

_ONE_SHOT = CommandBufferMode.ONE_SHOT
_TRANSFER = CommandCategory.TRANSFER
_EXECUTE_WAIT = "queue_execute wait"
_EXECUTE_SIGNAL = "queue_execute signal"


def points(what: str, wait: Any, signal: Any) -> tuple[tuple[Point, ...], tuple[Point, ...]]:
    """A queue operation's wait and signal lists, validated before the operation does
    anything (a rejected call changes nothing). Raises InvalidArgumentError, OutOfRangeError."""
    # No wait (the common case): nothing to normalise.
    waits = () if type(wait) is tuple and not wait else normalise_points(f"{what} wait", wait)
    return waits, normalise_points(f"{what} signal", signal)


class QueueOps:
    """The queue operations of one device (see the module docstring). Each method raises
    what the device's method of the same name documents; the device checks it is open."""

    __slots__ = ("_device", "_executor", "_host", "_lane")

    def __init__(self, device: Device, host: HostTransfers, executor: Executor) -> None:
        self._device = device
        self._host = host
        self._executor = executor
        self._lane = TransferLane(device, executor)

    def execute(
        self,
        command_buffers: Any,
        wait: WaitList,
        signal: WaitList,
        binding_table: Sequence[Any] | None,
    ) -> None:
        """``queue_execute``: the arguments checked, then the executor's submission."""
        what = "queue_execute"
        # The argument names of the messages as constants: no string built per call.
        waits = () if type(wait) is tuple and not wait else normalise_points(_EXECUTE_WAIT, wait)
        signals = normalise_points(_EXECUTE_SIGNAL, signal)
        if type(command_buffers) is CommandBuffer and binding_table is None:
            # One command buffer (the eager round trip): the transfer lane's, or the
            # executor's one-buffer submission with the general path's checks.
            if not self._lane.execute(command_buffers, waits, signals):
                self._executor.execute_single(command_buffers, waits, signals)
            return
        if command_buffers is not None and not isinstance(command_buffers, CommandBuffer):
            command_buffers = check_sequence(
                what, "command_buffers", command_buffers, "CommandBuffers"
            )
        if binding_table is not None:
            binding_table = check_sequence(
                what, "binding_table", binding_table, "Buffers or BufferRefs"
            )
        self._executor.execute(command_buffers, waits, signals, binding_table)

    def command_buffer(
        self, mode: CommandBufferMode, categories: CommandCategory, binding_capacity: int
    ) -> CommandBuffer:
        """``create_command_buffer``: a new command buffer (the device checked it is open),
        without a function-level import on every call. Raises InvalidArgumentError for
        inconsistent mode bits or a negative capacity."""
        return CommandBuffer(self._device, mode, categories, binding_capacity)

    def barrier(self, wait: WaitList, signal: WaitList) -> None:
        """``queue_barrier``: an operation without command buffers."""
        waits, signals = points("queue_barrier", wait, signal)
        self._executor.execute(None, waits, signals, None)

    def fill(
        self,
        target: BufferTarget,
        offset: int,
        length: int | None,
        pattern: int | bytes,
        pattern_length: int | None,
        wait: WaitList,
        signal: WaitList,
    ) -> None:
        """``queue_fill``: one ``fill_buffer`` in a one-shot command buffer."""
        waits, signals = points("queue_fill", wait, signal)
        if self._lane.fill(target, offset, length, pattern, pattern_length, waits, signals):
            return
        cb = self._begin()
        _record(
            "queue_fill",
            "fill_buffer",
            cb.fill_buffer,
            target,
            offset,
            length,
            pattern,
            pattern_length,
        )
        self._submit(cb, waits, signals)

    def update(
        self,
        source: Any,
        source_offset: int,
        target: BufferTarget,
        target_offset: int,
        length: int,
        wait: WaitList,
        signal: WaitList,
    ) -> None:
        """``queue_update``: large updates staged (hal/runtime/transfers.py), small ones one
        ``update_buffer`` in a one-shot command buffer."""
        what = "queue_update"
        waits, signals = points(what, wait, signal)
        if queue_update_staged(
            self._host, source, source_offset, target, target_offset, length, waits, signals
        ):
            return
        cb = self._begin()
        _record(
            what,
            "update_buffer",
            cb.update_buffer,
            source,
            source_offset,
            target,
            target_offset,
            length,
        )
        self._submit(cb, waits, signals)

    def copy(
        self,
        source: BufferTarget,
        source_offset: int,
        target: BufferTarget,
        target_offset: int,
        length: int | None,
        wait: WaitList,
        signal: WaitList,
    ) -> None:
        """``queue_copy``: a peer copy from another device's buffer (hal/runtime/peer.py),
        else one ``copy_buffer`` in a one-shot command buffer."""
        what = "queue_copy"
        waits, signals = points(what, wait, signal)
        if is_peer_source(source, self._device):
            queue_peer_copy(
                self._host, source, source_offset, target, target_offset, length, waits, signals
            )
            return
        if self._lane.copy(source, source_offset, target, target_offset, length, waits, signals):
            return
        cb = self._begin()
        _record(
            what,
            "copy_buffer",
            cb.copy_buffer,
            source,
            source_offset,
            target,
            target_offset,
            length,
        )
        self._submit(cb, waits, signals)

    def _begin(self) -> CommandBuffer:
        """A new one-shot transfer command buffer, recording (the device is open: checked by
        the caller's method)."""
        cb = CommandBuffer(self._device, _ONE_SHOT, _TRANSFER, 0)
        cb.begin()
        return cb

    def _submit(
        self, cb: CommandBuffer, waits: tuple[Point, ...], signals: tuple[Point, ...]
    ) -> None:
        cb.end()
        self._executor.execute_one(cb, waits, signals)


def _record(what: str, command: str, record: Callable[..., None], *args: Any) -> None:
    """Record one ``command`` (``record(*args)``) for the queue operation ``what``: its
    HalError, of the same type, names ``what`` instead (``fill_buffer: …`` reads
    ``queue_fill: …``); one naming something else propagates as it is."""
    try:
        record(*args)
    except HalError as error:
        prefix = f"{command}: "
        message = str(error)
        if not message.startswith(prefix):
            raise
        raise type(error)(f"{what}: {message[len(prefix) :]}") from error.__cause__
