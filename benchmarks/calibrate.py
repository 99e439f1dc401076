"""Measure the transfer cost model of this adapter (see hal/cost.py) and write it as JSON.

Measures, with submit + blocking device poll around each GPU run (medians; transfers are
repeated 8 times per submission so that fixed costs don't hide the bandwidth):
  dispatch_us        per tiny dispatch inside one compute pass
  pass_switch_us     extra per dispatch when every dispatch has its own pass
  native_copy_gbps   copy_buffer_to_buffer bandwidth (bytes copied per second)
  kernel_copy_gbps   hal's 16-byte-block builtin copy kernel
  clear_gbps         clear_buffer
  kernel_fill_gbps   hal's 16-byte-block builtin fill kernel

Usage: python benchmarks/calibrate.py [--implementation dawn] [--size-mib 256]
       [--out hal/cost_models/NAME.json]
The output's "implementation" and "match" strings select the model at device creation
(hal.core.cost.load_costs); Dawn's models are named ``dawn-<adapter>-<backend>.json``.
Submissions go through the device's backend (``submit`` + blocking ``wait``), so it runs on
every implementation.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hal
from hal.core.builtins import shader_path
from hal.core.lowering import LoweringOptions, lower
from hal.core.plan import Plan
from hal.runtime.encoder import compile_plan

_REPEAT = 8


def _time_plan(device: hal.Device, plan: Plan, reps: int) -> float:
    program = compile_plan(plan, device.encoding)
    backend = device.backend
    samples = []
    for rep in range(reps + 1):
        start = time.perf_counter()
        with backend.submission_lock:
            ticket = backend.submit([program.encode()])
        backend.wait(ticket)
        if rep:
            samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def _plan(device: hal.Device, record: object, options: LoweringOptions) -> Plan:
    cb = device.create_command_buffer(hal.CommandBufferMode.DEFAULT)
    cb.begin()
    record(cb)  # type: ignore[operator]
    cb.end()
    return lower(cb.segments, device.caps, options)


def calibrate(device: hal.Device, size: int, reps: int, dispatches: int) -> dict[str, float]:
    """The measured cost model constants."""
    noop = device.create_executable(shader_path("noop.wgsl"))
    counter = device.allocate_buffer(256)

    def tiny(cb: hal.CommandBuffer) -> None:
        for _ in range(dispatches):
            cb.dispatch(noop, "touch", (1, 1, 1), bindings=[counter])

    one_pass = _time_plan(device, _plan(device, tiny, LoweringOptions()), reps)
    per_pass = _time_plan(device, _plan(device, tiny, LoweringOptions(naive=True)), reps)
    a, b = device.allocate_buffer(size), device.allocate_buffer(size)

    # Several transfers per submission, so the submit and wake-up cost is amortised.
    def copy(cb: hal.CommandBuffer) -> None:
        for _ in range(_REPEAT):
            cb.copy_buffer(a, 0, b, 0, size)
            cb.execution_barrier()

    def zero(cb: hal.CommandBuffer) -> None:
        for _ in range(_REPEAT):
            cb.fill_buffer(b, 0, size, 0)
            cb.execution_barrier()

    native = LoweringOptions(transfers="native")
    kernel = LoweringOptions(transfers="kernel")
    gb = _REPEAT * size / 1e9
    return {
        "dispatch_us": one_pass / dispatches * 1e6,
        "pass_switch_us": max(0.0, (per_pass - one_pass) / dispatches * 1e6),
        "native_copy_gbps": gb / _time_plan(device, _plan(device, copy, native), reps),
        "kernel_copy_gbps": gb / _time_plan(device, _plan(device, copy, kernel), reps),
        "clear_gbps": gb / _time_plan(device, _plan(device, zero, native), reps),
        "kernel_fill_gbps": gb / _time_plan(device, _plan(device, zero, kernel), reps),
    }


def main(argv: list[str] | None = None) -> int:
    """Calibrate, print the model and write JSON."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size-mib", type=int, default=256)
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--dispatches", type=int, default=2000)
    parser.add_argument("--out", help="JSON path (default: print only)")
    parser.add_argument("--implementation", default=None, help="wgpu-native (default) or dawn")
    args = parser.parse_args(argv)
    with hal.create_device(implementation=args.implementation) as device:
        info = device.info
        size = min(args.size_mib << 20, device.caps.max_buffer_size & ~255)
        model = calibrate(device, size, args.reps, args.dispatches)
        prefix = "" if info.implementation == "wgpu-native" else f"{info.implementation}-"
        slug = re.sub(r"[^a-z0-9]+", "-", f"{prefix}{info.name}-{info.backend}".lower())
        result = {
            "name": slug.strip("-"),
            "implementation": info.implementation,
            "match": [re.split(r"[ (]", info.name)[0].lower(), info.backend],
            "adapter": str(info),
            "transfer_bytes": size,
            **{k: round(v, 3) for k, v in model.items()},
        }
    print(json.dumps(result, indent=1))
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1) + "\n")
        print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
