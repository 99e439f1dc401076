"""The registration cache of caller memory (hal/runtime/host_cache.py).

A numpy array transferred again has its page-aligned interior wrapped once as host-memory
buffers and kept; later transfers copy straight from or into its pages. On lavapipe's Dawn
adapter (host-mapped-pointer) the real path runs; a deferred null backend (submissions run
only when waited for, destroyed buffers refuse copies) checks that every cached transfer
waits for its copies before it returns and that no wrap is destroyed under a copy.
"""

from __future__ import annotations

import gc
import mmap
import os
import subprocess
import sys
import threading
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import WAIT, dawn_backend_or_skip, random_bytes
from test_host_memory import _DeferredHostBackend

import hal
from hal.backends.protocol import BackendError
from hal.runtime.adapters import AdapterInfo
from hal.runtime.device import Device
from hal.runtime.host_cache import HostCache, owner_array, parse_bytes

REPO = Path(__file__).resolve().parent.parent
MIB = 1 << 20


@pytest.fixture(scope="module")
def dawn() -> Iterator[hal.Device]:
    with hal.create_device(
        implementation="dawn", backend=dawn_backend_or_skip(), label="cache"
    ) as device:
        if not device.backend.host_memory_buffers:
            pytest.skip(f"{device.info} has no host-mapped-pointer: no cache there")
        yield device


@pytest.fixture
def pool(dawn: hal.Device) -> Iterator[Any]:
    """The Dawn device's staging pool with an empty cache of 64 MiB, 1 MiB wrap minimum, and
    no per-call wraps of caller memory (as on a discrete adapter; those hold the memory
    until Dawn disposed of them)."""
    pool = dawn._host.staging
    saved = pool.cache.limit, pool.cache.minimum, pool.wrap_min, pool.wrap
    pool.cache.clear()
    pool.cache.limit, pool.cache.minimum, pool.wrap_min = 64 * MIB, MIB, MIB
    pool.cache.hits = pool.cache.made = 0
    pool.wrap = False
    try:
        yield pool
    finally:
        pool.cache.clear()
        pool.cache.limit, pool.cache.minimum, pool.wrap_min, pool.wrap = saved


# -- what is cached --------------------------------------------------------------------------


def test_owner_array_follows_base_to_the_array_that_owns_the_memory() -> None:
    owner = np.zeros(4096, np.uint8)
    assert owner_array(owner) is owner
    assert owner_array(owner[10:]) is owner
    assert owner_array(owner.reshape(64, 64).T[3]) is owner
    assert owner_array(owner.view(np.float32)) is owner
    assert owner_array(memoryview(owner[4:]).cast("B").obj) is owner
    # Memory numpy does not own (hal cannot know when it goes away): never cached.
    assert owner_array(np.frombuffer(bytes(64), np.uint8)) is None
    assert owner_array(np.frombuffer(bytearray(64), np.uint8)) is None
    pages = mmap.mmap(-1, 4096)
    assert owner_array(np.frombuffer(pages, np.uint8)[8:]) is None
    assert owner_array(b"abc") is None
    assert owner_array(memoryview(bytearray(8))) is None


def test_parse_bytes() -> None:
    assert parse_bytes("0") == 0
    assert parse_bytes("4096") == 4096
    assert parse_bytes("512M") == 512 * MIB
    assert parse_bytes(" 4GiB ") == 4 << 30
    assert parse_bytes("2k") == 2048
    assert parse_bytes("") is None
    assert parse_bytes("-1") is None
    assert parse_bytes("lots") is None


@pytest.mark.parametrize(("value", "expected"), [("0", 0), ("96M", 96 * MIB), ("junk", None)])
def test_cache_bytes_from_the_environment(value: str, expected: int | None) -> None:
    env = {**os.environ, "HAL_HOST_CACHE_BYTES": value}
    code = "from hal.runtime import host_cache as h; print(h.CACHE_BYTES, h._default_bytes())"
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.split()
    cache_bytes, default = int(out[0]), int(out[1])
    assert cache_bytes == (default if expected is None else expected)
    assert 0 < default <= 4 << 30


