"""Host transfers through host-memory buffers (Dawn's host-mapped-pointer) and the staged path.

Where the backend has host-memory buffers, hal's staging pool wraps host pages as buffers and
the GPU copies straight from and into them (hal/runtime/staging.py, ``_HostStaging``). On this
machine's lavapipe Dawn offers the feature (with ``allow_unsafe_apis``), so the real path runs
here; ``HAL_DISABLE_FEATURES=host-mapped-pointer`` and wgpu-native take the mapped staging
buffers. A deferred null backend (submissions run only when waited for) checks the pool's
ordering logic: every chunk is read or rewritten only after its own submission finished.
"""

from __future__ import annotations

import ctypes
import gc
import json
import os
import subprocess
import sys
import threading
import weakref
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import WAIT, dawn_backend_or_skip, random_bytes

import hal
from hal.backends.null import NullBackend, NullBuffer
from hal.backends.protocol import BackendError
from hal.core.cost import TransferCosts, load_costs
from hal.runtime import staging
from hal.runtime.adapters import AdapterInfo
from hal.runtime.device import Device
from hal.runtime.staging import WRITE_BUFFER_MAX

REPO = Path(__file__).resolve().parent.parent
MIB = 1 << 20


def _dawn_or_skip() -> hal.Device:
    return hal.create_device(implementation="dawn", backend=dawn_backend_or_skip(), label="hm")


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
                  "wrap": d._host.staging.wrap, "results": d._host.staging.wrap_results,
                  "discrete": d.info.adapter_type == "discrete", "costs": d.caps.costs.name}}))
