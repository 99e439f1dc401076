"""Host <-> device transfer bandwidth: hal against raw wgpu-py (and torch where it has CUDA).

Rows, per size (4 KiB up to ``--max-size``), in GB/s of payload (median of the repetitions):

upload (host -> device), each timed until the bytes are on the device:
- ``hal transfer_h2d``: ``device.transfer_h2d(array, buf)`` then ``device.wait_idle()``.
- ``hal queue_update``: ``device.queue_update(array, 0, buf, 0, n, signal=...)`` + wait.
- ``hal buffer_from_numpy``: allocation + upload + ``wait_idle`` (the buffer is released;
  from session 22 the next call's allocation reuses it through the allocator's free pool,
  as a loop of allocations does: ``HAL_BUFFER_POOL_BYTES=0`` times new allocations).
- ``wgpu write_buffer``: ``queue.write_buffer(buf, 0, array)``, ``queue.submit([])``,
  ``device._poll(True)`` on the raw wgpu-py device hal uses.
- ``torch pinned h2d`` / ``torch pageable h2d``: ``dst.copy_(src, non_blocking=True)`` from
  a pinned (resp. ordinary) host tensor, then ``torch.cuda.synchronize()``.

download (device -> host), each timed until the host holds the bytes:
- ``hal transfer_d2h`` (returns new ``bytes``), ``hal to_numpy`` (returns a new array).
- ``wgpu read_buffer``: ``queue.read_buffer(buf)`` (returns a new memoryview).
- ``torch pinned d2h``: into a preallocated pinned tensor; ``torch .cpu()``: a new tensor.

With ``--implementation dawn`` the "wgpu" rows are the same calls on wgpudawn's device (waited
with ``queue.on_submitted_work_done_sync()``), and where Dawn has host-memory buffers two raw
rows give the ceiling hal's host-memory path aims at: ``dawn host-memory copy h2d`` / ``d2h``,
one ``copy_buffer_to_buffer`` between the device buffer and a host-memory buffer + wait.

Where the pool is host memory (Dawn with host-memory buffers), from ``wrap_min``, more rows:
``hal transfer_h2d, wrapped caller memory`` / ``hal transfer_d2h, wrapped caller memory``
(the caller's array / the new bytes wrapped, ``HAL_HOST_WRAP=1``; where that is the default,
``..., pool copy`` rows with it off instead), ``hal to_numpy, pool copy`` (result regions
off too), ``hal to_numpy, first call of a size`` (the pool's reusable result regions
dropped before each call, untimed: new pages every time), ``hal transfer_h2d from a to_numpy
result`` (an upload from a live result's pages, already wrapped), and two diagnostics:
``diag: wrap (pin) a host array's pages`` (wrapping the array's pages and destroying the
buffers, no copy) and ``diag: fault in fresh pages`` (MADV_POPULATE_WRITE over the copy
threads on new huge-page-advised memory). ``hal transfer_d2h`` returns new ``bytes``, whose
pages are fresh every call; ``hal to_numpy`` after the warm-up call reuses its region.

Where the pool has a registration cache of caller memory (session 21: a numpy array
transferred again is wrapped once and kept), ``hal transfer_h2d`` transfers the same array
every call (cached after the warm-up call), and more rows show the cases apart: ``hal
transfer_h2d, same array again`` (explicitly cached before timing), ``..., first transfer of
an array`` (the cache dropped before each call: the pool's streamed copy), ``..., second
transfer (wraps it)`` (the cache dropped and one untimed call first: the timed call pins the
pages), ``..., fresh array each call`` (a new copy of the array, untimed, before each call),
``hal buffer_from_numpy, fresh array each call``, and ``hal queue_write into the same array``
(device to caller memory: the GPU writes the cached array's pages).

Every hal and wgpu row checks its bytes once per size. ``--json`` holds every sample, the
adapter, the staging settings (``HAL_STAGING_CHUNK``, ``HAL_STAGING_DEPTH``,
``HAL_COPY_THREADS``) and the ratios against wgpu and torch.

Usage (repository root)::

    python3 benchmarks/transfer.py [--implementation dawn] [--max-size 256M] [--reps 9]
        [--json PATH]
"""

