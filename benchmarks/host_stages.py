"""Host-transfer stages measured one by one (a diagnostic for Dawn's host-memory path).

Where the device has host-memory buffers (Dawn's host-mapped-pointer), at one size (default
256 MiB), GB/s of payload, best and median of ``--reps``:

- ``memcpy``: an ordinary (warm) numpy array copied into warm ordinary memory and into a
  host-memory buffer's pages, in chunks of 8/32/64/256 MiB, each chunk split over 1-16
  threads (``np.copyto`` releases the GIL), and each thread copying one contiguous part of
  the whole range (``split``);
- ``fault``: fresh private anonymous pages faulted in by MADV_POPULATE_WRITE over 1-16
  threads, with and without MADV_HUGEPAGE (and how much of them became huge pages);
  a new ``bytes`` object's pages the same way;
- ``gpu``: the GPU copies alone between a device buffer and host-memory buffers (chunks
  of 32 MiB, all submitted, then one wait);
- ``pipeline``: the pool's chunked upload with per-stage times (wait, copy, submit), at
  several thread counts, chunk sizes and depths; ``hal``: the public calls at the same;
- ``bytes`` (session 21): readbacks into a new ``bytes`` object (what ``transfer_d2h``
  returns) with its pages prepared first — MADV_POPULATE_WRITE over 8/12/16 threads on the
  huge-page-advised object, then the pool's streamed copy, or then wrapped for the GPU to
  write directly — against ``transfer_d2h`` as it is.

Usage (repository root)::

    python3 benchmarks/host_stages.py [--size 256M] [--reps 5] [--json PATH]
"""

from __future__ import annotations

import argparse
import ctypes
import json
import mmap
import os
import platform
import statistics
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sizes import parse_size

import hal
from hal.runtime import staging

_MIB = 1 << 20
_RESULTS: list[dict[str, Any]] = []


def record(section: str, name: str, size: int, seconds: list[float], **extra: Any) -> None:
    """Keep one row (GB/s best and median) and print it."""
    best, median = size / min(seconds) / 1e9, size / statistics.median(seconds) / 1e9
    row = {"section": section, "name": name, "best": best, "median": median, **extra}
    row["samples"] = seconds
    _RESULTS.append(row)
    print(f"{section:9} {name:60} best {best:7.2f}  median {median:7.2f}", flush=True)


def timed(run: Callable[[], Any], reps: int, setup: Callable[[], Any] | None = None) -> list[float]:
    """Seconds per call of ``run`` (one warm-up), ``setup`` untimed before each."""
    out = []
    for i in range(reps + 1):
        if setup is not None:
            setup()
        began = time.perf_counter()
        run()
        if i:
            out.append(time.perf_counter() - began)
    return out


