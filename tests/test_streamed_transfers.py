"""Streamed host copies (hal/runtime/staging.py, ``HAL_STREAM_THREADS``) under
settings the session's tests did not try: a pool of depth 1 (``HAL_STAGING_DEPTH=1``), a
source the caller changes once the call returned, two threads streaming at once."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import WAIT, dawn_backend_or_skip, random_bytes
from test_host_memory import _DeferredHostBackend

import hal
from hal.runtime import staging
from hal.runtime.adapters import AdapterInfo
from hal.runtime.device import Device
from hal.runtime.staging import WRITE_BUFFER_MAX

MIB = 1 << 20


@pytest.fixture
def deferred(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Device, _DeferredHostBackend]]:
    """A host-memory null device (submissions run when waited for) that streams over 3
    threads in 16 KiB pieces, 64 KiB chunks, results copied through the pool."""
    backend = _DeferredHostBackend()
    device = Device(backend, AdapterInfo("null", "null", "cpu", "hal", "null"), "review")
    pool = device._host.staging
    pool.chunk_size = 64 * 1024
    monkeypatch.setattr(staging, "STREAM_PIECE", 16 * 1024)
    pool.stream_threads, pool.wrap, pool.wrap_results = 3, False, False
    yield device, backend
    device.close()


@pytest.fixture(scope="module")
def dawn() -> Iterator[hal.Device]:
    with hal.create_device(
        implementation="dawn", backend=dawn_backend_or_skip(), label="review"
    ) as device:
        if not device.backend.host_memory_buffers:
            pytest.skip(f"{device.info} has no host-mapped-pointer: nothing streams")
        yield device


@pytest.fixture
def dawn_streaming(dawn: hal.Device, monkeypatch: pytest.MonkeyPatch) -> Iterator[hal.Device]:
    pool = dawn._host.staging
    pool.release()
    monkeypatch.setattr(staging, "STREAM_PIECE", 64 * 1024)
    for name, value in (
        ("chunk_size", 256 * 1024),
        ("stream_threads", 3),
        ("wrap", False),
        ("wrap_results", False),
    ):
        monkeypatch.setattr(pool, name, value)
    yield dawn
    pool.release()


def test_streamed_readback_with_depth_one_is_exact_deferred(
    deferred: tuple[Device, _DeferredHostBackend],
) -> None:
    device, _ = deferred
    device._host.staging.depth = 1  # what HAL_STAGING_DEPTH=1 gives
    size = WRITE_BUFFER_MAX + 4 * 64 * 1024 + 4
    data = random_bytes(size, seed=31)
    buffer = device.allocate_buffer(size)
    device.transfer_h2d(data, buffer)  # uploads stream correctly at depth 1
    device.wait_idle(WAIT)
    assert bytes(backend_bytes(buffer, size)) == data.tobytes()
    assert device.transfer_d2h(buffer) == data.tobytes()


def test_streamed_readback_with_depth_one_is_exact_dawn(
    dawn_streaming: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = dawn_streaming
    monkeypatch.setattr(device._host.staging, "depth", 1)
    size = 3 * MIB + 8
    data = random_bytes(size, seed=32)
    buffer = device.buffer_from_numpy(data)  # uploads are right: checked below by to_numpy
    assert device.transfer_d2h(buffer) == data.tobytes()


def backend_bytes(buffer: hal.Buffer, size: int) -> memoryview:
    """The null backend's own bytes of ``buffer`` (no hal readback path involved)."""
    return memoryview(buffer.allocation.handle.data)[:size]


def test_streamed_transfers_from_two_threads_at_once_are_exact(dawn_streaming: hal.Device) -> None:
    device = dawn_streaming
    size = 2 * MIB + 12
    results: dict[int, bytes] = {}
    errors: list[BaseException] = []
    buffers = [device.allocate_buffer(size + 8) for _ in range(2)]

    def work(i: int) -> None:
        try:
            for round_ in range(3):
                data = random_bytes(size, seed=100 * i + round_)
                device.transfer_h2d(data, buffers[i], 4)
                data[:] = 0  # the call returned: the caller's array is its own again
                results[i] = device.transfer_d2h(buffers[i], 4, size)
                assert results[i] == random_bytes(size, seed=100 * i + round_).tobytes()
        except BaseException as error:  # reported on the main thread
            errors.append(error)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(WAIT)
    assert not errors, errors
    for i in range(2):
        assert results[i] == random_bytes(size, seed=100 * i + 2).tobytes()


def test_a_streamed_upload_source_changed_after_return_does_not_matter(
    dawn_streaming: hal.Device,
) -> None:
    device = dawn_streaming
    size = 3 * MIB + 1
    data = random_bytes(size, seed=41)
    buffer = device.allocate_buffer(size)
    device.transfer_h2d(data, buffer)
    data[:] = 0
    del data
    assert np.array_equal(
        np.frombuffer(device.transfer_d2h(buffer), np.uint8), random_bytes(size, seed=41)
    )


def test_a_failing_streamed_readback_piece_raises_and_the_pool_stays_usable(
    dawn_streaming: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    device = dawn_streaming
    size = 2 * MIB + 6
    data = random_bytes(size, seed=51)
    buffer = device.buffer_from_numpy(data)
    calls: list[int] = []
    real = np.copyto

    def fail_fifth(dst: object, src: object) -> None:
        calls.append(1)
        if len(calls) == 5:
            raise MemoryError("piece 5 of the readback")
        real(dst, src)  # type: ignore[call-overload]

    monkeypatch.setattr(staging.np, "copyto", fail_fifth)
    with pytest.raises(MemoryError, match="piece 5 of the readback"):
        device.transfer_d2h(buffer, 2, size - 2)
    monkeypatch.setattr(staging.np, "copyto", real)
    assert device.transfer_d2h(buffer, 2, size - 2) == data[2:].tobytes()
    other = random_bytes(size, seed=52)
    device.transfer_h2d(other, buffer)
    assert device.transfer_d2h(buffer) == other.tobytes()