from __future__ import annotations

import argparse
import json
import mmap
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import wgpu

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sizes import human, parse_size

import hal
from hal.runtime import staging

TIMEOUT = 120.0


Mode = tuple[str, Callable[[], Any]] | tuple[str, Callable[[], Any], Callable[[], Any]]
"""(direction, one timed call[, an untimed setup run before each call])."""


def measure(
    run: Callable[[], Any], reps: int, budget: float, setup: Callable[[], Any] | None = None
) -> list[float]:
    """Seconds per call: one warm-up, then ``reps`` calls or as many as ``budget`` s allow
    (at least 3); ``setup`` runs untimed before each."""
    if setup is not None:
        setup()
    run()
    samples: list[float] = []
    deadline = time.perf_counter() + budget
    while len(samples) < reps and (len(samples) < 3 or time.perf_counter() < deadline):
        if setup is not None:
            setup()
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return samples


def with_wrapping(pool: Any, on: bool, run: Callable[[], Any]) -> Callable[[], Any]:
    """``run`` with the pool's wrapping of caller memory and of results on or off."""

    def call() -> Any:
        saved = pool.wrap, pool.wrap_results
        pool.wrap = pool.wrap_results = on
        try:
            return run()
        finally:
            pool.wrap, pool.wrap_results = saved

    return call


def raw_wait(wgpu_device: Any) -> None:
    """Block until the raw device's queue is idle: wgpu-native's blocking poll, or on Dawn
    (whose ``_poll`` never blocks) ``on_submitted_work_done_sync``."""
    if type(wgpu_device).__module__.startswith("wgpudawn"):
        wgpu_device.queue.on_submitted_work_done_sync()
    else:
        wgpu_device._poll(True)


def host_memory_modes(
    device: hal.Device, raw: Any, raw_buf: Any, host: np.ndarray
) -> dict[str, Mode]:
    """The raw Dawn host-memory rows (empty where the backend has no host-memory buffers):
    one ``copy_buffer_to_buffer`` each way between ``raw_buf`` and a host-memory buffer,
    checked for exact bytes here."""
    backend = device.backend
    if not getattr(backend, "host_memory_buffers", False):
        return {}
    size = host.nbytes
    pinned, view = backend.create_host_buffer(size)
    pages = np.frombuffer(view, np.uint8)

    def copy(source: Any, target: Any) -> None:
        encoder = raw.create_command_encoder()
        encoder.copy_buffer_to_buffer(source, 0, target, 0, size)
        raw.queue.submit([encoder.finish()])
        raw_wait(raw)

    pages[:] = host
    copy(pinned, raw_buf)
    pages[:] = 0
    copy(raw_buf, pinned)
    if not np.array_equal(pages, host):
        raise AssertionError(f"dawn host-memory copy: wrong bytes at {size}")
    result: dict[str, Mode] = {
        "dawn host-memory copy h2d": ("upload", lambda: copy(pinned, raw_buf)),
        "dawn host-memory copy d2h": ("download", lambda: copy(raw_buf, pinned)),
    }
    pool = device._host.staging
    if size >= pool.wrap_min:
        address = host.ctypes.data
        lo, hi = pool._middle(address, size)
        piece = pool._piece()

        def wrap_only() -> None:
            # What wrapping costs alone (the driver pins the pages): every piece of the
            # array's aligned middle wrapped, then destroyed.
            handles = [
                backend.wrap_host_memory(address + p, min(piece, hi - p), host)
                for p in range(lo, hi, piece)
            ]
            for handle in handles:
                backend.destroy_buffer(handle)

        fresh: list[Any] = []

        def new_pages() -> None:
            fresh.clear()
            fresh.append(mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS))
            if hasattr(mmap, "MADV_HUGEPAGE"):
                fresh[0].madvise(mmap.MADV_HUGEPAGE)  # as new bytes and result regions

        def fault_in() -> None:
            # Fresh pages faulted in writable over the copy threads (what a readback into
            # a new bytes object costs before the GPU can write it).
            pages = np.frombuffer(fresh[0], np.uint8)
            staging.populate(pages.ctypes.data, size)

        result["diag: wrap (pin) a host array's pages"] = ("diagnostic", wrap_only)
        result["diag: fault in fresh pages"] = ("diagnostic", fault_in, new_pages)
    return result


