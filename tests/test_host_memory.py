"""Host transfers through host-memory buffers (Dawn's host-mapped-pointer) and the staged path.

Where the backend has host-memory buffers, hal's staging pool wraps host pages as buffers and
the GPU copies straight from and into them (hal/runtime/staging.py, ``_HostStaging``). On this
machine's lavapipe Dawn offers the feature (with ``allow_unsafe_apis``), so the real path runs
here; ``HAL_DISABLE_FEATURES=host-mapped-pointer`` and wgpu-native take the mapped staging
buffers. A deferred null backend (submissions run only when waited for) checks the pool's
ordering logic: every chunk is read or rewritten only after its own submission finished.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import WAIT, random_bytes

import hal
from hal.backends.null import NullBackend, NullBuffer
from hal.backends.protocol import BackendError
from hal.core.cost import TransferCosts, load_costs
from hal.runtime.adapters import AdapterInfo
from hal.runtime.device import Device
from hal.runtime.staging import WRITE_BUFFER_MAX

REPO = Path(__file__).resolve().parent.parent
MIB = 1 << 20


def _dawn_or_skip() -> hal.Device:
    try:
        import wgpudawn  # noqa: F401
    except ImportError as error:
        pytest.skip(f"wgpudawn is not installed ({error}): pip install '.[dawn]'")
    adapters = hal.available_adapters(implementation="dawn")
    if not adapters:
        pytest.skip("Dawn finds no adapter on this machine (it needs Vulkan with Mesa >= 24)")
    return hal.create_device(implementation="dawn", backend=adapters[0].backend, label="hm")


@pytest.fixture(scope="module")
def dawn() -> Iterator[hal.Device]:
    with _dawn_or_skip() as device:
        if not device.backend.host_memory_buffers:
            pytest.skip(f"{device.info} has no host-mapped-pointer: only the staged path here")
        yield device


@pytest.fixture
def small_chunks(dawn: hal.Device) -> Iterator[hal.Device]:
    """The Dawn device with 256 KiB chunks, so a few MiB take many pipelined chunks."""
    pool = dawn._host.staging
    saved = pool.chunk_size
    pool.release()  # buffers of the old chunk size would be reused otherwise
    pool.chunk_size = 256 * 1024
    try:
        yield dawn
    finally:
        pool.release()
        pool.chunk_size = saved


# -- the real path on Dawn ---------------------------------------------------------------------


def test_dawn_pool_is_host_memory(dawn: hal.Device) -> None:
    pool = dawn._host.staging
    assert pool.host_memory is True
    data = random_bytes(3 * MIB, seed=1)
    buffer = dawn.buffer_from_numpy(data)
    assert np.array_equal(buffer.to_numpy(), data)
    idle = [item for items in pool._idle.values() for item in items]
    assert idle and all(type(item).__name__ == "_HostStaging" for item in idle)
    # The pages are the buffer's memory: a GPU copy into the host buffer lands in the view.
    item = idle[0]
    view = np.frombuffer(item._view, np.uint8)
    cb = dawn.backend.copy_command_buffer([(buffer.allocation.handle, 0, item.buffer, 0, 4096)])
    with dawn.backend.submission_lock:
        ticket = dawn.backend.submit([cb])
    dawn.backend.wait(ticket)
    assert np.array_equal(view[:4096], data[:4096])


@pytest.mark.parametrize(
    ("size", "offset"),
    [(5, 3), (4096, 0), (65_537, 1), (WRITE_BUFFER_MAX + 3, 2), (5 * MIB + 7, 5), (3 * MIB, 0)],
)
def test_dawn_host_memory_transfers_are_exact(
    small_chunks: hal.Device, size: int, offset: int
) -> None:
    device = small_chunks
    data = random_bytes(size, seed=size)
    canary = np.full(size + 16, 0xA5, np.uint8)
    buffer = device.buffer_from_numpy(canary)
    device.transfer_h2d(data, buffer, offset)
    expected = canary.copy()
    expected[offset : offset + size] = data
    assert device.transfer_d2h(buffer) == expected.tobytes()
    assert np.array_equal(buffer.to_numpy(), expected)
    assert device.transfer_d2h(buffer, offset, size) == data.tobytes()
    assert np.array_equal(buffer.to_numpy(offset=offset)[:size], data)
    whole = device.buffer_from_numpy(data)
    assert np.array_equal(whole.to_numpy(), data)


def test_dawn_queue_update_and_queue_write_through_host_memory(
    small_chunks: hal.Device, tmp_path: Path
) -> None:
    device = small_chunks
    size = 2 * MIB + 6
    data = random_bytes(size, seed=7)
    target = device.allocate_buffer(size + 8)
    semaphore = device.create_semaphore()
    gate = device.create_semaphore()
    # Held back behind a wait: captured into host buffers now, copied once the gate opens.
    device.queue_update(data, 0, target, 2, size, wait=[(gate, 1)], signal=[(semaphore, 1)])
    data[:] = 0  # the capture already copied the bytes out
    gate.signal(1)
    semaphore.wait(1, timeout=WAIT)
    expected = random_bytes(size, seed=7)
    assert device.transfer_d2h(target, 2, size) == expected.tobytes()
    path = tmp_path / "out.bin"
    device.queue_write(target, 2, str(path), 0, size, signal=[(semaphore, 2)])
    semaphore.wait(2, timeout=WAIT)
    assert path.read_bytes() == expected.tobytes()


def test_dawn_pool_release_destroys_idle_host_buffers(dawn: hal.Device) -> None:
    pool = dawn._host.staging
    data = random_bytes(2 * MIB, seed=3)
    buffer = dawn.buffer_from_numpy(data)
    assert np.array_equal(buffer.to_numpy(), data)
    idle = [item for items in pool._idle.values() for item in items]
    assert idle
    pool.release()
    assert pool._idle == {True: [], False: []}
    # Destroyed: Dawn rejects a copy from them (the view keeps the pages alive meanwhile).
    copy = [(idle[0].buffer, 0, buffer.allocation.handle, 0, 4)]
    with pytest.raises(BackendError, match=r"(?i)destroyed"):
        cb = dawn.backend.copy_command_buffer(copy)
        with dawn.backend.submission_lock:
            dawn.backend.submit([cb])
    # The pool stays usable: new host buffers.
    assert np.array_equal(dawn.buffer_from_numpy(data).to_numpy(), data)


def _subprocess(code: str, **env: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-c", code],
        cwd=REPO,
        # Dawn's own backend whatever HAL_BACKEND says (the GL configuration sets it; Dawn
        # has no GL backend).
        env={**{k: v for k, v in os.environ.items() if k != "HAL_BACKEND"}, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stderr
    return dict(json.loads(result.stdout.strip().splitlines()[-1]))


_REPORT = """
import json, numpy as np, hal
d = hal.create_device(implementation={implementation!r})
data = np.arange(3 << 20, dtype=np.uint32).view(np.uint8)[: (9 << 20) + 3]
b = d.buffer_from_numpy(data)
ok = np.array_equal(b.to_numpy(), data) and d.transfer_d2h(b, 5) == data[5:].tobytes()
print(json.dumps({{"backend": d.backend.host_memory_buffers,
                  "pool": d._host.staging.host_memory, "exact": bool(ok),
                  "costs": d.caps.costs.name}}))
