"""Dawn (``implementation="dawn"``, through wgpudawn) beside wgpu-native in one process.

A representative subset of the suite on a Dawn device: commands at odd alignments, dispatches
with bindings and constants, binding tables, queue operations with semaphores, host transfers
and maps, the errors of misuse, device loss, threads, and both implementations at once. The
whole suite also runs on Dawn with ``HAL_IMPLEMENTATION=dawn``. Skipped (with the reason) only
when wgpudawn is not importable or Dawn finds no adapter.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from conftest import WAIT, dawn_backend_or_skip, random_bytes, submit_and_wait

import hal

KERNELS = Path(__file__).parent / "kernels"
REPO = Path(__file__).resolve().parent.parent
KEY = 0xC3A55A3C


def _dawn_or_skip() -> hal.Device:
    return hal.create_device(
        implementation="dawn", backend=dawn_backend_or_skip(), label="dawn-test"
    )


@pytest.fixture(scope="module")
def dawn() -> Iterator[hal.Device]:
    """A Dawn device of its own (whatever HAL_IMPLEMENTATION says)."""
    with _dawn_or_skip() as device:
        yield device


@pytest.fixture(scope="module")
def native() -> Iterator[hal.Device]:
    """A wgpu-native device in the same process."""
    with hal.create_device(implementation="wgpu-native") as device:
        yield device


def xor_key(data: np.ndarray, key: int = KEY) -> np.ndarray:
    """Each u32 word of ``data`` XORed with ``key``, as the xor kernels compute it."""
    pattern = np.frombuffer(key.to_bytes(4, "little"), dtype=np.uint8)
    return data ^ np.resize(pattern, data.size)


# -- opening -------------------------------------------------------------------------------


def test_dawn_device_reports_its_implementation(dawn: hal.Device) -> None:
    assert dawn.info.implementation == "dawn"
    assert dawn.backend.implementation == "dawn"
    listed = hal.available_adapters(implementation="dawn")
    assert listed and all(a.implementation == "dawn" for a in listed)
    assert dawn.info.name in {a.name for a in listed}
    # Dawn's own synchronisation is requested where the adapter has it, never reported as
    # a hal feature.
    assert "implicit-device-synchronization" not in dawn.features
    assert dawn.limits["max-storage-buffer-binding-size"] > 0


def test_hal_implementation_environment_variable(
    dawn: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HAL_IMPLEMENTATION", "dawn")
    monkeypatch.delenv("HAL_BACKEND", raising=False)  # Dawn has no GL backend
    with hal.create_device() as device:
        assert device.info.implementation == "dawn"
        buffer = device.buffer_from_numpy(np.arange(16, dtype=np.uint32))
        np.testing.assert_array_equal(buffer.to_numpy(np.uint32), np.arange(16))


def test_dawn_absent_is_unavailable_with_install_hint() -> None:
    """With wgpudawn not importable, "dawn" raises UnavailableError naming the extra and
    ``python -m hal devices`` says it is unavailable (a subprocess: imports are global)."""
    script = (
        "import sys; sys.modules['wgpudawn'] = None\n"
        "import hal\n"
        "try:\n"
        "    hal.create_device(implementation='dawn')\n"
        "except hal.UnavailableError as error:\n"
        "    print('UNAVAILABLE', error)\n"
        "print('ADAPTERS', len(hal.available_adapters(implementation='dawn')))\n"
        "from hal.tools.cli import main\n"
        "main(['devices'])\n"
    )
    # Keep the caller's path (the H200 runs the wheels from PYTHONPATH), this tree first.
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH", "")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120, env=env
    )
    assert done.returncode == 0, done.stderr
    assert "UNAVAILABLE create_device: implementation 'dawn'" in done.stdout
    assert "pip install '.[dawn]'" in done.stdout
    assert "ADAPTERS 0" in done.stdout
    assert "dawn: unavailable" in done.stdout
    assert "implementation=wgpu-native" in done.stdout


# -- commands ------------------------------------------------------------------------------


def test_fill_update_copy_at_odd_alignments(dawn: hal.Device) -> None:
    size = 4096 + 7
    model = random_bytes(size, seed=1)
    other = random_bytes(size, seed=2)
    target, source = dawn.buffer_from_numpy(model.copy()), dawn.buffer_from_numpy(other)
    patch = random_bytes(37, seed=3)
    with dawn.record() as cb:
        cb.fill_buffer(target, 3, 29, 0xE1, 1)
        cb.fill_buffer(target, 102, 66, b"\x12\x34")
        cb.fill_buffer(target, 404, 1024, 0x0A0B0C0D, 4)
        cb.update_buffer(patch, 0, target, 1501, 37)
        cb.copy_buffer(source, 7, target, 2049, 2001)
    model[3:32] = 0xE1
    model[102:168] = np.resize(np.frombuffer(b"\x12\x34", np.uint8), 66)
    model[404:1428] = np.resize(np.frombuffer((0x0A0B0C0D).to_bytes(4, "little"), np.uint8), 1024)
    model[1501:1538] = patch
    model[2049:4050] = other[7:2008]
    submit_and_wait(dawn, cb)
    np.testing.assert_array_equal(target.to_numpy(), model)
    np.testing.assert_array_equal(source.to_numpy(), other)


def test_dispatch_with_bindings_and_constants(dawn: hal.Device) -> None:
    n, count = 200, 150
    x = (np.arange(n, dtype=np.float32) - 50.0).astype(np.float32)
    src = dawn.buffer_from_numpy(x)
    dst = dawn.buffer_from_numpy(np.full(n, 7.0, dtype=np.float32))
    kernels = dawn.create_executable(hal.core.builtins.shader_path("elementwise.wgsl"))
    with dawn.record() as cb:
        cb.dispatch(kernels, "scale", (4, 1, 1), constants=[count, 2.5, -1.0], bindings=[src, dst])
    submit_and_wait(dawn, cb)
    expected = np.full(n, 7.0, dtype=np.float32)
    expected[:count] = x[:count] * np.float32(2.5) - np.float32(1.0)
    np.testing.assert_array_equal(dst.to_numpy(np.float32), expected)


def test_binding_table_slots(dawn: hal.Device) -> None:
    src_bytes, dst_bytes = random_bytes(256, seed=5), random_bytes(256, seed=6)
    src, dst = dawn.buffer_from_numpy(src_bytes), dawn.buffer_from_numpy(dst_bytes)
    cb = dawn.create_command_buffer(binding_capacity=2)
    cb.begin()
    cb.dispatch(
        dawn.create_executable(str(KERNELS / "xor_words.wgsl")),
        "xor_copy",
        (1, 1, 1),
        constants=[KEY],
        bindings=[hal.SlotRef(0), hal.SlotRef(1, 32, 64)],
    )
    cb.end()
    table = [hal.BufferRef(src, 3, 64), hal.BufferRef(dst, 32)]
    submit_and_wait(dawn, cb, binding_table=table)
    expected = dst_bytes.copy()
    expected[64:128] = xor_key(src_bytes[3:67])
    np.testing.assert_array_equal(dst.to_numpy(), expected)
    np.testing.assert_array_equal(src.to_numpy(), src_bytes)


# -- queue operations ------------------------------------------------------------------------


def test_held_back_work_runs_once_its_wait_is_signalled(dawn: hal.Device) -> None:
    buffer = dawn.buffer_from_numpy(np.zeros(64, np.uint8))
    gate, done = dawn.create_semaphore(), dawn.create_semaphore()
    dawn.queue_fill(buffer, 5, 9, 0x5A, 1, wait=[(gate, 1)], signal=[(done, 1)])
    dawn.queue_copy(buffer, 0, buffer, 32, 16, wait=[(done, 1)], signal=[(done, 2)])
    assert done.query() == 0
    np.testing.assert_array_equal(buffer.to_numpy(), np.zeros(64, np.uint8))
    gate.signal(1)
    done.wait(2, timeout=WAIT)
    expected = np.zeros(64, np.uint8)
    expected[5:14] = 0x5A
    expected[32:48] = expected[0:16]
    np.testing.assert_array_equal(buffer.to_numpy(), expected)


def test_failure_propagates_to_signalled_semaphores(dawn: hal.Device) -> None:
    buffer = dawn.buffer_from_numpy(np.full(16, 3, np.uint8))
    gate, done, later = dawn.create_semaphore(), dawn.create_semaphore(), dawn.create_semaphore()
    dawn.queue_fill(buffer, 0, 16, 0, 1, wait=[(gate, 1)], signal=[(done, 1)])
    dawn.queue_barrier(wait=[(done, 1)], signal=[(later, 1)])
    gate.fail("upstream failed")
    with pytest.raises(hal.AbortedError, match="upstream failed"):
        later.wait(1, timeout=WAIT)
    with pytest.raises(hal.AbortedError):
        done.query()
    np.testing.assert_array_equal(buffer.to_numpy(), np.full(16, 3, np.uint8))


# -- host transfers and maps ---------------------------------------------------------------


@pytest.mark.parametrize("size", [4, 4097, 3 << 20])
def test_host_transfers(dawn: hal.Device, size: int) -> None:
    data = random_bytes(size, seed=size)
    buffer = dawn.allocate_buffer(size + 16)
    dawn.transfer_h2d(data, buffer, 5)
    assert dawn.transfer_d2h(buffer, 5, size) == data.tobytes()
    np.testing.assert_array_equal(buffer.to_numpy()[5 : 5 + size], data)
    np.testing.assert_array_equal(dawn.buffer_from_numpy(data).to_numpy(), data)


def test_backend_maps_staging_buffers(dawn: hal.Device) -> None:
    """The staging protocol (map_async, wait_mapped, mapped_range, unmap) on Dawn: the
    path that failed with "Can only read from a buffer if its mapped"."""
    backend = dawn.backend
    upload = backend.create_staging_buffer(64, upload=True)
    readback = backend.create_staging_buffer(64, upload=False)
    assert backend.wait_mapped(backend.map_async(upload, 64, write=True), WAIT)
    backend.mapped_range(upload, 64, writable=True)[:] = bytes(range(64))
    backend.unmap(upload)
    ticket = backend.submit([backend.copy_command_buffer([(upload, 0, readback, 0, 64)])])
    backend.wait(ticket)
    assert backend.completed_ticket() >= ticket
    assert backend.wait_mapped(backend.map_async(readback, 64, write=False), WAIT)
    view = backend.mapped_range(readback, 64, writable=False)
    assert view.readonly and bytes(view) == bytes(range(64))
    backend.unmap(readback)
    # Waits are real timed waits: right after map_async the map has not been processed
    # (Dawn fires map callbacks only inside its waits), so a zero timeout reports False.
    token = backend.map_async(readback, 64, write=False)
    assert backend.wait_mapped(token, 0) is False
    assert backend.wait_mapped(token, WAIT) is True
    backend.unmap(readback)
    # A pending map is cancelled by unmap, and the buffer maps again afterwards.
    backend.map_async(readback, 64, write=False)
    backend.unmap(readback)
    assert backend.wait_mapped(backend.map_async(readback, 64, write=False), WAIT)
    backend.unmap(readback)


def test_map_range_on_a_mappable_buffer(dawn: hal.Device) -> None:
    buffer = dawn.allocate_buffer(
        256,
        memory_type=hal.MemoryType.HOST_LOCAL | hal.MemoryType.DEVICE_VISIBLE,
        usage=hal.BufferUsage.DEFAULT | hal.BufferUsage.MAPPING,
    )
    buffer.map_write(3, b"dawn")
    buffer.map_fill(64, 8, 0x77, 1)
    data = buffer.map_read()
    assert data[3:7] == b"dawn" and data[64:72] == b"\x77" * 8


# -- errors --------------------------------------------------------------------------------


BAD_WGSL = "@compute @workgroup_size(1) fn main() { let x: u32 = undefined_thing; }"


def test_compile_error_is_the_same_hal_error_on_both(dawn: hal.Device, native: hal.Device) -> None:
    """Tint (Dawn) and naga (wgpu-native) both reject the kernel: InvalidArgumentError with
    the compiler's message naming the identifier."""
    for device in (dawn, native):
        with pytest.raises(hal.InvalidArgumentError, match="undefined_thing") as info:
            device.create_executable(BAD_WGSL)
        assert isinstance(info.value, ValueError)


