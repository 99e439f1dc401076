"""Several devices in one process: two (or three) devices of one adapter, semaphores of one
device in another's wait lists, peer copies (``queue_copy`` from another device's buffer),
failure and close across devices, threads on both. Every wait is bounded."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest
from conftest import WAIT, dawn_backend_or_skip, random_bytes

import hal

INCREMENT = """
@group(0) @binding(0) var<storage, read_write> data: array<u32>;
@compute @workgroup_size(64)
fn main(@builtin(global_invocation_id) id: vec3<u32>) {
    if (id.x < arrayLength(&data)) { data[id.x] = data[id.x] + 1u; }
}
"""


@pytest.fixture(scope="module")
def pair() -> Iterator[tuple[hal.Device, hal.Device]]:
    """Two devices of the default adapter."""
    with hal.create_device(label="A") as a, hal.create_device(label="B") as b:
        yield a, b


def cause(semaphore: hal.Semaphore, value: int = 1) -> BaseException | None:
    """The ``__cause__`` of the AbortedError a bounded wait on the point raises."""
    with pytest.raises(hal.AbortedError) as info:
        semaphore.wait(value, timeout=WAIT)
    return info.value.__cause__


def read(device: hal.Device, buffer: hal.Buffer) -> np.ndarray:
    return np.frombuffer(device.transfer_d2h(buffer), np.uint8)


# -- independent devices ------------------------------------------------------------------------


def test_same_adapter_twice_gives_independent_devices(pair: tuple[hal.Device, hal.Device]) -> None:
    a, b = pair
    assert a.info == b.info and a.backend is not b.backend
    exe_a, exe_b = a.create_executable(INCREMENT), b.create_executable(INCREMENT)
    assert exe_a is not exe_b  # the executable cache is per device
    assert a.create_executable(INCREMENT) is exe_a
    buf_a = a.buffer_from_numpy(np.arange(256, dtype=np.uint32))
    buf_b = b.buffer_from_numpy(np.arange(256, dtype=np.uint32) * 2)
    sem_a, sem_b = a.create_semaphore(), b.create_semaphore()
    for device, exe, buf, sem in ((a, exe_a, buf_a, sem_a), (b, exe_b, buf_b, sem_b)):
        with device.record() as cb:
            cb.dispatch(exe, "main", (4, 1, 1), bindings=[buf])
        device.queue_execute(cb, signal=[(sem, 1)])
    sem_a.wait(1, timeout=WAIT)
    sem_b.wait(1, timeout=WAIT)
    assert (buf_a.to_numpy(np.uint32) == np.arange(256) + 1).all()
    assert (buf_b.to_numpy(np.uint32) == np.arange(256) * 2 + 1).all()


def test_objects_of_another_device_are_rejected_naming_the_command(
    pair: tuple[hal.Device, hal.Device],
) -> None:
    a, b = pair
    exe_a, exe_b = a.create_executable(INCREMENT), b.create_executable(INCREMENT)
    buf_a, buf_b = a.allocate_buffer(256), b.allocate_buffer(256)
    before = read(b, buf_b).copy()
    cb = b.create_command_buffer()
    cb.begin()
    with pytest.raises(hal.InvalidArgumentError, match=r"^dispatch: executable .* this device"):
        cb.dispatch(exe_a, "main", (1, 1, 1), bindings=[buf_b])
    with pytest.raises(hal.InvalidArgumentError, match=r"^dispatch: bindings\[0\] .*another"):
        cb.dispatch(exe_b, "main", (1, 1, 1), bindings=[buf_a])
    with pytest.raises(hal.InvalidArgumentError, match=r"^copy_buffer: source .*another device"):
        cb.copy_buffer(buf_a, 0, buf_b, 0, 4)  # a peer copy is a queue operation only
    cb.end()
    with a.record() as foreign:
        foreign.fill_buffer(buf_a, 0, 4, 1, 4)
    with pytest.raises(hal.InvalidArgumentError, match="queue_execute"):
        b.queue_execute(foreign)
    with pytest.raises(hal.InvalidArgumentError, match=r"^queue_fill: target .*another device"):
        b.queue_fill(buf_a, 0, 4, 0, 4)
    with pytest.raises(hal.InvalidArgumentError, match=r"^queue_update: target .*another"):
        b.queue_update(b"abcd", 0, buf_a, 0, 4)
    with pytest.raises(hal.InvalidArgumentError, match=r"^queue_copy: target .*another device"):
        b.queue_copy(buf_b, 0, buf_a, 0, 4)  # only the source may be foreign
    with pytest.raises(hal.InvalidArgumentError, match=r"^queue_copy: target .*another device"):
        b.queue_copy(buf_a, 0, buf_a, 8, 4)
    with pytest.raises(hal.InvalidArgumentError, match=r"^transfer_d2h: source .*another"):
        b.transfer_d2h(buf_a)
    with pytest.raises(hal.InvalidArgumentError, match=r"^queue_write: source .*another"):
        b.queue_write(buf_a, 0, bytearray(4), 0, 4)
    with pytest.raises(hal.InvalidArgumentError, match=r"^queue_dealloca: .*this device"):
        b.queue_dealloca(buf_a)
    assert (read(b, buf_b) == before).all()


# -- semaphores across devices --------------------------------------------------------------------


def test_work_waits_on_a_semaphore_signalled_by_the_other_devices_gpu(
    pair: tuple[hal.Device, hal.Device],
) -> None:
    """B's fill waits on A's semaphore, which A's completion thread signals once A's GPU work
    is done: B is woken without a host signal."""
    a, b = pair
    big, target = a.allocate_buffer(8 << 20), b.allocate_buffer(64)
    gate, sem_a, sem_b = a.create_semaphore(), a.create_semaphore(), b.create_semaphore()
    a.queue_fill(big, 0, None, 7, 4, wait=[(gate, 1)], signal=[(sem_a, 1)])
    b.queue_fill(target, 0, 64, 0x5A, 1, wait=[(sem_a, 1)], signal=[(sem_b, 1)])
    time.sleep(0.05)
    assert sem_b.query() == 0  # held back on A's semaphore
    gate.signal(1)
    sem_b.wait(1, timeout=WAIT)
    assert sem_a.query() == 1
    assert (read(b, target) == 0x5A).all()


def test_a_cross_device_wait_does_not_spin(pair: tuple[hal.Device, hal.Device]) -> None:
    """Work of B held back on A's semaphore costs no CPU while it waits."""
    a, b = pair
    sem_a, sem_b = a.create_semaphore(), b.create_semaphore()
    b.queue_barrier(wait=[(sem_a, 1)], signal=[(sem_b, 1)])
    started = time.process_time()
    time.sleep(0.5)
    spent = time.process_time() - started
    sem_a.signal(1)
    sem_b.wait(1, timeout=WAIT)
    assert spent < 0.2, f"{spent:.3f} s of CPU during a 0.5 s cross-device wait"