d.close()
"""


def test_staged_path_where_the_feature_is_disabled() -> None:
    _dawn_or_skip().close()
    report = _subprocess(
        _REPORT.format(implementation="dawn"), HAL_DISABLE_FEATURES="host-mapped-pointer"
    )
    assert report == {
        "backend": False,
        "pool": False,
        "exact": True,
        "costs": report["costs"],
    }
    forced = _subprocess(_REPORT.format(implementation="dawn"), HAL_HOST_MEMORY="0")
    assert forced["pool"] is False and forced["exact"] is True


def test_wgpu_native_keeps_the_staged_path() -> None:
    with hal.create_device(implementation="wgpu-native") as device:
        assert device.backend.host_memory_buffers is False
        assert device._host.staging.host_memory is False
        data = random_bytes(2 * MIB + 1, seed=9)
        assert np.array_equal(device.buffer_from_numpy(data).to_numpy(), data)


# -- cost models per implementation ---------------------------------------------------------------


def test_dawn_device_loads_the_dawn_cost_model(dawn: hal.Device) -> None:
    costs = dawn.caps.costs
    assert costs.name.startswith("dawn-"), costs.name
    shipped = json.loads((REPO / "hal" / "cost_models" / "dawn-llvmpipe-vulkan.json").read_text())
    if "llvmpipe" in dawn.info.name.lower():
        assert costs.dispatch_us == shipped["dispatch_us"]
    with hal.create_device(implementation="wgpu-native") as native:
        assert not native.caps.costs.name.startswith("dawn-")


def test_load_costs_matches_implementation_and_adapter() -> None:
    text = "llvmpipe (LLVM 15.0.6, 256 bits) vulkan mesa cpu"
    dawn = load_costs(text, "dawn")
    native = load_costs(text, "wgpu-native")
    assert dawn.name.startswith("dawn-llvmpipe") and not native.name.startswith("dawn-")
    assert load_costs(text) == native  # the default implementation is wgpu-native
    assert load_costs("NVIDIA H200 vulkan nvidia discrete", "dawn").name.startswith(
        ("dawn-nvidia", "generic")
    )
    assert load_costs(text, "null") == TransferCosts()  # no model: the generic one


# -- the pool's ordering logic, on a deferred null backend -------------------------------------


class _DeferredHostBackend(NullBackend):
    """The null backend with host-memory buffers whose submissions run only when waited for
    (``wait``), and ``write_buffer`` ordered before the next submission: a host-memory chunk
    read or rewritten before its submission was waited for shows stale bytes."""

    host_memory_buffers = True

    def __init__(self) -> None:
        super().__init__()
        self._queued: list[tuple[int, list[Any]]] = []
        self._writes: list[Any] = []
        self._ran = 0
        self.waits: list[tuple[str, int]] = []
        self.host_buffers: list[NullBuffer] = []

    def create_host_buffer(self, size: int) -> tuple[Any, memoryview]:
        buffer = NullBuffer(size, "host")
        self.host_buffers.append(buffer)
        return buffer, memoryview(buffer.data)

    def write_buffer(self, buffer: Any, offset: int, data: Any) -> None:
        self._check()
        payload = bytes(memoryview(data).cast("B"))
        self._writes.append(lambda: NullBackend.write_buffer(self, buffer, offset, payload))

    def submit(self, command_buffers: Sequence[Any]) -> int:
        self._check()
        with self._lock:
            self.submissions += 1
            calls = [(_run, (w,)) for w in self._writes] + [c for cb in command_buffers for c in cb]
            self._writes = []
            self._queued.append((self.submissions, calls))
            return self.submissions

    def completed_ticket(self) -> int:
        self._check()
        return self._ran

    def wait(self, ticket: int) -> None:
        self._check()
        with self._lock:
            self.waits.append((threading.current_thread().name, ticket))
            while self._queued and self._queued[0][0] <= ticket:
                done, calls = self._queued.pop(0)
                for function, args in calls:
                    function(None, *args)
                self._ran = done


def _run(_: Any, write: Any) -> None:
    write()


@pytest.fixture
def deferred() -> Iterator[tuple[Device, _DeferredHostBackend]]:
    backend = _DeferredHostBackend()
    device = Device(backend, AdapterInfo("null", "null", "cpu", "hal", "null"), "deferred")
    device._host.staging.chunk_size = 64 * 1024
    yield device, backend
    device.close()


def test_deferred_pool_waits_for_each_chunk(deferred: tuple[Device, _DeferredHostBackend]) -> None:
    device, backend = deferred
    pool = device._host.staging
    assert pool.host_memory is True
    size = WRITE_BUFFER_MAX + 10 * 64 * 1024  # past write_buffer: 17+ chunks over 3 buffers
    data = random_bytes(size, seed=11)
    buffer = device.allocate_buffer(size)
    device.transfer_h2d(data, buffer)
    # Only pool.depth host buffers for the upload, each rewritten only after the previous
    # submission that read it was waited for on this thread.
    assert len(backend.host_buffers) == pool.depth
    me = threading.current_thread().name
    mine = [ticket for name, ticket in backend.waits if name == me]
    assert len(mine) >= -(-size // pool.chunk_size) - pool.depth
    out = device.transfer_d2h(buffer)
    assert out == data.tobytes()
    assert np.array_equal(buffer.to_numpy(), data)
    assert len(backend.host_buffers) == 2 * pool.depth  # a reused set for each direction