# -- the real path on Dawn (lavapipe) -------------------------------------------------------


def test_second_transfer_wraps_once_and_later_ones_reuse_it(
    dawn: hal.Device, pool: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    wraps: list[int] = []
    original = dawn.backend.wrap_host_memory

    def spy(address: int, size: int, keep: Any) -> Any:
        wraps.append(size)
        return original(address, size, keep)

    monkeypatch.setattr(dawn.backend, "wrap_host_memory", spy)
    size = 6 * MIB + 12
    data = random_bytes(size, seed=21)
    buffer = dawn.allocate_buffer(size)
    dawn.transfer_h2d(data, buffer)  # first sighting: through the pool
    assert (wraps, len(pool.cache)) == ([], 0)
    dawn.transfer_h2d(data, buffer)  # second: the interior wrapped and kept
    assert len(pool.cache) == 1 and pool.cache.made == 1 and pool.cache.hits == 0
    interior = pool.cache.bytes
    assert sum(wraps) == interior and size - 2 * 4096 < interior <= size
    for seed in (22, 23):  # later uses: no new wrap, the caller's current bytes land
        data[:] = random_bytes(size, seed=seed)
        dawn.transfer_h2d(data, buffer)
        assert dawn.transfer_d2h(buffer) == data.tobytes()
    assert sum(wraps) == interior and pool.cache.hits == 2


@pytest.mark.parametrize("per_call_wraps", [False, True])  # lavapipe's default: True
@pytest.mark.parametrize(
    ("size", "start", "target_offset"),
    [(3 * MIB, 0, 0), (3 * MIB + 5, 3, 7), (5 * MIB + 4, 4, 0), (2 * MIB, 4096, 8)],
)
def test_cached_transfers_are_exact(
    dawn: hal.Device, pool: Any, size: int, start: int, target_offset: int, per_call_wraps: bool
) -> None:
    pool.wrap = per_call_wraps  # the first sighting wrapped for the call, or copied
    owner = np.zeros(size + 8192, np.uint8)
    part = owner[start : start + size]  # any slice of the owner: the owner's entry serves it
    canary = np.full(size + 64, 0xA5, np.uint8)
    buffer = dawn.buffer_from_numpy(canary)
    for seed in range(3):
        part[:] = random_bytes(size, seed=size + seed)
        dawn.transfer_h2d(part, buffer, target_offset)
        expected = canary.copy()
        expected[target_offset : target_offset + size] = part
        assert dawn.transfer_d2h(buffer) == expected.tobytes()
    aligned = (owner.ctypes.data + start - target_offset) % 4 == 0
    assert pool.cache.hits == (1 if aligned else 0)
    # Readback into the same caller memory through queue_write (d2h into caller pages).
    semaphore = dawn.create_semaphore()
    for value in (1, 2, 3):
        part[:] = 0
        dawn.queue_write(buffer, target_offset, part, 0, size, signal=[(semaphore, value)])
        semaphore.wait(value, timeout=WAIT)
        assert np.array_equal(part, random_bytes(size, seed=size + 2))
        assert np.all(owner[:start] == 0) and np.all(owner[start + size :] == 0)


def test_buffer_from_numpy_and_queue_update_use_the_cache(dawn: hal.Device, pool: Any) -> None:
    data = random_bytes(4 * MIB, seed=31).reshape(1024, 4096)
    for _ in range(3):
        assert np.array_equal(dawn.buffer_from_numpy(data).to_numpy(), data.reshape(-1))
    assert pool.cache.made == 1 and pool.cache.hits == 1
    target = dawn.allocate_buffer(data.nbytes)
    semaphore = dawn.create_semaphore()
    dawn.queue_update(data, 0, target, 0, data.nbytes, signal=[(semaphore, 1)])
    semaphore.wait(1, timeout=WAIT)
    assert pool.cache.hits == 2
    assert np.array_equal(target.to_numpy(), data.reshape(-1))


def test_a_new_array_at_a_dead_ones_id_and_address_is_a_first_sighting(
    dawn: hal.Device, pool: Any
) -> None:
    size = 4 * MIB
    buffer = dawn.allocate_buffer(size)
    for seed in range(4):  # fresh arrays, each transferred once: copied, never pinned
        array = random_bytes(size, seed=100 + seed)
        dawn.transfer_h2d(array, buffer)
        assert dawn.transfer_d2h(buffer) == array.tobytes()
        del array
    assert pool.cache.made == 0 and len(pool.cache) == 0
    # The same, made certain: a sighting recorded at this array's id and address whose
    # weak reference is dead (CPython reuses both for a new array of the same size).
    array = random_bytes(size, seed=110)
    dead = np.zeros(1, np.uint8)
    ref = weakref.ref(dead)
    del dead
    pool.cache._seen[id(array)] = (ref, array.ctypes.data, array.nbytes)
    dawn.transfer_h2d(array, buffer)
    assert pool.cache.made == 0  # a first sighting, not a second
    dawn.transfer_h2d(array, buffer)
    assert pool.cache.made == 1  # now the same array again


def test_memory_hal_does_not_own_knowledge_of_is_never_cached(dawn: hal.Device, pool: Any) -> None:
    size = 2 * MIB
    pages = mmap.mmap(-1, size)
    sources: list[Any] = [
        random_bytes(size, seed=1).tobytes(),
        bytearray(random_bytes(size, seed=2).tobytes()),
        np.frombuffer(pages, np.uint8),
        np.frombuffer(bytearray(size), np.uint8),
    ]
    buffer = dawn.allocate_buffer(size)
    for source in sources:
        for _ in range(3):
            dawn.transfer_h2d(source, buffer)
            assert dawn.transfer_d2h(buffer) == bytes(source)
    assert pool.cache.made == 0 and len(pool.cache) == 0


def test_a_transfer_returns_after_the_gpu_read_the_array(dawn: hal.Device, pool: Any) -> None:
    size = 4 * MIB
    data = random_bytes(size, seed=41)
    buffer = dawn.allocate_buffer(size)
    dawn.transfer_h2d(data, buffer)
    dawn.transfer_h2d(data, buffer)
    assert pool.cache.made == 1
    expected = data.copy()
    data[:] = 0  # right after the call: the GPU copy already finished
    assert dawn.transfer_d2h(buffer) == expected.tobytes()


def test_collected_arrays_release_their_wraps(
    dawn: hal.Device, pool: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    destroyed: list[Any] = []
    original = dawn.backend.destroy_buffer

    def spy(handle: Any) -> None:
        destroyed.append(handle)
        original(handle)

    monkeypatch.setattr(dawn.backend, "destroy_buffer", spy)
    size = 4 * MIB
    buffer = dawn.allocate_buffer(size)
    data = random_bytes(size, seed=51)
    dawn.transfer_h2d(data, buffer)
    dawn.transfer_h2d(data, buffer)
    (entry,) = pool.cache._entries.values()
    handles = [h for h in entry.handles if h is not None]
    assert handles and pool.cache.bytes > 0
    del data
    gc.collect()
    assert pool.cache._died  # the weakref callback only noted it
    other = random_bytes(size, seed=52)
    dawn.transfer_h2d(other, buffer)  # the next use destroys the dead entry's wraps
    assert len(pool.cache) == 0 and pool.cache.bytes == 0
    assert all(any(h is d for d in destroyed) for h in handles)
    assert dawn.transfer_d2h(buffer) == other.tobytes()


def test_a_cached_array_cannot_be_resized_and_a_moved_one_is_rewrapped(
    dawn: hal.Device, pool: Any
) -> None:
    size = 4 * MIB
    data = random_bytes(size, seed=61)
    buffer = dawn.allocate_buffer(2 * size)
    dawn.transfer_h2d(data, buffer)
    dawn.transfer_h2d(data, buffer)
    assert len(pool.cache) == 1
    # numpy refuses to move memory that has weak references, refcheck or not.
    with pytest.raises(ValueError, match="referenced"):
        data.resize(2 * size, refcheck=False)
    # Were the memory to move anyway (a C extension), the pointer check drops the entry.
    (entry,) = pool.cache._entries.values()
    entry.data += 4096
    dawn.transfer_h2d(data, buffer)
    assert len(pool.cache) == 0 and entry.doomed and all(h is None for h in entry.handles)
    assert dawn.transfer_d2h(buffer, 0, size) == data.tobytes()
    # Once the cache forgot it (and nothing else holds the entry), it may be resized again.
    pool.cache.clear()
    del entry
    gc.collect()
    data.resize(2 * size, refcheck=False)
    assert data.nbytes == 2 * size


def test_the_cache_is_bounded_least_recently_used_first(dawn: hal.Device, pool: Any) -> None:
    size = 4 * MIB
    pool.cache.limit = 2 * size
    buffer = dawn.allocate_buffer(size)
    arrays = [random_bytes(size, seed=70 + i) for i in range(3)]
    for array in arrays[:2]:
        dawn.transfer_h2d(array, buffer)
        dawn.transfer_h2d(array, buffer)
    assert len(pool.cache) == 2
    dawn.transfer_h2d(arrays[0], buffer)  # arrays[1] is now the least recently used
    dawn.transfer_h2d(arrays[2], buffer)
    dawn.transfer_h2d(arrays[2], buffer)
    assert pool.cache.bytes <= pool.cache.limit
    owners = [e.ref() for e in pool.cache._entries.values()]
    assert any(o is arrays[0] for o in owners) and any(o is arrays[2] for o in owners)
    assert not any(o is arrays[1] for o in owners)
    assert dawn.transfer_d2h(buffer) == arrays[2].tobytes()
    pool.cache.limit = 0  # off: nothing new is cached, nothing is used
    hits = pool.cache.hits
    dawn.transfer_h2d(arrays[0], buffer)
    assert pool.cache.hits == hits


def test_an_entry_in_use_is_destroyed_only_when_released(dawn: hal.Device, pool: Any) -> None:
    size = 2 * MIB
    data = random_bytes(size, seed=81)
    view = memoryview(data).cast("B")
    alignment = dawn.backend.host_memory_alignment()
    assert pool.cache.acquire(view, data.ctypes.data, alignment, MIB) is None  # first sighting
    entry = pool.cache.acquire(view, data.ctypes.data, alignment, MIB)
    assert entry is not None and entry.users == 1
    list(entry.spans(dawn.backend, 0, 0, entry.size))  # wraps every piece
    pool.cache.clear()  # e.g. device close while another thread transfers
    assert entry.doomed and any(h is not None for h in entry.handles)
    pool.cache.release(entry)
    assert all(h is None for h in entry.handles) and pool.cache.bytes == 0


def test_concurrent_transfers_of_cached_arrays_are_exact(dawn: hal.Device, pool: Any) -> None:
    size = 2 * MIB + 8
    arrays = [random_bytes(size, seed=90 + i) for i in range(3)]
    buffers = [dawn.allocate_buffer(size) for _ in range(6)]
    errors: list[BaseException] = []

    def work(k: int) -> None:
        try:
            array = arrays[k % 3]
            for _ in range(4):
                dawn.transfer_h2d(array, buffers[k])
                assert dawn.transfer_d2h(buffers[k]) == array.tobytes()
        except BaseException as error:  # reported below
            errors.append(error)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(WAIT)
    assert errors == []
    assert len(pool.cache) == 3 and pool.cache.hits > 0
    assert all(entry.users == 0 for entry in pool.cache._entries.values())


def test_device_close_releases_the_cache() -> None:
    with hal.create_device(implementation="dawn", backend=dawn_backend_or_skip()) as device:
        pool = device._host.staging
        if not pool.host_memory:
            pytest.skip("no host-mapped-pointer")
        pool.cache.minimum = pool.wrap_min = MIB
        pool.wrap = False  # per-call wraps hold their memory until Dawn disposed of them
        data = random_bytes(2 * MIB, seed=5)
        buffer = device.allocate_buffer(2 * MIB)
        device.transfer_h2d(data, buffer)
        device.transfer_h2d(data, buffer)
        assert len(pool.cache) == 1
    assert len(pool.cache) == 0 and pool.cache.bytes == 0
    ref = weakref.ref(data)
    del data
    gc.collect()
    assert ref() is None  # the cache never kept the array alive


# -- ordering, on the deferred null backend ---------------------------------------------------


@pytest.fixture
def deferred() -> Iterator[tuple[Device, _DeferredHostBackend]]:
    backend = _DeferredHostBackend()
    info = AdapterInfo("null", "null", "discrete", "hal", "null")  # no per-call wraps
    device = Device(backend, info, "deferred-cache")
    pool = device._host.staging
    pool.chunk_size, pool.wrap_min = 64 * 1024, 64 * 1024
    pool.cache.limit, pool.cache.minimum = 64 * MIB, 64 * 1024
    yield device, backend
    device.close()


def test_deferred_cached_transfers_wait_and_never_outlive_their_wraps(
    deferred: tuple[Device, _DeferredHostBackend],
) -> None:
    device, backend = deferred
    size = MIB + 8  # whole words: the null backend runs no edge kernels
    padded = np.zeros(size + 16, np.uint8)
    source = padded[8 : 8 + size]
    buffer = device.allocate_buffer(size)
    for seed in range(3):
        source[:] = random_bytes(size, seed=seed)
        device.transfer_h2d(source, buffer)
    # Wrapped once, on the second transfer; the wraps keep nothing alive (keep is None).
    assert backend.wrapped and all(keep is None for _, keep in backend.wrapped)
    count = len(backend.wrapped)
    expected = source.copy()
    source[:] = 0  # copies run only when waited for: the call waited before returning
    assert device.transfer_d2h(buffer) == expected.tobytes()
    out = np.zeros(size, np.uint8)
    semaphore = device.create_semaphore()
    for value in (1, 2):  # the out array's second readback is cached too
        device.queue_write(buffer, 0, out, 0, size, signal=[(semaphore, value)])
        semaphore.wait(value, timeout=WAIT)
        assert np.array_equal(out, expected)
    assert len(backend.wrapped) > count
    del padded, source
    gc.collect()
    device.transfer_h2d(out, buffer)  # reaps the dead entry: its wraps are destroyed
    assert all(w.destroyed for w, _ in backend.wrapped[:count])
    assert device.transfer_d2h(buffer) == expected.tobytes()


def test_a_lost_device_releases_the_cache(deferred: tuple[Device, _DeferredHostBackend]) -> None:
    device, backend = deferred
    pool = device._host.staging
    data = random_bytes(MIB, seed=3)
    buffer = device.allocate_buffer(MIB)
    device.transfer_h2d(data, buffer)
    device.transfer_h2d(data, buffer)
    assert len(pool.cache) == 1
    error = device._host._failure("host write", BackendError("gone", lost=True))
    assert isinstance(error, hal.UnavailableError)
    assert len(pool.cache) == 0 and all(w.destroyed for w, _ in backend.wrapped)
    with pytest.raises(hal.UnavailableError, match="lost"):
        device.transfer_h2d(data, buffer)


def test_host_cache_off_without_host_memory() -> None:
    cache = HostCache(_DeferredHostBackend(), 0, 4096)
    data = np.zeros(MIB, np.uint8)
    view = memoryview(data)
    assert cache.acquire(view, data.ctypes.data, 4096, MIB) is None
    assert cache.acquire(view, data.ctypes.data, 4096, MIB) is None
    assert len(cache) == 0