def test_ping_pong_chain_of_twenty_links(pair: tuple[hal.Device, hal.Device]) -> None:
    """A and B take turns: each link increments the data on its device, then the other device
    waits for it and copies the data over (a peer copy); 20 links, queued before any runs."""
    a, b = pair
    words = 1000
    exe = {a: a.create_executable(INCREMENT), b: b.create_executable(INCREMENT)}
    data = {a: a.allocate_buffer(4 * words), b: b.allocate_buffer(4 * words)}
    sem = {a: a.create_semaphore(), b: b.create_semaphore()}
    start = a.create_semaphore()
    a.queue_update(np.arange(words, dtype=np.uint32), 0, data[a], 0, 4 * words)
    a.wait_idle(WAIT)
    previous: tuple[hal.Semaphore, int] = (start, 1)
    for link in range(20):
        here, there = (a, b) if link % 2 == 0 else (b, a)
        if link:  # bring the data over from the other device first
            here.queue_copy(
                data[there], 0, data[here], 0, None, wait=[previous], signal=[(sem[here], 2 * link)]
            )
            previous = (sem[here], 2 * link)
        with here.record() as cb:
            cb.dispatch(exe[here], "main", (-(-words // 64), 1, 1), bindings=[data[here]])
        here.queue_execute(cb, wait=[previous], signal=[(sem[here], 2 * link + 1)])
        previous = (sem[here], 2 * link + 1)
    time.sleep(0.05)
    assert sem[a].query() == 0 and sem[b].query() == 0
    start.signal(1)
    previous[0].wait(previous[1], timeout=WAIT)
    last = b  # link 19 ran on B
    assert (data[last].to_numpy(np.uint32) == np.arange(words) + 20).all()
    assert (data[a].to_numpy(np.uint32) == np.arange(words) + 19).all()


@pytest.mark.parametrize("direction", ["a_to_b", "b_to_a"])
def test_failure_propagates_across_devices(
    pair: tuple[hal.Device, hal.Device], direction: str
) -> None:
    """A failing operation of one device fails the other device's work that waits on it, and
    the semaphores that work would have signalled, with the original failure as the cause."""
    first, second = pair if direction == "a_to_b" else pair[::-1]
    target, chained = second.allocate_buffer(64), first.allocate_buffer(64)
    second.queue_fill(target, 0, 64, 0x11, 1)
    sem_first, sem_second, sem_back = (
        first.create_semaphore(),
        second.create_semaphore(),
        first.create_semaphore(),
    )
    short = b"\x01\x02"  # a queue_read of 8 bytes from it fails
    first.queue_read(short, 0, chained, 0, 8, signal=[(sem_first, 1)])
    second.queue_fill(target, 0, 64, 0xEE, 1, wait=[(sem_first, 1)], signal=[(sem_second, 1)])
    first.queue_barrier(wait=[(sem_second, 1)], signal=[(sem_back, 1)])
    original = cause(sem_first)
    assert isinstance(original, hal.OutOfRangeError)
    assert cause(sem_second) is original
    assert cause(sem_back) is original
    second.wait_idle(WAIT)
    assert (read(second, target) == 0x11).all()  # the failed fill never ran


def test_a_host_failed_semaphore_fails_the_other_devices_waiter(
    pair: tuple[hal.Device, hal.Device],
) -> None:
    a, b = pair
    source, target = a.buffer_from_numpy(random_bytes(64)), b.allocate_buffer(64)
    sem_a, sem_b = a.create_semaphore(), b.create_semaphore()
    b.queue_copy(source, 0, target, 0, 64, wait=[(sem_a, 1)], signal=[(sem_b, 1)])
    error = ValueError("upstream failed")
    sem_a.fail(error)
    assert cause(sem_b) is error


# -- closing a device that another one waits on ------------------------------------------------


def test_closing_a_device_fails_the_other_devices_work_waiting_on_it(
    pair: tuple[hal.Device, hal.Device],
) -> None:
    """B's work parked on semaphores of A — one host-signalled, one that A's held-back work
    would signal — fails with UnavailableError when A closes; B itself goes on."""
    _, b = pair
    a = hal.create_device(label="closing")
    buffer_a, target = a.allocate_buffer(64), b.allocate_buffer(64)
    b.queue_fill(target, 0, 64, 0x22, 1)
    host_sem, by_work, gate = a.create_semaphore(), a.create_semaphore(), a.create_semaphore()
    a.queue_fill(buffer_a, 0, 64, 1, 1, wait=[(gate, 1)], signal=[(by_work, 1)])
    waited_host, waited_work, later = (
        b.create_semaphore(),
        b.create_semaphore(),
        b.create_semaphore(),
    )
    b.queue_fill(target, 0, 64, 0x33, 1, wait=[(host_sem, 1)], signal=[(waited_host, 1)])
    b.queue_copy(buffer_a, 0, target, 0, 64, wait=[(by_work, 1)], signal=[(waited_work, 1)])
    time.sleep(0.05)
    started = time.monotonic()
    a.close()
    assert time.monotonic() - started < 10.0
    error = cause(waited_host)
    assert isinstance(error, hal.UnavailableError) and "closed" in str(error)
    assert isinstance(cause(waited_work), hal.UnavailableError)
    # Work queued on B after the close that waits on an unreached point of A fails at once.
    b.queue_barrier(wait=[(host_sem, 1)], signal=[(later, 1)])
    assert isinstance(cause(later), hal.UnavailableError)
    # A's semaphore itself is a host object: it still works from the host.
    host_sem.signal(1)
    assert host_sem.query() == 1
    # B is unaffected, and nothing of the failed work ran.
    b.wait_idle(WAIT)
    assert (read(b, target) == 0x22).all()
    # A point of A already reached is no obstacle.
    done = b.create_semaphore()
    b.queue_barrier(wait=[(host_sem, 1)], signal=[(done, 1)])
    done.wait(1, timeout=WAIT)


def test_peer_copy_from_a_closed_device_raises_unavailable(
    pair: tuple[hal.Device, hal.Device],
) -> None:
    _, b = pair
    a = hal.create_device(label="closed source")
    source, target = a.buffer_from_numpy(random_bytes(64)), b.allocate_buffer(64)
    gate, done = b.create_semaphore(), b.create_semaphore()
    b.queue_copy(source, 0, target, 0, 64, wait=[(gate, 1)], signal=[(done, 1)])
    a.close()
    with pytest.raises(hal.UnavailableError, match=r"^queue_copy: source's device"):
        b.queue_copy(source, 0, target, 0, 64)
    gate.signal(1)  # the queued copy finds its source's device closed when it runs
    error = cause(done)
    assert isinstance(error, hal.UnavailableError) and "source's device" in str(error)


# -- peer copies -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("length", "source_offset", "target_offset"),
    [
        (0, 0, 0),
        (1, 0, 0),
        (3, 1, 2),
        (4, 0, 0),
        (5, 3, 1),
        (1023, 7, 5),
        (65537, 2, 2),
        (70001, 1, 3),
        ((9 << 20) + 3, 5, 2),  # several staging chunks, unaligned at both ends
    ],
)
def test_peer_copy_is_byte_exact(
    pair: tuple[hal.Device, hal.Device], length: int, source_offset: int, target_offset: int
) -> None:
    a, b = pair
    data = random_bytes(source_offset + length + 9, seed=length)
    initial = random_bytes(target_offset + length + 11, seed=length + 1)
    source, target = a.buffer_from_numpy(data), b.buffer_from_numpy(initial)
    done = b.create_semaphore()
    b.queue_copy(source, source_offset, target, target_offset, length, signal=[(done, 1)])
    done.wait(1, timeout=WAIT)
    expected = initial.copy()
    expected[target_offset : target_offset + length] = data[source_offset : source_offset + length]
    assert (read(b, target) == expected).all()


def test_peer_copy_of_subspans_and_buffer_refs(pair: tuple[hal.Device, hal.Device]) -> None:
    a, b = pair
    data, initial = random_bytes(4096, seed=3), random_bytes(4096, seed=4)
    source, target = a.buffer_from_numpy(data), b.buffer_from_numpy(initial)
    sub_source, sub_target = source.subspan(101, 2000), target.subspan(33, 3000)
    done = b.create_semaphore()
    b.queue_copy(sub_source, 10, sub_target, 7, 1500, signal=[(done, 1)])
    ref_source, ref_target = hal.BufferRef(source, 2001, 1000), hal.BufferRef(target, 3050, None)
    b.queue_copy(ref_source, 1, ref_target, 2, None, wait=[(done, 1)], signal=[(done, 2)])
    done.wait(2, timeout=WAIT)
    expected = initial.copy()
    expected[40:1540] = data[111:1611]
    expected[3052:4051] = data[2002:3001]
    assert (read(b, target) == expected).all()


def test_bad_peer_copies_raise_before_anything_happens(
    pair: tuple[hal.Device, hal.Device],
) -> None:
    a, b = pair
    source, target = a.buffer_from_numpy(random_bytes(64)), b.buffer_from_numpy(random_bytes(64))
    before = read(b, target).copy()
    done = b.create_semaphore()
    with pytest.raises(hal.OutOfRangeError, match=r"^queue_copy: source range \[60, 68\)"):
        b.queue_copy(source, 60, target, 0, 8, signal=[(done, 1)])
    with pytest.raises(hal.OutOfRangeError, match=r"^queue_copy: target range \[60, 68\)"):
        b.queue_copy(source, 0, target, 60, 8, signal=[(done, 1)])
    with pytest.raises(hal.OutOfRangeError, match=r"^queue_copy: target"):
        b.queue_copy(source, 0, target, 1, None, signal=[(done, 1)])
    with pytest.raises(hal.InvalidArgumentError, match=r"^queue_copy: source offset"):
        b.queue_copy(source, -1, target, 0, 4, signal=[(done, 1)])
    with pytest.raises(hal.InvalidArgumentError, match=r"^queue_copy: target of a peer copy"):
        b.queue_copy(source, 0, hal.SlotRef(0), 0, 4, signal=[(done, 1)])
    no_source = a.allocate_buffer(64, usage=hal.BufferUsage.TRANSFER_TARGET)
    with pytest.raises(hal.PermissionDeniedError, match=r"^queue_copy: source lacks usage"):
        b.queue_copy(no_source, 0, target, 0, 4, signal=[(done, 1)])
    released = a.allocate_buffer(64)
    released.release()
    with pytest.raises(hal.FailedPreconditionError, match="queue_copy"):
        b.queue_copy(released, 0, target, 0, 4, signal=[(done, 1)])
    b.wait_idle(WAIT)
    assert done.query() == 0
    assert (read(b, target) == before).all()


def test_peer_copy_reads_after_the_source_devices_earlier_work(
    pair: tuple[hal.Device, hal.Device],
) -> None:
    """A's fill of the source is held back on a host semaphore and signals sem_a; B's copy
    waits on sem_a: it sees the filled bytes, not the old ones."""
    a, b = pair
    size = 6 << 20
    source, target = a.allocate_buffer(size), b.allocate_buffer(size)
    gate, sem_a, done = a.create_semaphore(), a.create_semaphore(), b.create_semaphore()
    a.queue_fill(source, 0, None, 0xA5, 1, wait=[(gate, 1)], signal=[(sem_a, 1)])
    b.queue_copy(source, 0, target, 0, None, wait=[(sem_a, 1)], signal=[(done, 1)])
    gate.signal(1)
    done.wait(1, timeout=WAIT)
    assert (read(b, target) == 0xA5).all()
    # Without a semaphore: a copy queued after A's submitted fill still follows it.
    a.queue_fill(source, 0, None, 0x3C, 1)
    b.queue_copy(source, 0, target, 0, None, signal=[(done, 2)])
    done.wait(2, timeout=WAIT)
    assert (read(b, target) == 0x3C).all()


# -- three devices, threads ----------------------------------------------------------------------


def test_three_devices_in_a_ring() -> None:
    devices = [hal.create_device(label=f"ring{i}") for i in range(3)]
    try:
        data = random_bytes(10001, seed=9)
        buffers = [d.allocate_buffer(10001) for d in devices]
        sems = [d.create_semaphore() for d in devices]
        devices[0].queue_update(data, 0, buffers[0], 0, 10001, signal=[(sems[0], 1)])
        for step in range(1, 9):
            here, there = step % 3, (step - 1) % 3
            devices[here].queue_copy(
                buffers[there], 0, buffers[here], 0, None,
                wait=[(sems[there], step)], signal=[(sems[here], step + 1)],
            )  # fmt: skip
        sems[8 % 3].wait(9, timeout=WAIT)
        for device, buffer in zip(devices, buffers, strict=True):
            assert (read(device, buffer) == data).all()
    finally:
        for device in devices:
            device.close()


def test_threads_submit_on_both_devices(pair: tuple[hal.Device, hal.Device]) -> None:
    """Four threads per device queue fills, cross-device barriers and peer copies at once;
    every chain ends with the bytes of its last fill."""
    a, b = pair
    errors: list[BaseException] = []
    results: list[tuple[hal.Device, hal.Buffer, int]] = []
    lock = threading.Lock()

    def worker(index: int) -> None:
        here, there = (a, b) if index % 2 == 0 else (b, a)
        try:
            mine, theirs = here.allocate_buffer(4099), there.allocate_buffer(4099)
            sem_here, sem_there = here.create_semaphore(), there.create_semaphore()
            for step in range(1, 16):
                pattern = (index * 16 + step) % 255 + 1
                there.queue_fill(theirs, 0, None, pattern, 1, wait=[(sem_here, 2 * step - 2)],
                                 signal=[(sem_there, step)])  # fmt: skip
                here.queue_copy(theirs, 0, mine, 0, None, wait=[(sem_there, step)],
                                signal=[(sem_here, 2 * step - 1)])  # fmt: skip
                here.queue_barrier(wait=[(sem_here, 2 * step - 1)], signal=[(sem_here, 2 * step)])
            try:
                sem_here.wait(30, timeout=WAIT)
            except hal.DeadlineExceededError as error:
                raise AssertionError(f"chain {index} stalled at {sem_here}, {sem_there}") from error
            with lock:
                results.append((here, mine, (index * 16 + 15) % 255 + 1))
        except BaseException as error:
            errors.append(error)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(2 * WAIT)
    assert not errors, errors
    assert len(results) == 8
    for device, buffer, pattern in results:
        assert (read(device, buffer) == pattern).all()


# -- Dawn --------------------------------------------------------------------------------------


def test_two_dawn_devices_and_a_native_one() -> None:
    """Two Dawn devices of one adapter beside a wgpu-native one: cross-device waits and peer
    copies between all three; a compile error on one Dawn device never surfaces in a
    concurrent call on the other (wgpudawn's pending errors are process-wide)."""
    backend = dawn_backend_or_skip()
    first = hal.create_device(implementation="dawn", backend=backend, label="dawn1")
    second = hal.create_device(implementation="dawn", backend=backend, label="dawn2")
    native = hal.create_device(implementation="wgpu-native")
    try:
        data = random_bytes(70003, seed=5)
        bufs = [d.allocate_buffer(70003) for d in (first, second, native)]
        sems = [d.create_semaphore() for d in (first, second, native)]
        first.queue_update(data, 0, bufs[0], 0, 70003, signal=[(sems[0], 1)])
        second.queue_copy(bufs[0], 0, bufs[1], 0, None, wait=[(sems[0], 1)], signal=[(sems[1], 1)])
        native.queue_copy(bufs[1], 0, bufs[2], 0, None, wait=[(sems[1], 1)], signal=[(sems[2], 1)])
        sems[2].wait(1, timeout=WAIT)
        assert (read(native, bufs[2]) == data).all()
        assert (read(second, bufs[1]) == data).all()

        stop = threading.Event()
        leaked: list[BaseException] = []

        def spoil() -> None:
            bad = "@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }"
            count = 0
            while not stop.is_set():
                with pytest.raises(hal.InvalidArgumentError):
                    first.create_executable(bad + " " * count)
                count += 1

        spoiler = threading.Thread(target=spoil)
        spoiler.start()
        try:
            for i in range(40):
                try:
                    second.create_executable(INCREMENT + " " * i)
                    second.queue_fill(bufs[1], 0, 64, i, 1)
                    assert (np.frombuffer(second.transfer_d2h(bufs[1], 0, 64), np.uint8) == i).all()
                except hal.HalError as error:
                    leaked.append(error)
        finally:
            stop.set()
            spoiler.join(WAIT)
        assert not leaked, leaked[:2]
    finally:
        for device in (first, second, native):
            device.close()
