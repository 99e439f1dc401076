"""``python -m hal demo``: a real pipeline recorded, lowered, executed and verified."""

from __future__ import annotations

import statistics
import time

import numpy as np

from hal.core.builtins import shader_path
from hal.core.plan import Plan
from hal.enums import CommandBufferMode
from hal.runtime.device import Device, create_device
from hal.runtime.encoder import compile_plan

__all__ = ["NEXT", "main", "time_plan"]

NEXT = (
    "\nnext: try `.venv/bin/python -m hal example all` (matmul, prefix_sum, softmax, mlp), "
    "`.venv/bin/python -m hal devices -v`, or the README's examples; `make test` runs the suite"
)
"""The demo's last line: what to try after it."""

_COUNT = 1 << 16
_WAIT = 60.0


def time_plan(device: Device, plan: Plan, repeats: int) -> float:
    """Median seconds to encode, submit and finish ``plan`` (after one warm-up run)."""
    program = compile_plan(plan, device.encoding)
    backend = device.backend
    samples = []
    for i in range(repeats + 1):
        start = time.perf_counter()
        backend.wait(backend.submit([program.encode()]))
        if i:
            samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def main(dispatches: int = 200, repeats: int = 7) -> int:
    """Run the demo; returns 0 when the GPU result matches numpy, else 1."""
    with create_device() as device:
        print(f"device: {device.info}")
        ops = device.create_executable(shader_path("elementwise.wgsl"))
        groups = (_COUNT + 63) // 64
        x = np.linspace(-4.0, 4.0, _COUNT, dtype=np.float32)

        data = device.allocate_buffer(x.nbytes)
        tmp = device.allocate_buffer(x.nbytes)
        acc = device.allocate_buffer(x.nbytes)
        result = device.allocate_buffer(x.nbytes + 3)

        with device.record() as cb:
            cb.update_buffer(x, 0, data, 0, x.nbytes)  # host data, ordered in the stream
            cb.fill_buffer(acc, 0, x.nbytes, np.float32(0.5).view(np.uint32).item())
            cb.execution_barrier()
            cb.dispatch(
                ops, "scale", (groups, 1, 1), constants=[_COUNT, 2.0, -1.0], bindings=[data, tmp]
            )
            cb.execution_barrier()
            cb.dispatch(
                ops, "square", (groups, 1, 1), constants=[_COUNT, 0.0, 0.0], bindings=[tmp, data]
            )
            cb.execution_barrier()
            cb.dispatch(
                ops,
                "accumulate",
                (groups, 1, 1),
                constants=[_COUNT, 0.0, 0.0],
                bindings=[data, acc],
            )
            cb.execution_barrier()
            cb.copy_buffer(acc, 0, result, 3, x.nbytes)  # unaligned: a builtin copy kernel
        print(cb.dump())

        done = device.create_semaphore()
        device.queue_execute(cb, signal=[(done, 1)])
        done.wait(1, timeout=_WAIT)
        got = result.to_numpy(np.uint8)[3:].view(np.float32)
        want = (x * 2.0 - 1.0) ** 2 + 0.5
        ok = bool(np.array_equal(got, want))
        print(f"result matches numpy: {ok} (max abs error {np.max(np.abs(got - want)):.3g})")

        # Dispatch overhead: the same chain of small dispatches lowered into one compute pass
        # versus naively (one pass per command).
        with device.record(mode=CommandBufferMode.DEFAULT) as chain:
            for i in range(dispatches):
                src, dst = (data, tmp) if i % 2 == 0 else (tmp, data)
                chain.dispatch(
                    ops, "scale", (1, 1, 1), constants=[64, 1.0, 1.0], bindings=[src, dst]
                )
                chain.execution_barrier()
        assert isinstance(chain.plan, Plan)
        grouped = time_plan(device, chain.plan, repeats)
        naive = time_plan(device, chain.lower_naive(), repeats)
        print(f"{dispatches} chained dispatches, submit + GPU, median of {repeats}:")
        print(f"  lowered (1 compute pass):   {grouped / dispatches * 1e6:8.2f} us/dispatch")
        print(f"  naive (1 pass per command): {naive / dispatches * 1e6:8.2f} us/dispatch")
        print(f"  speed-up: {naive / grouped:.2f}x")
        mlp_ok = _mlp_with_profile(device)
        print(NEXT)
        return 0 if ok and mlp_ok else 1


def _mlp_with_profile(device: Device) -> bool:
    """The MLP example (matmul → bias+relu → matmul → bias → softmax in one command buffer):
    its plan, a verified result and a GPU-timestamp profile of one run."""
    from contextlib import ExitStack

    from hal.examples import mlp

    size = (64, 256, 256, 16)
    arrays = list(mlp.random_weights(size))
    batch, _, n_hidden, n_out = size
    print(f"\nMLP forward pass {size[1]}->{size[2]}->{size[3]}, batch {batch}:")
    with ExitStack() as stack:
        x, w1, b1, w2, b2 = (stack.enter_context(device.buffer_from_numpy(a)) for a in arrays)
        hidden = stack.enter_context(device.allocate_buffer(4 * batch * n_hidden))
        logits = stack.enter_context(device.allocate_buffer(4 * batch * n_out))
        probs = stack.enter_context(device.allocate_buffer(4 * batch * n_out))
        with device.record() as cb:
            mlp.record_mlp(cb, mlp.load(device), x, w1, b1, w2, b2, hidden, logits, probs, size)
        assert cb.plan is not None
        print(cb.plan.describe())
        done = device.create_semaphore()
        with device.profile() as profile:
            device.queue_execute(cb, signal=[(done, 1)])
            done.wait(1, timeout=_WAIT)
        got = probs.to_numpy(np.float32, (batch, n_out))
    ok = bool(np.allclose(got, mlp.reference(*arrays), rtol=1e-3, atol=1e-5))
    print(f"result matches numpy: {ok}")
    print("profile (per dispatch):")
    for event in profile.events:
        if event.kind == "dispatch":
            print(
                f"  {event.name:<32} {(event.end_ns - event.start_ns) / 1e3:9.1f} us "
                f"[{event.clock}]"
            )
    return ok