def cache_modes(device: hal.Device, buf: Any, host: np.ndarray) -> dict[str, Mode]:
    """The registration cache's rows (none where the pool has no cache or the size is
    below it), each checked for exact bytes here."""
    pool = device._host.staging
    cache = pool.cache
    size = host.nbytes
    if not cache.limit or size < pool.wrap_min or size > cache.limit:
        return {}
    fresh: list[np.ndarray] = []
    out = np.zeros_like(host)
    semaphore = device.create_semaphore()
    counter = [0]

    def h2d(array: np.ndarray) -> None:
        device.transfer_h2d(array, buf)
        device.wait_idle(TIMEOUT)

    def cached() -> None:
        for _ in range(3):  # a first and a second sighting: wrapped and kept
            if any(e.ref() is host for e in cache._entries.values()):
                return
            h2d(host)

    def sighted() -> None:
        cache.clear()
        h2d(host)

    def new_array() -> None:
        fresh.clear()
        fresh.append(host.copy())

    def queue_write() -> None:
        counter[0] += 1
        device.queue_write(buf, 0, out, 0, size, signal=[(semaphore, counter[0])])
        semaphore.wait(counter[0], timeout=TIMEOUT)

    def from_numpy_fresh() -> None:
        device.buffer_from_numpy(fresh[0]).release()
        device.wait_idle(TIMEOUT)

    result: dict[str, Mode] = {
        "hal transfer_h2d, same array again": ("upload", lambda: h2d(host), cached),
        "hal transfer_h2d, first transfer of an array": ("upload", lambda: h2d(host), cache.clear),
        "hal transfer_h2d, second transfer (wraps it)": ("upload", lambda: h2d(host), sighted),
        "hal transfer_h2d, fresh array each call": ("upload", lambda: h2d(fresh[0]), new_array),
        "hal buffer_from_numpy, fresh array each call": ("upload", from_numpy_fresh, new_array),
        "hal queue_write into the same array": ("download", queue_write),
    }
    for _ in range(3):  # first sighting, wrap, cached
        device.transfer_h2d(np.zeros(size, np.uint8), buf)
        h2d(host)
        if not np.array_equal(buf.to_numpy(), host):
            raise AssertionError(f"cached transfer_h2d: wrong bytes at {size}")
    for _ in range(3):
        out[:] = 0
        queue_write()
        if not np.array_equal(out, host):
            raise AssertionError(f"queue_write into an array: wrong bytes at {size}")
    return result


def torch_cuda() -> Any:
    """The torch module when it has a CUDA device, else None."""
    try:
        import torch
    except ImportError:
        return None
    return torch if torch.cuda.is_available() else None