def test_misuse_rejected_before_dawn_the_same_way(dawn: hal.Device, native: hal.Device) -> None:
    """Bad input never reaches either implementation: the same HalError and message."""
    messages = []
    for device in (dawn, native):
        buffer = device.allocate_buffer(64)
        with device.record() as cb, pytest.raises(hal.InvalidArgumentError) as info:
            cb.copy_buffer(buffer, 0, buffer, 8, 16)  # overlapping ranges of one allocation
        messages.append(str(info.value).replace(hex(id(buffer)), ""))
        limit = device.limits["max-compute-workgroups-per-dimension"]
        kernels = device.create_executable(hal.core.builtins.shader_path("elementwise.wgsl"))
        with device.record() as cb, pytest.raises(hal.InvalidArgumentError, match="workgroup"):
            cb.dispatch(
                kernels,
                "scale",
                (limit + 1, 1, 1),
                constants=[1, 1.0, 0.0],
                bindings=[buffer, buffer.subspan(32)],
            )
    assert "overlap" in messages[0] and "overlap" in messages[1]


def test_device_loss_through_the_lost_promise() -> None:
    own = _dawn_or_skip()
    buffer = own.allocate_buffer(64)
    with own.record() as cb:
        cb.fill_buffer(buffer, 1, 7, 3, 1)
    own.backend.device.destroy()
    assert own.backend.probe_lost() is not None
    with pytest.raises(hal.UnavailableError):
        own.queue_execute(cb)
    with pytest.raises(hal.UnavailableError):
        own.transfer_d2h(buffer)
    own.close()


