"""Allocation-bound calls, timed: what the allocator's free pool (session 22) changes.

Rows, per size, in GB/s of payload (median; ms in the JSON):

- ``buffer_from_numpy``: ``device.buffer_from_numpy(array).release()`` + ``wait_idle`` (the
  same array every call, as transfer.py's row).
- ``allocate + to_numpy``: ``allocate_buffer(n)``, read it back (zeros), release.
- ``allocate + release``: ``allocate_buffer(n).release()`` + ``wait_idle`` (the clear of a new
  or reused buffer included).

Only the public API, so it runs against any tree (``PYTHONPATH`` picks the tree). With
``--pool both`` each row runs with ``HAL_BUFFER_POOL_BYTES=0`` (off) and unset (default)
alternately, each on its own device, ``--rounds`` times; trees without the pool ignore it.

Usage (repository root)::

    python3 benchmarks/buffer_reuse.py [--implementation dawn] [--sizes 16M,256M] [--reps 9]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from sizes import human, parse_size

import hal

TIMEOUT = 120.0


def _rows(device: hal.Device, array: np.ndarray) -> dict[str, Any]:
    size = array.nbytes

    def from_numpy() -> None:
        device.buffer_from_numpy(array).release()
        device.wait_idle(TIMEOUT)

    def read_new() -> None:
        with device.allocate_buffer(size) as buffer:
            if buffer.to_numpy()[-1] != 0:
                raise AssertionError("a new buffer did not read as zeros")

    def allocate() -> None:
        device.allocate_buffer(size).release()
        device.wait_idle(TIMEOUT)

    return {
        "buffer_from_numpy": from_numpy,
        "allocate + to_numpy": read_new,
        "allocate + release": allocate,
    }


def _measure(run: Any, reps: int) -> list[float]:
    run()  # warm-up (a pooled buffer after it, where the pool is on)
    samples = []
    for _ in range(reps):
        start = time.perf_counter()
        run()
        samples.append(time.perf_counter() - start)
    return samples


def main(argv: list[str] | None = None) -> int:
    """Run the rows, print the table, write the JSON. Returns the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="16M,64M")
    parser.add_argument("--reps", type=int, default=9)
    parser.add_argument("--rounds", type=int, default=3, help="off/on alternations")
    parser.add_argument("--pool", choices=["both", "env"], default="both")
    parser.add_argument("--implementation", default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    sizes = [parse_size(s) for s in args.sizes.split(",")]
    settings = ["0", None] if args.pool == "both" else [os.environ.get("HAL_BUFFER_POOL_BYTES")]
    samples: dict[str, list[float]] = {}
    info = ""
    for _ in range(args.rounds):
        for setting in settings:
            if setting is None:
                os.environ.pop("HAL_BUFFER_POOL_BYTES", None)
            else:
                os.environ["HAL_BUFFER_POOL_BYTES"] = setting
            label = "pool off" if setting == "0" else "pool default"
            with hal.create_device(implementation=args.implementation) as device:
                info = str(device.info)
                for size in sizes:
                    array = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8)
                    with device.buffer_from_numpy(array) as check:
                        if not np.array_equal(check.to_numpy(), array):
                            raise AssertionError(f"buffer_from_numpy: wrong bytes at {size}")
                    for name, run in _rows(device, array).items():
                        key = f"{name} | {label} | {size}"
                        samples.setdefault(key, []).extend(_measure(run, args.reps))
    print(f"{info}; {args.rounds} rounds x {args.reps} reps, median GB/s (ms)")
    for key, cell in samples.items():
        name, label, size = key.split(" | ")
        median = statistics.median(cell)
        print(f"| {name} | {label} | {human(int(size))} | {int(size) / median / 1e9:.2f} "
              f"({median * 1e3:.2f}) |")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"adapter": info, "samples": samples}, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
