"""Queue, semaphore and ordering behaviour on the null backend: no GPU, no wgpu.

The null backend (hal/backends/null.py) moves real bytes for native copies, clears and
buffer writes and runs submissions at once on the host, so the queue's ordering, parking,
failure propagation and host transfers are checked here without an adapter.
"""

from __future__ import annotations

import itertools
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator

import numpy as np
import pytest

import hal
from hal.backends.null import NullBackend
from hal.runtime.adapters import AdapterInfo
from hal.runtime.device import Device

WAIT = 10.0


@pytest.fixture
def null() -> Iterator[Device]:
    device = Device(NullBackend(), AdapterInfo("null", "null", "cpu", "hal", "null"), "null")
    yield device
    device.close()


def test_create_device_with_the_null_implementation() -> None:
    with hal.create_device(implementation="null", backend="null") as device:
        assert device.info.implementation == "null"
        assert device.info.backend == "null"


def test_host_transfers_are_exact(null: Device) -> None:
    data = np.arange(256, dtype=np.uint8)
    buffer = null.buffer_from_numpy(data)
    assert np.array_equal(buffer.to_numpy(), data)
    # Word-aligned: unaligned edge bytes go through builtin kernels, which don't run here.
    null.transfer_h2d(b"\xff\xee\xdd\xcc", buffer, 8)
    expected = data.copy()
    expected[8:12] = [0xFF, 0xEE, 0xDD, 0xCC]
    assert null.transfer_d2h(buffer) == expected.tobytes()


def test_new_buffers_read_as_zeros(null: Device) -> None:
    assert null.allocate_buffer(100).to_numpy().tobytes() == bytes(100)


def test_held_back_work_runs_in_semaphore_order(null: Device) -> None:
    a, b = null.create_semaphore(), null.create_semaphore()
    source = null.buffer_from_numpy(np.full(64, 7, np.uint8))
    target = null.allocate_buffer(64)
    null.queue_copy(source, 0, target, 0, 64, wait=[(a, 1)], signal=[(b, 1)])
    assert b.query() == 0 and target.to_numpy().max() == 0  # parked: nothing ran
    a.signal(1)
    b.wait(1, timeout=WAIT)
    assert np.array_equal(target.to_numpy(), np.full(64, 7, np.uint8))


def test_a_chain_of_barriers_signals_every_link(null: Device) -> None:
    semaphores = [null.create_semaphore() for _ in range(50)]
    for first, second in itertools.pairwise(semaphores):
        null.queue_barrier(wait=[(first, 1)], signal=[(second, 1)])
    semaphores[0].signal(1)
    semaphores[-1].wait(1, timeout=WAIT)
    assert all(s.query() == 1 for s in semaphores)


def test_failure_propagates_down_a_chain(null: Device) -> None:
    gate, middle, last = (null.create_semaphore() for _ in range(3))
    null.queue_barrier(wait=[(gate, 1)], signal=[(middle, 1)])
    null.queue_barrier(wait=[(middle, 1)], signal=[(last, 1)])
    cause = RuntimeError("upstream")
    gate.fail(cause)
    with pytest.raises(hal.AbortedError) as error:
        last.wait(1, timeout=WAIT)
    assert error.value.__cause__ is cause


def test_close_fails_held_back_work(null: Device) -> None:
    gate, done = null.create_semaphore(), null.create_semaphore()
    null.queue_barrier(wait=[(gate, 1)], signal=[(done, 1)])
    null.close()
    with pytest.raises(hal.AbortedError) as error:
        done.wait(1, timeout=WAIT)
    assert isinstance(error.value.__cause__, hal.UnavailableError)


def test_loss_fails_parked_work_and_later_calls(null: Device) -> None:
    gate, done = null.create_semaphore(), null.create_semaphore()
    null.queue_barrier(wait=[(gate, 1)], signal=[(done, 1)])
    backend = null.backend
    assert isinstance(backend, NullBackend)
    backend.lose("test loss")
    gate.signal(1)  # the queue probes before submitting held-back work
    with pytest.raises(hal.AbortedError) as error:
        done.wait(1, timeout=WAIT)
    assert isinstance(error.value.__cause__, hal.UnavailableError)
    with pytest.raises(hal.UnavailableError):
        null.queue_barrier()


def test_threads_submitting_concurrently_lose_nothing(null: Device) -> None:
    counts = 4, 200
    semaphores = [null.create_semaphore() for _ in range(counts[0])]

    def submit(semaphore: hal.Semaphore) -> None:
        for value in range(1, counts[1] + 1):
            null.queue_barrier(signal=[(semaphore, value)])

    threads = [threading.Thread(target=submit, args=(s,)) for s in semaphores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    null.wait_idle(WAIT)
    assert [s.query() for s in semaphores] == [counts[1]] * counts[0]


def test_the_null_backend_needs_no_wgpu() -> None:
    code = textwrap.dedent(
        """
        import sys
        sys.modules["wgpu"] = None
        import numpy as np
        import hal
        with hal.create_device(implementation="null", backend="null") as device:
            buffer = device.buffer_from_numpy(np.arange(8, dtype=np.uint32))
            assert buffer.to_numpy(np.uint32).tolist() == list(range(8))
        assert sys.modules.get("wgpu") is None
        print("ok")
        """
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False
    )
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "ok"
