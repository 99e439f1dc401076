"""Where ``transfer_d2h``'s time goes: the GPU copy, the host copy, or the new pages.

``transfer_d2h`` returns a new ``bytes`` object (API-fixed), whose pages are fresh every call:
the kernel faults and zeroes each on first touch. At one size (default 256 MiB), GB/s of
payload (median of ``--reps``, best in the JSON):

- ``transfer_d2h``: the call as it is (after ``--reps`` warm-ups of nothing else);
- ``to_numpy (result pages reused)``: the same read into memory that was used before;
- ``copy into new bytes, T threads``: ``staging.new_bytes(n)`` (as ``transfer_d2h`` makes
  it: huge-page advised) filled from warm memory by T threads (contiguous parts,
  ``np.copyto`` releases the GIL): the host half alone, with fresh pages;
- ``copy into used memory, T threads``: the same copy into memory written before: the host
  half without fresh pages;
- ``fault new bytes in, T threads``: only writing one byte per 4 KiB page of a new
  ``bytes`` object over T threads: the kernel's page provisioning alone.

Usage (repository root)::

    python3 benchmarks/d2h_pages.py [--implementation dawn] [--size 256M] [--reps 7]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sizes import parse_size

import hal
from hal.runtime.staging import new_bytes

THREADS = (1, 4, 8, 12, 16)


def _timed(run: Callable[[], Any], reps: int) -> list[float]:
    run()
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return samples


def _split(
    pool: ThreadPoolExecutor, threads: int, work: Callable[[int, int], None], n: int
) -> None:
    step = -(-n // threads)
    list(pool.map(lambda i: work(i, min(n, i + step)), range(0, n, step)))


def main(argv: list[str] | None = None) -> int:
    """Measure, print the rows, write the JSON. Returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", default="256M")
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--implementation", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    n = parse_size(args.size)
    source = np.random.default_rng(1).integers(0, 256, n, dtype=np.uint8)
    used = np.empty(n, np.uint8)
    used[:] = 1
    rows: dict[str, list[float]] = {}
    with (
        hal.create_device(implementation=args.implementation) as device,
        ThreadPoolExecutor(max(THREADS)) as pool,
    ):
        buffer = device.buffer_from_numpy(source)
        if device.transfer_d2h(buffer) != source.tobytes():
            raise AssertionError("transfer_d2h: wrong bytes")
        rows["transfer_d2h"] = _timed(lambda: device.transfer_d2h(buffer), args.reps)
        rows["to_numpy (result pages reused)"] = _timed(lambda: buffer.to_numpy(), args.reps)
        for threads in THREADS:

            def fresh(t: int = threads) -> bytes:
                obj, view = new_bytes(n)
                target = np.frombuffer(view, np.uint8)

                def part(lo: int, hi: int) -> None:
                    np.copyto(target[lo:hi], source[lo:hi])

                _split(pool, t, part, n)
                view.release()
                return obj

            def warm(t: int = threads) -> None:
                def part(lo: int, hi: int) -> None:
                    np.copyto(used[lo:hi], source[lo:hi])

                _split(pool, t, part, n)

            def fault(t: int = threads) -> bytes:
                obj, view = new_bytes(n)
                target = np.frombuffer(view, np.uint8)

                def part(lo: int, hi: int) -> None:
                    target[lo:hi:4096] = 0

                _split(pool, t, part, n)
                view.release()
                return obj

            rows[f"copy into new bytes, {threads} threads"] = _timed(fresh, args.reps)
            rows[f"copy into used memory, {threads} threads"] = _timed(warm, args.reps)
            rows[f"fault new bytes in, {threads} threads"] = _timed(fault, args.reps)
        info = str(device.info)
    print(f"{info}, {n} bytes, GB/s median (best)")
    for name, cell in rows.items():
        print(f"| {name} | {n / statistics.median(cell) / 1e9:.2f} ({n / min(cell) / 1e9:.2f}) |")
    if args.json:
        Path(args.json).write_text(json.dumps({"adapter": info, "size": n, "rows": rows}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