d.close()
"""


# -- wrapped memory: the caller's pages and readback results as host-memory buffers ------------


@pytest.fixture
def wrapping(
    dawn: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[hal.Device, list]]:
    """The Dawn device wrapping caller memory (on by default on lavapipe, off on discrete
    adapters) from 64 KiB in 256 KiB pieces, and the sizes it wraps."""
    pool = dawn._host.staging
    assert pool.wrap is (dawn.info.adapter_type != "discrete") and pool.wrap_results
    pool.release()
    saved = pool.chunk_size, pool.wrap_min, pool.wrap
    pool.chunk_size, pool.wrap_min, pool.wrap = 256 * 1024, 64 * 1024, True
    wraps: list[int] = []
    original = dawn.backend.wrap_host_memory

    def spy(address: int, size: int, keep: Any) -> Any:
        wraps.append(size)
        return original(address, size, keep)

    monkeypatch.setattr(dawn.backend, "wrap_host_memory", spy)
    try:
        yield dawn, wraps
    finally:
        pool.release()
        pool.chunk_size, pool.wrap_min, pool.wrap = saved


def _sources(data: np.ndarray) -> dict[str, Any]:
    """The same bytes as a writable array, bytes, a bytearray, a memoryview slice of a
    larger array at an odd word offset and a read-only array (not wrapped)."""
    padded = np.zeros(data.size + 8, np.uint8)
    padded[4 : 4 + data.size] = data
    readonly = data.copy()
    readonly.flags.writeable = False
    return {
        "array": data.copy(),
        "bytes": data.tobytes(),
        "bytearray": bytearray(data.tobytes()),
        "memoryview": memoryview(padded)[4 : 4 + data.size],
        "readonly": readonly,
    }


@pytest.mark.parametrize("kind", ["array", "bytes", "bytearray", "memoryview", "readonly"])
@pytest.mark.parametrize(("size", "offset"), [(MIB + 5, 0), (MIB, 8), (700_001, 3)])
def test_wrapped_h2d_is_exact_and_wraps_only_writable_or_bytes(
    wrapping: tuple[hal.Device, list], kind: str, size: int, offset: int
) -> None:
    device, wraps = wrapping
    data = random_bytes(size, seed=size + offset)
    source = _sources(data)[kind]
    canary = np.full(size + 16, 0xA5, np.uint8)
    buffer = device.buffer_from_numpy(canary)
    wraps.clear()
    device.transfer_h2d(source, buffer, offset)
    uploaded = list(wraps)
    expected = canary.copy()
    expected[offset : offset + size] = data
    assert np.array_equal(buffer.to_numpy()[: size + 16], expected)
    # The source's address and the target offset must agree modulo 4 (the GPU copies words):
    # then the page-aligned middle is wrapped in 256 KiB pieces, the rest goes through the pool.
    address = np.frombuffer(source, np.uint8).ctypes.data
    if kind != "readonly" and (address - offset) % 4 == 0:
        middle = (address + size) // 4096 * 4096 - (-(-address // 4096) * 4096)
        assert sum(uploaded) == middle and max(uploaded) == 256 * 1024
    else:
        assert uploaded == []
    # A source changed after the call returned is not seen: the GPU copy finished before.
    if kind in ("array", "bytearray"):
        source[:] = b"\x00" * size if kind == "bytearray" else 0
        assert np.array_equal(buffer.to_numpy()[offset : offset + size], data)


@pytest.mark.parametrize(("size", "offset"), [(MIB + 5, 0), (MIB, 8), (700_001, 3), (MIB, 1)])
def test_wrapped_d2h_and_to_numpy_are_exact(
    wrapping: tuple[hal.Device, list], size: int, offset: int
) -> None:
    device, wraps = wrapping
    data = random_bytes(size + 16, seed=size)
    buffer = device.buffer_from_numpy(data)
    wraps.clear()
    out = device.transfer_d2h(buffer, offset, size)
    assert type(out) is bytes and out == data[offset : offset + size].tobytes()
    array = buffer.to_numpy(offset=offset, shape=(size,))
    assert np.array_equal(array, data[offset : offset + size])
    if offset % 4 == 0:  # to_numpy's result is a region of host pages, page-aligned
        assert array.ctypes.data % 4096 == 0
    assert array.flags.writeable and array.flags.c_contiguous
    # The results are copies: later device writes do not show in them.
    device.transfer_h2d(np.zeros(size + 16, np.uint8), buffer)
    device.wait_idle(WAIT)
    assert out == data[offset : offset + size].tobytes()
    assert np.array_equal(array, data[offset : offset + size])


def test_to_numpy_dtypes_and_shapes_over_wrapped_pages(wrapping: tuple[hal.Device, list]) -> None:
    device, _ = wrapping
    values = np.arange(1 << 18, dtype=np.float32)
    buffer = device.buffer_from_numpy(values)
    result = buffer.to_numpy(np.float32, (512, 512))
    assert result.dtype == np.float32 and result.shape == (512, 512)
    assert result.flags.aligned and np.array_equal(result.reshape(-1), values)
    assert np.array_equal(buffer.to_numpy(np.float64), values.view(np.float64))


def test_to_numpy_regions_are_reused_only_after_the_array_died(
    wrapping: tuple[hal.Device, list],
) -> None:
    device, wraps = wrapping
    pool = device._host.staging
    pieces = -(-MIB // (256 * 1024))
    data = random_bytes(MIB, seed=21)
    buffer = device.buffer_from_numpy(data)
    wraps.clear()
    first = buffer.to_numpy()  # a new region, filled through the pool: nothing wrapped yet
    assert wraps == [] and np.array_equal(first, data)
    address = first.ctypes.data
    view = first[100:]  # a view keeps the region leased after the array itself is gone
    del first
    gc.collect()
    second = buffer.to_numpy()
    second_address = second.ctypes.data
    assert second_address != address
    assert np.array_equal(view, data[100:]) and np.array_equal(second, data)
    del view, second
    gc.collect()
    # A collected result's region is reused: its second use wraps its pages, later ones
    # copy into the same buffers (no new wraps).
    wraps.clear()
    third = buffer.to_numpy()
    assert third.ctypes.data in (address, second_address)
    assert np.array_equal(third, data) and len(wraps) == pieces
    third_address = third.ctypes.data
    del third
    gc.collect()
    wraps.clear()
    device.transfer_h2d(data[::-1].copy(), buffer)
    assert len(wraps) == pieces  # the upload wraps the caller's array (lavapipe's default)
    wraps.clear()
    fourth = buffer.to_numpy()
    assert fourth.ctypes.data == third_address
    assert np.array_equal(fourth, data[::-1]) and wraps == []
    assert len(pool._leased) == 1
    # An upload from a result's memory copies from the region's own buffers (no second wrap).
    other = device.allocate_buffer(MIB)
    device.transfer_h2d(fourth, other)
    assert wraps == [] and np.array_equal(other.to_numpy(), data[::-1])
    # release() destroys the idle regions; a live result keeps its memory and bytes.
    del fourth
    gc.collect()
    pool.release()
    assert pool._regions == [] and pool._leased == {}


def test_wrapped_memory_is_held_until_dawn_released_it(wrapping: tuple[hal.Device, list]) -> None:
    device, _ = wrapping
    buffer = device.allocate_buffer(MIB)
    source = random_bytes(MIB, seed=5)
    alive = weakref.ref(source)
    device.transfer_h2d(source, buffer)
    del source
    gc.collect()
    # Dawn holds the wrapped memory's owner until it released the buffer, which it does
    # once later submissions completed: never freed while the GPU may still use it.
    assert alive() is not None
    for _ in range(8):
        if alive() is None:
            break
        device.transfer_h2d(b"1234", buffer)
        device.wait_idle(WAIT)
        device.backend.poll()
        gc.collect()
    assert alive() is None


def test_a_refused_wrap_falls_back_to_the_pool(
    wrapping: tuple[hal.Device, list], monkeypatch: pytest.MonkeyPatch
) -> None:
    device, wraps = wrapping
    calls = [0]
    spy = device.backend.wrap_host_memory

    def refuse_the_second(address: int, size: int, keep: Any) -> Any:
        calls[0] += 1
        if calls[0] == 2:
            raise BackendError("refused: not anonymous memory")
        return spy(address, size, keep)

    monkeypatch.setattr(device.backend, "wrap_host_memory", refuse_the_second)
    data = random_bytes(MIB + 3, seed=9)
    buffer = device.allocate_buffer(MIB + 4)
    device.transfer_h2d(data, buffer)
    calls[0] = 0
    assert device.transfer_d2h(buffer, 0, MIB + 3) == data.tobytes()
    assert len(wraps) >= 2  # one piece each way went in before the refusal


def test_staged_path_where_the_feature_is_disabled() -> None:
    _dawn_or_skip().close()
    report = _subprocess(
        _REPORT.format(implementation="dawn"), HAL_DISABLE_FEATURES="host-mapped-pointer"
    )
    assert report == {
        "backend": False,
        "pool": False,
        "exact": True,
        "wrap": False,
        "results": False,
        "discrete": report["discrete"],
        "costs": report["costs"],
    }
    forced = _subprocess(_REPORT.format(implementation="dawn"), HAL_HOST_MEMORY="0")
    assert forced["pool"] is False and forced["wrap"] is False and forced["exact"] is True


def test_wrapping_can_be_turned_off() -> None:
    _dawn_or_skip().close()
    default = _subprocess(_REPORT.format(implementation="dawn"))
    if not default["backend"]:
        pytest.skip("this Dawn adapter has no host-mapped-pointer")
    on = _subprocess(_REPORT.format(implementation="dawn"), HAL_HOST_WRAP="1")
    off = _subprocess(
        _REPORT.format(implementation="dawn"), HAL_HOST_WRAP="0", HAL_HOST_RESULTS="0"
    )
    # Caller memory is wrapped by default only off discrete adapters; results always.
    wrap = not default["discrete"]
    assert (default["pool"], default["wrap"], default["results"]) == (True, wrap, True)
    assert (on["wrap"], on["results"], off["wrap"], off["results"]) == (True, True, False, False)
    assert default["exact"] and on["exact"] and off["exact"] and off["pool"]


def test_wgpu_native_keeps_the_staged_path() -> None:
    with hal.create_device(implementation="wgpu-native") as device:
        assert device.backend.host_memory_buffers is False
        assert device._host.staging.host_memory is False
        assert device._host.staging.wrap is False
        assert device._host.staging.lease_result(64 * MIB) is None
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
        self.wrapped: list[tuple[NullBuffer, Any]] = []

    def create_host_buffer(self, size: int) -> tuple[Any, memoryview]:
        buffer = NullBuffer(size, "host")
        self.host_buffers.append(buffer)
        return buffer, memoryview(buffer.data)

    def host_memory_alignment(self) -> int:
        return 4096

    def wrap_host_memory(self, address: int, size: int, keep: Any) -> Any:
        assert address % 4096 == 0 and size % 4096 == 0
        wrapped = NullBuffer(0, "wrapped")
        wrapped.data = memoryview((ctypes.c_char * size).from_address(address)).cast("B")  # type: ignore[assignment]
        self.wrapped.append((wrapped, keep))
        return wrapped

    def copy_command_buffer(self, copies: Sequence[tuple[Any, int, Any, int, int]]) -> Any:
        return [(_checked_copy, copy) for copy in copies]

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


def _checked_copy(_: Any, source: Any, so: int, target: Any, to: int, size: int) -> None:
    # Runs when the submission is waited for: a buffer destroyed before that was destroyed
    # while the "GPU" still had to use it.
    assert not source.destroyed and not target.destroyed, "copy after destroy"
    target.data[to : to + size] = source.data[so : so + size]


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


def test_deferred_wrapped_transfers_wait_before_returning(
    deferred: tuple[Device, _DeferredHostBackend],
) -> None:
    device, backend = deferred
    pool = device._host.staging
    pool.wrap_min = 64 * 1024
    assert pool.wrap is True
    size = 3 * MIB + 4  # whole words: the null backend runs no edge kernels
    data = random_bytes(size, seed=13)
    padded = np.zeros(size + 8, np.uint8)
    source = padded[4 : 4 + size]  # not page-aligned: head and tail through the pool
    source[:] = data
    buffer = device.allocate_buffer(size)
    device.transfer_h2d(source, buffer, 0)
    # Copies run only when waited for: the caller's memory was read before the call
    # returned, so changing it now changes nothing, and no wrap was destroyed before its
    # copy ran (_checked_copy).
    assert backend.wrapped and all(keep.obj is source for _, keep in backend.wrapped)
    assert all(wrapped.destroyed for wrapped, _ in backend.wrapped)
    source[:] = 0
    assert device.transfer_d2h(buffer, 0, size) == data.tobytes()
    count = len(backend.wrapped)
    out = buffer.to_numpy(offset=0, shape=(size,))
    assert np.array_equal(out, data)
    assert len(backend.wrapped) == count  # a new region: filled through the pool
    del out
    gc.collect()
    out = buffer.to_numpy(offset=0, shape=(size,))
    assert np.array_equal(out, data)
    assert len(backend.wrapped) > count  # the region's second use: its pages wrapped
    device.transfer_h2d(np.zeros(size, np.uint8), buffer)
    assert np.array_equal(out, data)  # a copy, finished before to_numpy returned


def test_discrete_defaults_copy_caller_memory_but_reuse_result_regions() -> None:
    # Measured on the H200: pinning caller memory per call costs more than the pool's copy,
    # so on a discrete adapter only the result regions are host pages the GPU writes.
    backend = _DeferredHostBackend()
    info = AdapterInfo("null", "null", "discrete", "hal", "null")
    with Device(backend, info, "discrete") as device:
        pool = device._host.staging
        assert (pool.wrap, pool.wrap_results) == (False, True)
        assert pool.chunk_size == 32 * MIB
        pool.chunk_size, pool.wrap_min = 64 * 1024, 64 * 1024
        size = MIB
        data = random_bytes(size, seed=17)
        buffer = device.allocate_buffer(size)
        device.transfer_h2d(data, buffer)
        assert backend.wrapped == []  # copied through the pool
        assert device.transfer_d2h(buffer) == data.tobytes()
        assert backend.wrapped == []  # bytes: through the pool too
        result = buffer.to_numpy()  # a new region: filled through the pool
        assert np.array_equal(result, data) and backend.wrapped == []
        del result
        gc.collect()
        again = buffer.to_numpy()  # its second use wraps the region's pages
        assert np.array_equal(again, data) and len(backend.wrapped) == size // (64 * 1024)
        wrapped = len(backend.wrapped)
        again[:] = 3
        other = device.allocate_buffer(size)
        device.transfer_h2d(again, other)  # from the region's buffers: no copy, no new wrap
        assert len(backend.wrapped) == wrapped
        assert device.transfer_d2h(other) == bytes([3]) * size


# -- streamed host copies (session 20) ---------------------------------------------------------


@pytest.fixture
def streaming(small_chunks: hal.Device, monkeypatch: pytest.MonkeyPatch) -> hal.Device:
    """The Dawn device with 256 KiB chunks copied by 3 streaming threads in 64 KiB pieces,
    caller memory and results copied through the pool (as on a discrete adapter)."""
    pool = small_chunks._host.staging
    monkeypatch.setattr(staging, "STREAM_PIECE", 64 * 1024)
    for name, value in (("stream_threads", 3), ("wrap", False), ("wrap_results", False)):
        monkeypatch.setattr(pool, name, value)
    return small_chunks


@pytest.mark.parametrize(
    ("size", "offset"), [(WRITE_BUFFER_MAX + 3, 2), (5 * MIB + 7, 5), (3 * MIB, 0), (3 * MIB, 4)]
)
def test_streamed_transfers_are_exact(streaming: hal.Device, size: int, offset: int) -> None:
    device = streaming
    data = random_bytes(size, seed=size + offset)
    canary = np.full(size + 16, 0x5A, np.uint8)
    buffer = device.buffer_from_numpy(canary)
    device.transfer_h2d(data, buffer, offset)
    expected = canary.copy()
    expected[offset : offset + size] = data
    assert device.transfer_d2h(buffer) == expected.tobytes()
    assert device.transfer_d2h(buffer, offset, size) == data.tobytes()
    assert np.array_equal(buffer.to_numpy(offset=offset)[:size], data)
    assert np.array_equal(device.buffer_from_numpy(data).to_numpy(), data)


def test_streamed_copies_run_on_the_stream_threads(
    streaming: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    names: list[str] = []
    real = np.copyto

    def spy(dst: Any, src: Any) -> None:
        names.append(threading.current_thread().name)
        real(dst, src)

    monkeypatch.setattr(staging.np, "copyto", spy)
    data = random_bytes(2 * MIB, seed=21)
    buffer = streaming.allocate_buffer(2 * MIB)
    streaming.transfer_h2d(data, buffer)
    assert len(names) == 2 * MIB // (64 * 1024)
    assert all(name.startswith("hal-stream") for name in names)
    names.clear()
    assert streaming.transfer_d2h(buffer) == data.tobytes()
    assert len(names) == 2 * MIB // (64 * 1024) and all(n.startswith("hal-stream") for n in names)


def test_a_failing_streamed_copy_raises_after_every_piece_stopped(
    streaming: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    calls: list[int] = []
    real = np.copyto

    def fail_once(dst: Any, src: Any) -> None:
        calls.append(1)
        if len(calls) == 5:
            raise MemoryError("piece 5")
        real(dst, src)

    buffer = streaming.allocate_buffer(2 * MIB)
    monkeypatch.setattr(staging.np, "copyto", fail_once)
    with pytest.raises(MemoryError, match="piece 5"):
        streaming.transfer_h2d(random_bytes(2 * MIB, seed=22), buffer)
    monkeypatch.setattr(staging.np, "copyto", real)
    data = random_bytes(2 * MIB, seed=23)  # the pool is usable afterwards
    streaming.transfer_h2d(data, buffer)
    assert streaming.transfer_d2h(buffer) == data.tobytes()


def test_join_waits_for_all_then_raises_the_first_error() -> None:
    pool = staging._stream_executor(2)
    gate = threading.Event()
    done: list[int] = []

    def slow() -> None:
        gate.wait(WAIT)
        done.append(1)

    def boom() -> None:
        raise ValueError("first")

    futures = [pool.submit(boom), pool.submit(slow)]
    threading.Timer(0.05, gate.set).start()
    with pytest.raises(ValueError, match="first"):
        staging._join(futures)
    assert done == [1]  # the slow piece had finished before the error was raised


def test_deferred_streamed_pool_waits_for_each_chunk_on_the_calling_thread(
    deferred: tuple[Device, _DeferredHostBackend], monkeypatch: pytest.MonkeyPatch
) -> None:
    device, backend = deferred
    pool = device._host.staging
    monkeypatch.setattr(staging, "STREAM_PIECE", 16 * 1024)
    pool.stream_threads, pool.wrap, pool.wrap_results = 3, False, False
    size = WRITE_BUFFER_MAX + 10 * 64 * 1024 + 4
    data = random_bytes(size, seed=24)
    buffer = device.allocate_buffer(size)
    device.transfer_h2d(data, buffer)
    assert len(backend.host_buffers) == pool.depth
    me = threading.current_thread().name
    # The waits for a buffer's GPU use before it is refilled are on this thread (hal's
    # completion thread waits too), never on a copy thread.
    mine = [ticket for name, ticket in backend.waits if name == me]
    assert len(mine) >= -(-size // pool.chunk_size) - pool.depth
    assert not any(name.startswith("hal-stream") for name, _ in backend.waits)
    assert device.transfer_d2h(buffer) == data.tobytes()
    assert np.array_equal(buffer.to_numpy(), data)
    assert not any(name.startswith("hal-stream") for name, _ in backend.waits)
    assert len(backend.host_buffers) == 2 * pool.depth


def test_stream_threads_default_to_one_without_host_memory() -> None:
    # wgpu-native maps its staging buffers: chunk by chunk with copy_bytes, never streamed.
    with hal.create_device(implementation="wgpu-native", label="nostream") as device:
        assert device._host.staging.host_memory is False
        assert device._host.staging.stream_threads == 1