def modes(device: hal.Device, size: int, torch: Any) -> dict[str, Mode]:
    """Mode name -> (direction, one timed call) for ``size`` bytes; every hal/wgpu mode is
    checked for exact bytes here, once."""
    rng = np.random.default_rng(size)
    host = rng.integers(0, 256, size, dtype=np.uint8)
    buf = device.allocate_buffer(size)
    raw = device.backend.device
    raw_buf = raw.create_buffer(
        size=size, usage=wgpu.BufferUsage.COPY_DST | wgpu.BufferUsage.COPY_SRC
    )
    semaphore = device.create_semaphore()
    counter = [0]

    def hal_h2d() -> None:
        device.transfer_h2d(host, buf)
        device.wait_idle(TIMEOUT)

    def hal_update() -> None:
        counter[0] += 1
        device.queue_update(host, 0, buf, 0, size, signal=[(semaphore, counter[0])])
        semaphore.wait(counter[0], timeout=TIMEOUT)

    def hal_from_numpy() -> None:
        device.buffer_from_numpy(host).release()
        device.wait_idle(TIMEOUT)

    def raw_write() -> None:
        raw.queue.write_buffer(raw_buf, 0, host)
        raw.queue.submit([])
        raw_wait(raw)

    pool = device._host.staging
    result: dict[str, Mode] = {
        "hal transfer_h2d": ("upload", hal_h2d),
        "hal queue_update": ("upload", hal_update),
        "hal buffer_from_numpy": ("upload", hal_from_numpy),
        "wgpu write_buffer": ("upload", raw_write),
        "hal transfer_d2h": ("download", lambda: device.transfer_d2h(buf)),
        "hal to_numpy": ("download", lambda: buf.to_numpy()),
        "wgpu read_buffer": ("download", lambda: raw.queue.read_buffer(raw_buf)),
    }
    if pool.host_memory and size >= pool.wrap_min:
        # The same calls with the caller's memory wrapped (HAL_HOST_WRAP=1) or everything
        # through the pool (HAL_HOST_WRAP=0 HAL_HOST_RESULTS=0), whichever is not the
        # default; to_numpy's first call of a size (no collected result's region to reuse:
        # new pages, filled through the pool); and an upload from a to_numpy result (its
        # pages are already wrapped: no copy, no pinning).
        other = "pool copy" if pool.wrap else "wrapped caller memory"
        result[f"hal transfer_h2d, {other}"] = (
            "upload",
            with_wrapping(pool, not pool.wrap, hal_h2d),
        )
        result[f"hal transfer_d2h, {other}"] = (
            "download",
            with_wrapping(pool, not pool.wrap, lambda: device.transfer_d2h(buf)),
        )
        result["hal to_numpy, pool copy"] = (
            "download",
            with_wrapping(pool, False, lambda: buf.to_numpy()),
        )
        result["hal to_numpy, first call of a size"] = (
            "download",
            lambda: buf.to_numpy(),
            pool.release_results,
        )
        result_array = buf.to_numpy()
        result_array = buf.to_numpy()  # the second use wraps the region's pages

        def h2d_from_result() -> None:
            device.transfer_h2d(result_array, buf)
            device.wait_idle(TIMEOUT)

        result["hal transfer_h2d from a to_numpy result"] = ("upload", h2d_from_result)
    result.update(cache_modes(device, buf, host))
    # Exactness, once: every upload path lands the bytes, every download path returns them.
    for name in ("hal transfer_h2d", "hal queue_update"):
        device.transfer_h2d(np.zeros(size, np.uint8), buf)
        result[name][1]()
        if not np.array_equal(buf.to_numpy(), host):
            raise AssertionError(f"{name}: wrong bytes at {size}")
    raw_write()
    if bytes(raw.queue.read_buffer(raw_buf)) != host.tobytes():
        raise AssertionError(f"wgpu write_buffer/read_buffer: wrong bytes at {size}")
    if device.transfer_d2h(buf) != host.tobytes():
        raise AssertionError(f"hal transfer_d2h: wrong bytes at {size}")
    if not np.array_equal(buf.to_numpy(), host):
        raise AssertionError(f"hal to_numpy: wrong bytes at {size}")
    result.update(host_memory_modes(device, raw, raw_buf, host))
    if torch is not None:
        pinned = torch.from_numpy(host).pin_memory()
        pageable = torch.from_numpy(host.copy())
        gpu = torch.empty(size, dtype=torch.uint8, device="cuda")
        pinned_out = torch.empty(size, dtype=torch.uint8).pin_memory()

        def pinned_h2d() -> None:
            gpu.copy_(pinned, non_blocking=True)
            torch.cuda.synchronize()

        def pageable_h2d() -> None:
            gpu.copy_(pageable, non_blocking=True)
            torch.cuda.synchronize()

        def pinned_d2h() -> None:
            pinned_out.copy_(gpu, non_blocking=True)
            torch.cuda.synchronize()

        result["torch pinned h2d"] = ("upload", pinned_h2d)
        result["torch pageable h2d"] = ("upload", pageable_h2d)
        result["torch pinned d2h"] = ("download", pinned_d2h)
        result["torch .cpu()"] = ("download", lambda: gpu.cpu())
    return result


