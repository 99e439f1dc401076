"""Concurrency soak: threads submitting, waiting, releasing, failing semaphores and closing.

Every accepted operation signals its own semaphore; the soak counts, per semaphore, how often
the queue advanced or failed it. At the end (after a close() that races with the threads)
every accepted operation must have ended exactly once: zero lost, zero doubly signalled.
``HAL_SOAK_SECONDS`` sets the duration of each soak (``make fuzz`` runs it longer).
"""

from __future__ import annotations

import contextlib
import io
import os
import random
import threading
import time
from collections import Counter
from typing import Any

import numpy as np
import pytest

import hal
from hal.backends.null import NullBackend
from hal.runtime.adapters import AdapterInfo
from hal.runtime.device import Device
from hal.runtime.semaphore import Semaphore

SECONDS = float(os.environ.get("HAL_SOAK_SECONDS", "6"))


class _Interrupting(io.BytesIO):
    def write(self, data: Any) -> int:
        raise KeyboardInterrupt


class Ledger:
    """Counts the queue's terminal events per semaphore (advance or fail)."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.events: Counter[int] = Counter()
        self.lock = threading.Lock()
        advance, fail = Semaphore.advance, Semaphore.fail

        def counted_advance(semaphore: Semaphore, value: int) -> None:
            self.note(semaphore)
            advance(semaphore, value)

        def counted_fail(semaphore: Semaphore, error: Any) -> None:
            self.note(semaphore)
            fail(semaphore, error)

        monkeypatch.setattr(Semaphore, "advance", counted_advance)
        monkeypatch.setattr(Semaphore, "fail", counted_fail)

    def note(self, semaphore: Semaphore) -> None:
        with self.lock:
            self.events[id(semaphore)] += 1


def soak_worker(
    device: Device,
    seed: int,
    stop: threading.Event,
    accepted: list[Semaphore],
    gates: list[Semaphore],
    lock: threading.Lock,
) -> None:
    """Random operations until ``stop``; appends the signal semaphore of each accepted one."""
    rng = random.Random(seed)
    try:
        source = device.buffer_from_numpy(np.arange(4096, dtype=np.uint32).astype(np.uint8))
        buffers = [device.allocate_buffer(4096) for _ in range(4)]
        while not stop.is_set():
            soak_step(device, rng, source, buffers, accepted, gates, lock)
    except hal.UnavailableError:
        return  # closed under us: that operation was refused, not accepted


def soak_step(
    device: Device,
    rng: random.Random,
    source: hal.Buffer,
    buffers: list[hal.Buffer],
    accepted: list[Semaphore],
    gates: list[Semaphore],
    lock: threading.Lock,
) -> None:
    """One random operation; raises UnavailableError once the device is closed."""
    choice = rng.randrange(8)
    if choice == 5:  # the host signals or fails a gate that other operations may wait on
        with lock:
            gates.append(device.create_semaphore())
            pick = rng.choice(gates)
        try:
            if rng.random() < 0.7:
                pick.signal(1)
            else:
                pick.fail("soak failure")
        except hal.HalError:  # already signalled or failed
            pass
        return
    done = device.create_semaphore()
    with lock:
        gate = rng.choice(gates) if gates and rng.random() < 0.3 else None
    wait = [] if gate is None else [(gate, 1)]
    signal = [(done, 1)]
    target = rng.choice(buffers)
    if choice == 0:
        device.queue_fill(target, 0, 256, rng.randrange(256), 1, wait=wait, signal=signal)
    elif choice == 1:
        device.queue_copy(source, 0, target, 256, 512, wait=wait, signal=signal)
    elif choice == 2:
        device.queue_update(bytes(64), 0, target, 8, 64, wait=wait, signal=signal)
    elif choice == 3:
        sink: Any = _Interrupting() if rng.random() < 0.5 else bytearray(64)
        device.queue_write(source, 0, sink, 0, 64, wait=wait, signal=signal)
    elif choice == 4:
        device.queue_barrier(wait=wait, signal=signal)
    elif choice == 6:
        fresh = device.allocate_buffer(1024)
        device.queue_fill(fresh, 0, 1024, 1, 1, wait=wait, signal=signal)
        fresh.release()  # deferred while the fill holds it
    else:
        with device.record() as cb:
            cb.fill_buffer(target, 512, 512, 9, 1)
            cb.copy_buffer(source, 0, target, 1024, 1024)
        device.queue_execute(cb, wait=wait, signal=signal)
    accepted.append(done)
    if rng.random() < 0.1:
        with contextlib.suppress(hal.AbortedError, hal.DeadlineExceededError):
            done.wait(1, timeout=0.05)


def run_soak(device: Device, monkeypatch: pytest.MonkeyPatch, threads: int = 4) -> int:
    ledger = Ledger(monkeypatch)
    stop = threading.Event()
    accepted: list[Semaphore] = []
    gates: list[Semaphore] = []
    lock = threading.Lock()
    workers = [
        threading.Thread(target=soak_worker, args=(device, i, stop, accepted, gates, lock))
        for i in range(threads)
    ]
    for worker in workers:
        worker.start()
    time.sleep(SECONDS)
    device.close()  # races with the workers still submitting
    stop.set()
    for worker in workers:
        worker.join(30)
    assert not any(worker.is_alive() for worker in workers)
    counts = Counter(ledger.events[id(s)] for s in accepted)
    assert set(counts) == {1}, f"terminal events per accepted operation: {dict(counts)}"
    print(f"soak: {len(accepted)} operations accepted, each ended exactly once")
    for semaphore in accepted:
        assert semaphore.failure is not None or semaphore.value == 1
    return len(accepted)


def test_soak_null_backend(monkeypatch: pytest.MonkeyPatch) -> None:
    info = AdapterInfo("null", "null", "cpu", "hal", "null")
    assert run_soak(Device(NullBackend(), info, "null"), monkeypatch) > 100


def test_soak_gpu(monkeypatch: pytest.MonkeyPatch) -> None:
    assert run_soak(hal.create_device(), monkeypatch) > 20