# -- threads and both implementations --------------------------------------------------------


def test_threads_record_and_submit_concurrently(dawn: hal.Device) -> None:
    """Four threads fill, copy and read back through one Dawn device (every Dawn call
    serialised by the backend; the completion thread waits outside that lock)."""
    failures: list[BaseException] = []

    def worker(seed: int) -> None:
        try:
            for round_ in range(15):
                value = (seed * 31 + round_) % 255 + 1
                a, b = dawn.allocate_buffer(1024), dawn.allocate_buffer(1024)
                with dawn.record() as cb:
                    cb.fill_buffer(a, 1, 1001, value, 1)
                    cb.copy_buffer(a, 0, b, 3, 1021)
                submit_and_wait(dawn, cb)
                expected = np.zeros(1024, np.uint8)
                expected[4:1005] = value
                np.testing.assert_array_equal(b.to_numpy(), expected)
        except BaseException as error:  # reported by the main thread
            failures.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not any(t.is_alive() for t in threads)
    assert not failures, failures[0]


def test_waits_under_the_lock_without_implicit_synchronisation() -> None:
    """Where the adapter lacks implicit device synchronisation, waits run in short slices
    under the backend's lock: the same results, from several threads."""
    own = _dawn_or_skip()
    own.backend.implicit_sync = False
    try:
        failures: list[BaseException] = []

        def worker(seed: int) -> None:
            try:
                for round_ in range(5):
                    data = random_bytes(4099, seed=seed * 10 + round_)
                    buffer = own.allocate_buffer(4100)
                    own.transfer_h2d(data, buffer, 1)
                    assert own.transfer_d2h(buffer, 1, 4099) == data.tobytes()
            except BaseException as error:
                failures.append(error)

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(3)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
        assert not any(t.is_alive() for t in threads)
        assert not failures, failures[0]
        own.wait_idle(WAIT)
        backend = own.backend
        assert backend.completed_ticket() == backend.submit([]) - 1 > 0
    finally:
        own.close()


def test_both_implementations_in_one_process(dawn: hal.Device, native: hal.Device) -> None:
    assert {dawn.info.implementation, native.info.implementation} == {"dawn", "wgpu-native"}
    results = []
    for device in (dawn, native):
        data = random_bytes(1000, seed=9)
        buffer = device.buffer_from_numpy(data)
        with device.record() as cb:
            cb.fill_buffer(buffer, 10, 90, 0xAB, 1)
        submit_and_wait(device, cb)
        results.append(buffer.to_numpy())
    np.testing.assert_array_equal(results[0], results[1])
    assert (results[0][10:100] == 0xAB).all()
