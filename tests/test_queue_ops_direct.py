"""Single queue operations through hal/runtime/queue_ops.py (issue 10, session 20): the
bytes, the errors naming the operation, and a rejected call changing nothing."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import WAIT

import hal


def test_fill_copy_update_bytes(device: hal.Device) -> None:
    """Each operation's bytes land, in order, signalled once done."""
    a = device.buffer_from_numpy(np.zeros(64, np.uint8))
    b = device.allocate_buffer(64)
    s = device.create_semaphore()
    device.queue_fill(a, 0, 16, 0x11223344, signal=[(s, 1)])
    device.queue_update(bytes(range(8)), 0, a, 16, 8, wait=[(s, 1)], signal=[(s, 2)])
    device.queue_copy(a, 0, b, 8, 24, wait=[(s, 2)], signal=[(s, 3)])
    s.wait(3, timeout=WAIT)
    expected_a = np.zeros(64, np.uint8)
    expected_a[:16] = np.frombuffer(bytes([0x44, 0x33, 0x22, 0x11]) * 4, np.uint8)
    expected_a[16:24] = np.arange(8)
    assert np.array_equal(a.to_numpy(np.uint8), expected_a)
    assert np.array_equal(b.to_numpy(np.uint8)[8:32], expected_a[:24])


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        ("fill", hal.OutOfRangeError, r"^queue_fill: "),
        ("copy", hal.OutOfRangeError, r"^queue_copy: "),
        ("update", hal.OutOfRangeError, r"^queue_update: "),
    ],
)
def test_errors_name_the_operation_and_queue_nothing(
    device: hal.Device, call: str, error: type[Exception], message: str
) -> None:
    """A range past the buffer: the recorded command's error type, the operation's name, and
    nothing queued (the signal never comes, the bytes stay)."""
    a = device.buffer_from_numpy(np.arange(16, dtype=np.uint8))
    b = device.buffer_from_numpy(np.full(16, 9, np.uint8))
    s = device.create_semaphore()
    with pytest.raises(error, match=message):
        if call == "fill":
            device.queue_fill(a, 0, 32, 0, signal=[(s, 1)])
        elif call == "copy":
            device.queue_copy(a, 0, b, 8, 16, signal=[(s, 1)])
        else:
            device.queue_update(bytes(32), 0, b, 0, 32, signal=[(s, 1)])
    device.wait_idle(WAIT)
    assert s.query() == 0
    assert np.array_equal(a.to_numpy(np.uint8), np.arange(16, dtype=np.uint8))
    assert np.array_equal(b.to_numpy(np.uint8), np.full(16, 9, np.uint8))


def test_bad_wait_list_is_rejected_before_recording(device: hal.Device) -> None:
    """A malformed wait list raises InvalidArgumentError naming the operation's list."""
    a = device.allocate_buffer(16)
    with pytest.raises(hal.InvalidArgumentError, match=r"^queue_copy wait: "):
        device.queue_copy(a, 0, a, 8, 4, wait=[("not a semaphore", 1)])
    with pytest.raises(hal.InvalidArgumentError, match=r"^queue_execute: "):
        device.queue_execute(["not a command buffer"])  # type: ignore[list-item]