def parallel_copy(pool: ThreadPoolExecutor, threads: int, dst: np.ndarray, src: np.ndarray) -> None:
    """``dst[:] = src`` over ``threads`` page-aligned pieces."""
    size = dst.nbytes
    if threads <= 1:
        np.copyto(dst, src)
        return
    step = ((-(-size // threads)) + 4095) & ~4095
    futures = [
        pool.submit(np.copyto, dst[i : i + step], src[i : i + step])
        for i in range(step, size, step)
    ]
    np.copyto(dst[:step], src[:step])
    for f in futures:
        f.result()


def memcpy_section(size: int, reps: int, pinned: np.ndarray) -> None:
    rng = np.random.default_rng(1)
    src = rng.integers(0, 256, size, dtype=np.uint8)
    warm = np.ones(size, np.uint8)
    pool = ThreadPoolExecutor(16)
    for target_name, dst in (("ordinary", warm), ("host-memory buffer", pinned)):
        for threads in (1, 2, 4, 8, 12, 16):
            for chunk in (8 * _MIB, 32 * _MIB, 64 * _MIB, size):

                def run(dst: np.ndarray = dst, threads: int = threads, chunk: int = chunk) -> None:
                    for p in range(0, size, chunk):
                        parallel_copy(pool, threads, dst[p : p + chunk], src[p : p + chunk])

                record(
                    "memcpy",
                    f"{target_name}, {threads} threads, {chunk // _MIB} MiB chunks",
                    size,
                    timed(run, reps),
                    threads=threads,
                    chunk=chunk,
                )
        if not np.array_equal(dst, src):
            raise AssertionError("memcpy: wrong bytes")
    # ctypes.memmove (glibc memcpy, GIL released) at 8 and 16 threads, one piece each.
    for threads in (8, 16):
        step = size // threads

        def run_memmove(threads: int = threads, step: int = step) -> None:
            futures = [
                pool.submit(ctypes.memmove, pinned.ctypes.data + i, src.ctypes.data + i, step)
                for i in range(0, size, step)
            ]
            for f in futures:
                f.result()

        record(
            "memcpy",
            f"memmove into host-memory buffer, {threads} threads",
            size,
            timed(run_memmove, reps),
        )
    pool.shutdown()


def fault_section(size: int, reps: int) -> None:
    madvise = ctypes.CDLL(None, use_errno=True).madvise
    madvise.restype = ctypes.c_int
    madvise.argtypes = (ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int)
    pool = ThreadPoolExecutor(16)
    fresh: list[Any] = []

    def populate(address: int, length: int, threads: int) -> None:
        step = max(2 * _MIB, ((-(-length // threads)) + 2 * _MIB - 1) & ~(2 * _MIB - 1))
        futures = [
            pool.submit(madvise, address + i, min(step, length - i), 23)
            for i in range(0, length, step)
        ]
        codes = [f.result() for f in futures]
        if any(codes):
            raise OSError(ctypes.get_errno(), "MADV_POPULATE_WRITE failed")

    for huge in (True, False):
        for threads in (1, 4, 8, 16):

            def setup(huge: bool = huge) -> None:
                fresh.clear()
                m = mmap.mmap(-1, size + 2 * _MIB, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
                if huge:
                    m.madvise(mmap.MADV_HUGEPAGE)
                fresh.append(m)

            def run(threads: int = threads) -> None:
                a = np.frombuffer(fresh[0], np.uint8)
                addr = a.ctypes.data
                start = -addr % (2 * _MIB)
                populate(addr + start, size, threads)

            record(
                "fault",
                f"populate, huge={huge}, {threads} threads",
                size,
                timed(run, reps, setup),
                threads=threads,
                huge=huge,
            )
        # How much became huge pages, for the last mapping.
        with open("/proc/self/smaps_rollup") as f:
            anon = [line.strip() for line in f if "AnonHuge" in line]
        print("smaps", huge, anon, flush=True)
        _RESULTS.append({"section": "fault", "name": f"smaps huge={huge}", "value": anon})
    # Copying (touching) fresh huge-advised pages from warm memory, 8/16 threads.
    src = np.ones(size, np.uint8)
    for threads in (8, 16):

        def setup2() -> None:
            fresh.clear()
            m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            m.madvise(mmap.MADV_HUGEPAGE)
            fresh.append(m)

        def run2(threads: int = threads) -> None:
            parallel_copy(pool, threads, np.frombuffer(fresh[0], np.uint8), src)

        record(
            "fault",
            f"copy into fresh huge pages, {threads} threads",
            size,
            timed(run2, reps, setup2),
        )
    # A new bytes object: huge advice (new_bytes) + populate, then copy.
    for threads in (8, 16):
        objs: list[Any] = []

        def setup3(objs: list[Any] = objs) -> None:
            objs.clear()

        def run3(threads: int = threads, objs: list[Any] = objs) -> None:
            obj, view = staging.new_bytes(size)
            objs.append(obj)
            addr = np.frombuffer(view, np.uint8).ctypes.data
            lo = (addr + 2 * _MIB - 1) & ~(2 * _MIB - 1)
            hi = (addr + size) & ~(2 * _MIB - 1)
            populate(lo, hi - lo, threads)

        record("fault", f"new bytes, populate, {threads} threads", size, timed(run3, reps, setup3))

        def run4(threads: int = threads, objs: list[Any] = objs) -> None:
            obj, view = staging.new_bytes(size)
            objs.append(obj)
            parallel_copy(pool, threads, np.frombuffer(view, np.uint8), src)

        record("fault", f"new bytes, copy in, {threads} threads", size, timed(run4, reps, setup3))
    pool.shutdown()


def gpu_section(device: hal.Device, size: int, reps: int) -> None:
    backend = device.backend
    buf = device.allocate_buffer(size)
    target = buf.allocation.handle
    for chunk in (8 * _MIB, 32 * _MIB, size):
        hosts = [backend.create_host_buffer(chunk) for _ in range(0, size, chunk)]
        for direction in ("h2d", "d2h"):

            def run(direction: str = direction, chunk: int = chunk, hosts: Any = hosts) -> None:
                last = 0
                for k, (hb, _) in enumerate(hosts):
                    if direction == "h2d":
                        cb = backend.copy_command_buffer([(hb, 0, target, k * chunk, chunk)])
                    else:
                        cb = backend.copy_command_buffer([(target, k * chunk, hb, 0, chunk)])
                    last = backend.submit([cb])
                backend.wait(last)

            record(
                "gpu",
                f"{direction}, {chunk // _MIB} MiB host buffers, one wait",
                size,
                timed(run, reps),
            )
        for hb, _ in hosts:
            backend.destroy_buffer(hb)
    buf.release()


def set_threads(n: int) -> None:
    staging.COPY_THREADS = n
    if staging._executor is not None:
        staging._executor.shutdown()
    staging._executor = None


CONFIGS = ((8, 32, 3), (12, 32, 3), (16, 32, 3), (12, 16, 4), (12, 64, 3), (12, 32, 6))
"""(threads, chunk MiB, depth) of the pipeline rows: the chunk-by-chunk upload timed per
stage, then hal's calls (streamed over ``threads`` where the pool is host memory)."""


def pipeline_section(device: hal.Device, size: int, reps: int) -> None:
    pool = device._host.staging
    rng = np.random.default_rng(2)
    host = rng.integers(0, 256, size, dtype=np.uint8)
    buf = device.allocate_buffer(size)
    target = buf.allocation.handle
    allocation = buf.allocation
    body = memoryview(host.data).cast("B")
    saved = pool.chunk_size, pool.depth, staging.COPY_THREADS, pool.stream_threads
    for threads, chunk, depth in CONFIGS:
        set_threads(threads)
        pool.stream_threads = threads
        pool.release()
        pool.chunk_size, pool.depth = chunk * _MIB, depth
        stages = {"wait": 0.0, "copy": 0.0, "submit": 0.0}

        def run(c: int = chunk * _MIB, d: int = depth, stages: dict[str, float] = stages) -> None:
            chunks = -(-size // c)
            items = [pool._take(True, c) for _ in range(min(d, chunks))]
            try:
                for k in range(chunks):
                    item = items[k % len(items)]
                    part = body[k * c : (k + 1) * c]
                    t0 = time.perf_counter()
                    item.request_map(len(part))
                    view = item.wait_mapped()
                    t1 = time.perf_counter()
                    staging.copy_bytes(view, part)
                    item.unmap()
                    t2 = time.perf_counter()
                    cmd = pool._copy_command(item.buffer, 0, target, k * c, len(part))
                    item.last_ticket = pool._submit(cmd, allocation)
                    t3 = time.perf_counter()
                    stages["wait"] += t1 - t0
                    stages["copy"] += t2 - t1
                    stages["submit"] += t3 - t2
            finally:
                for item in items:
                    pool.give(item)
            device.wait_idle(60)

        samples = timed(run, reps)
        n = reps + 1
        record(
            "pipeline",
            f"upload, {threads} threads, {chunk} MiB, depth {depth}",
            size,
            samples,
            stages_ms={k: v / n * 1e3 for k, v in stages.items()},
        )
        print("   stages ms/call", {k: round(v / n * 1e3, 2) for k, v in stages.items()})
        for name, call in (
            ("transfer_h2d", lambda: (device.transfer_h2d(host, buf), device.wait_idle(60))),
            ("transfer_d2h", lambda: device.transfer_d2h(buf)),
            ("to_numpy", lambda: buf.to_numpy()),
        ):
            record(
                "hal",
                f"{name}, {threads} threads, {chunk} MiB, depth {depth}",
                size,
                timed(call, reps),
            )
        if device.transfer_d2h(buf) != host.tobytes():
            raise AssertionError("pipeline: wrong bytes")
    pool.release()
    pool.chunk_size, pool.depth, pool.stream_threads = saved[0], saved[1], saved[3]
    set_threads(saved[2])
    # Readback into a new bytes object whose pages are faulted in first (populate over the
    # copy threads), then through the pool.
    for threads in (8, 16):
        set_threads(threads)

        def prefault() -> bytes:
            obj, view = staging.new_bytes(size)
            addr = np.frombuffer(view, np.uint8).ctypes.data
            lo, hi = (addr + 2 * _MIB - 1) & ~(2 * _MIB - 1), (addr + size) & ~(2 * _MIB - 1)
            staging.populate(lo, hi - lo)
            pool._read_pooled(buf, 0, view)
            return obj

        record(
            "hal",
            f"transfer_d2h, prefaulted new bytes, {threads} threads",
            size,
            timed(prefault, reps),
        )
        if prefault() != host.tobytes():
            raise AssertionError("prefault: wrong bytes")
    set_threads(saved[2])
    # Split between the engines: a fraction wrapped (pinned in place) on another thread,
    # the rest through the pool, concurrently.
    for fraction in (0.25, 0.4, 0.5):
        cut = int(size * fraction) & ~(2 * _MIB - 1)

        def split(cut: int = cut) -> None:
            pool.wrap = True
            try:
                t = threading.Thread(target=pool._write_wrapped, args=(buf, 0, body[:cut]))
                t.start()
                pool._write_pooled(buf, cut, body[cut:])
                t.join()
            finally:
                pool.wrap = False
            device.wait_idle(60)

        record("split", f"upload, {fraction:.2f} wrapped + rest pooled", size, timed(split, reps))
        if device.transfer_d2h(buf) != host.tobytes():
            raise AssertionError("split: wrong bytes")
    buf.release()


def bytes_section(device: hal.Device, size: int, reps: int) -> None:
    """Readback into new ``bytes`` with its pages faulted in first (over several threads),
    then copied through the pool or written by the GPU through a per-call wrap."""
    pool = device._host.staging
    rng = np.random.default_rng(3)
    host = rng.integers(0, 256, size, dtype=np.uint8)
    buf = device.buffer_from_numpy(host)
    saved = staging.COPY_THREADS
    record("bytes", "transfer_d2h as it is", size, timed(lambda: device.transfer_d2h(buf), reps))
    for threads in (8, 12, 16):
        set_threads(threads)
        for how in ("pool copy", "wrapped"):

            def run(how: str = how) -> bytes:
                obj, view = staging.new_bytes(size)
                address = np.frombuffer(view, np.uint8).ctypes.data
                lo = (address + 2 * _MIB - 1) & ~(2 * _MIB - 1)
                hi = (address + size) & ~(2 * _MIB - 1)
                staging.populate(lo, hi - lo)
                if how == "wrapped":
                    pool.wrap = True
                    try:
                        pool.read_into(buf, 0, view, obj)
                    finally:
                        pool.wrap = False
                else:
                    pool._read_pooled(buf, 0, view)
                return obj

            record(
                "bytes",
                f"new bytes populated over {threads} threads, then {how}",
                size,
                timed(run, reps),
            )
            if run() != host.tobytes():
                raise AssertionError(f"bytes {how}: wrong bytes")
    set_threads(saved)
    buf.release()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="256M")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--json", default="benchmarks/results/host_stages.json")
    parser.add_argument("--sections", default="memcpy,fault,gpu,pipeline")
    args = parser.parse_args()
    size = parse_size(args.size)
    info: dict[str, Any] = {"platform": platform.platform(), "cpus": os.cpu_count()}
    for path in (
        "/sys/kernel/mm/transparent_hugepage/enabled",
        "/sys/kernel/mm/transparent_hugepage/defrag",
        "/sys/kernel/mm/transparent_hugepage/shmem_enabled",
    ):
        try:
            info[path] = Path(path).read_text().strip()
        except OSError as error:
            info[path] = str(error)
    print(info, flush=True)
    sections = args.sections.split(",")
    with hal.create_device(implementation="dawn") as device:
        info["adapter"] = str(device.info)
        backend = device.backend
        if not getattr(backend, "host_memory_buffers", False):
            print("no host-memory buffers: nothing to measure")
            return 0
        for name in sections:
            began = time.perf_counter()
            try:
                if name == "memcpy":
                    _, view = backend.create_host_buffer(size)
                    pinned = np.frombuffer(view, np.uint8)
                    pinned[:] = 0
                    memcpy_section(size, args.reps, pinned)
                elif name == "fault":
                    fault_section(size, args.reps)
                elif name == "gpu":
                    gpu_section(device, size, args.reps)
                elif name == "pipeline":
                    pipeline_section(device, size, args.reps)
                elif name == "bytes":
                    bytes_section(device, size, args.reps)
            except Exception as error:  # a diagnostic: keep the other sections
                print(f"section {name} failed: {error!r}", flush=True)
                _RESULTS.append({"section": name, "error": repr(error)})
            print(f"section {name}: {time.perf_counter() - began:.1f} s", flush=True)
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    Path(args.json).write_text(json.dumps({"info": info, "rows": _RESULTS}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