def main(argv: list[str] | None = None) -> int:
    """Run the benchmark, print the table, write the JSON. Returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--max-size", default="256M", help="largest size (default 256M)")
    parser.add_argument("--min-size", default="4K")
    parser.add_argument("--reps", type=int, default=9, help="timed repetitions per cell")
    parser.add_argument("--budget", type=float, default=3.0, help="seconds per cell, soft")
    parser.add_argument("--adapter", default=None, help="hal adapter index or name substring")
    parser.add_argument("--no-torch", action="store_true", help="skip the torch rows")
    parser.add_argument("--json", default="benchmarks/results/transfer.json")
    parser.add_argument(
        "--implementation", default=None, help="wgpu-native or dawn (default: HAL_IMPLEMENTATION)"
    )
    args = parser.parse_args(argv)

    adapter: int | str | None = args.adapter
    if isinstance(adapter, str) and adapter.isdigit():
        adapter = int(adapter)
    torch = None if args.no_torch else torch_cuda()
    sizes = []
    size = parse_size(args.min_size)
    while size <= parse_size(args.max_size):
        sizes.append(size)
        size *= 4
    samples: dict[str, dict[str, list[float]]] = {}
    directions: dict[str, str] = {}
    with hal.create_device(adapter, implementation=args.implementation) as device:
        pool = device._host.staging
        implementation = device.info.implementation
        print(f"adapter: {device.info} on {implementation}; torch: {'yes' if torch else 'no'}")
        alignment = device.backend.host_memory_alignment() if pool.host_memory else 0
        print(
            f"staging: {'host-memory buffers' if pool.host_memory else 'mapped buffers'}, "
            f"from {human(pool.wrap_min)} wrapping caller memory {'on' if pool.wrap else 'off'}"
            f", result regions {'on' if pool.wrap_results else 'off'}"
            f"{f' (alignment {alignment})' if alignment else ''}, "
            f"registration cache {human(pool.cache.limit) if pool.cache.limit else 'off'}, "
            f"chunk {human(pool.chunk_size)}, depth {pool.depth}, "
            f"copy threads {staging.COPY_THREADS}",
            flush=True,
        )
        for size in sizes:
            for name, (direction, run, *setup) in modes(device, size, torch).items():
                directions[name] = direction
                samples.setdefault(name, {})[str(size)] = measure(
                    run, args.reps, args.budget, *setup
                )
            print(f"  {human(size)} done", flush=True)
        info = str(device.info)
        host_memory, chunk, wrap, wrap_min, wrap_results = (
            pool.host_memory,
            pool.chunk_size,
            pool.wrap,
            pool.wrap_min,
            pool.wrap_results,
        )
        cache_bytes = pool.cache.limit

    def gbps(name: str, size: int) -> float | None:
        cell = samples.get(name, {}).get(str(size))
        return size / statistics.median(cell) / 1e9 if cell else None

    names = list(samples)
    header = "| mode | " + " | ".join(human(s) for s in sizes) + " |"
    lines = [header, "|" + " --- |" * (len(sizes) + 1)]
    for direction in ("upload", "download", "diagnostic"):
        for name in names:
            if directions[name] != direction:
                continue
            cells = [gbps(name, s) for s in sizes]
            lines.append(
                f"| {name} | " + " | ".join("" if c is None else f"{c:.2f}" for c in cells) + " |"
            )
    table = "\n".join(lines)
    print(f"\nGB/s (median), {info}\n{table}")

    ratios: dict[str, dict[str, float]] = {}
    pairs = [
        ("hal transfer_h2d / wgpu write_buffer", "hal transfer_h2d", "wgpu write_buffer"),
        ("hal transfer_d2h / wgpu read_buffer", "hal transfer_d2h", "wgpu read_buffer"),
        ("hal to_numpy / wgpu read_buffer", "hal to_numpy", "wgpu read_buffer"),
        ("hal transfer_h2d / torch pinned h2d", "hal transfer_h2d", "torch pinned h2d"),
        ("hal to_numpy / torch pinned d2h", "hal to_numpy", "torch pinned d2h"),
        ("hal transfer_h2d / torch pageable h2d", "hal transfer_h2d", "torch pageable h2d"),
        ("hal to_numpy / torch .cpu()", "hal to_numpy", "torch .cpu()"),
        (
            "hal transfer_h2d / dawn host-memory copy",
            "hal transfer_h2d",
            "dawn host-memory copy h2d",
        ),
        ("hal to_numpy / dawn host-memory copy", "hal to_numpy", "dawn host-memory copy d2h"),
        (
            "hal transfer_d2h / dawn host-memory copy",
            "hal transfer_d2h",
            "dawn host-memory copy d2h",
        ),
        ("hal transfer_h2d / pool copy", "hal transfer_h2d", "hal transfer_h2d, pool copy"),
        ("hal transfer_d2h / pool copy", "hal transfer_d2h", "hal transfer_d2h, pool copy"),
        (
            "hal transfer_h2d / wrapped caller memory",
            "hal transfer_h2d",
            "hal transfer_h2d, wrapped caller memory",
        ),
        (
            "hal transfer_d2h / wrapped caller memory",
            "hal transfer_d2h",
            "hal transfer_d2h, wrapped caller memory",
        ),
        ("hal to_numpy / pool copy", "hal to_numpy", "hal to_numpy, pool copy"),
        (
            "hal h2d same array again / first transfer",
            "hal transfer_h2d, same array again",
            "hal transfer_h2d, first transfer of an array",
        ),
        (
            "hal h2d same array again / dawn host-memory copy",
            "hal transfer_h2d, same array again",
            "dawn host-memory copy h2d",
        ),
        (
            "hal queue_write into the same array / dawn host-memory copy",
            "hal queue_write into the same array",
            "dawn host-memory copy d2h",
        ),
        (
            "hal h2d from a to_numpy result / dawn host-memory copy",
            "hal transfer_h2d from a to_numpy result",
            "dawn host-memory copy h2d",
        ),
    ]
    for label, a, b in pairs:
        row = {}
        for s in sizes:
            x, y = gbps(a, s), gbps(b, s)
            if x is not None and y is not None:
                row[human(s)] = round(x / y, 2)
        if row:
            ratios[label] = row
            print(f"{label}: " + ", ".join(f"{k} {v}x" for k, v in row.items()))

    result = {
        "adapter": info,
        "implementation": implementation,
        "python": platform.python_version(),
        "wgpu": wgpu.__version__,
        "torch": None if torch is None else torch.__version__,
        "cores": os.cpu_count(),
        "staging": {
            "host_memory": host_memory,
            "wrap": wrap,
            "wrap_results": wrap_results,
            "wrap_min": wrap_min,
            "cache_bytes": cache_bytes,
            "chunk": chunk,
            "depth": staging.DEPTH,
            "copy_threads": staging.COPY_THREADS,
        },
        "sizes": sizes,
        "gbps_median": {n: {human(s): gbps(n, s) for s in sizes} for n in names},
        "ratios": ratios,
        "samples_s": samples,
        "table": table,
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
