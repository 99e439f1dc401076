"""The MPI side of tests/test_collectives.py: run under ``mpiexec -n N`` (N ≥ 2).

Every rank runs every scenario and compares what it received with numpy's answer computed
from every rank's (deterministic) data; a mismatch raises, which fails the whole job. Each
passed scenario prints ``OK <name>`` on rank 0; the last line is ``PASSED <count>``.
"""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np

import hal
from hal import CollectiveKind as K
from hal import CollectiveReduction as R

DTYPES = ("int8", "int32", "uint64", "float16", "float32", "float64")
ODD = 7  # elements per rank: odd, so no range is a multiple of 4 bytes for 1-byte types
SCENARIOS: list[tuple[str, Callable[[hal.Device, hal.Channel], None]]] = []


def scenario(fn: Callable[[hal.Device, hal.Channel], None]) -> Callable[..., None]:
    SCENARIOS.append((fn.__name__, fn))
    return fn


def data(rank: int, count: int, dtype: str, salt: int, reduction: R | None = None) -> np.ndarray:
    """Rank ``rank``'s values: small, so sums and products of every rank's are exact."""
    rng = np.random.default_rng(1000 * salt + rank)
    if reduction is R.PRODUCT:
        values = rng.choice(np.array([1, 2, 3] if dtype.startswith("u") else [-2, -1, 1, 2]), count)
    elif dtype.startswith("u"):
        values = rng.integers(0, 9, count)
        if dtype == "uint64":  # large values: a reduction through float64 would lose them
            values = values.astype(np.uint64) + np.uint64(1 << 60)
    else:
        values = rng.integers(-9, 10, count)
    return np.asarray(values).astype(dtype)


def reduce(arrays: list[np.ndarray], reduction: R, dtype: str) -> np.ndarray:
    """numpy's reduction over ranks (float16 in float32, rounded back)."""
    stack = np.stack(arrays)
    work = np.float32 if dtype == "float16" else np.dtype(dtype)
    stack = stack.astype(work)
    if reduction is R.SUM:
        out = stack.sum(axis=0, dtype=work)
    elif reduction is R.PRODUCT:
        out = stack.prod(axis=0, dtype=work)
    elif reduction is R.MINIMUM:
        out = stack.min(axis=0)
    elif reduction is R.MAXIMUM:
        out = stack.max(axis=0)
    else:
        out = stack.sum(axis=0, dtype=work) / np.asarray(len(arrays), work)
    return out.astype(dtype)


def check(name: str, got: np.ndarray, want: np.ndarray) -> None:
    if got.dtype.kind == "f":
        ok = got.shape == want.shape and np.allclose(got, want, rtol=2e-3, atol=1e-6)
    else:
        ok = got.shape == want.shape and np.array_equal(got, want)
    if not ok:
        raise AssertionError(f"{name}: got {got!r}, want {want!r}")


def reductions(dtype: str) -> list[R]:
    return [r for r in R if r is not R.AVERAGE or dtype.startswith("float")]


def done(device: hal.Device, cb: hal.CommandBuffer, table: list | None = None) -> None:
    sem = device.create_semaphore()
    device.queue_execute(cb, signal=[(sem, 1)], binding_table=table)
    sem.wait(1, timeout=60)


def _op(
    device: hal.Device,
    cb: hal.CommandBuffer,
    ch: hal.Channel,
    kind: K,
    send_values: np.ndarray | None,
    recv_elems: int,
    *,
    count: int,
    element_type: str,
    **kw: Any,
) -> hal.Buffer:
    """Record ``kind`` from a new buffer holding ``send_values`` into a new buffer of
    ``recv_elems`` elements, which it returns."""
    send = None if send_values is None else device.buffer_from_numpy(send_values)
    recv = device.allocate_buffer(recv_elems * np.dtype(element_type).itemsize)
    cb.collective(ch, kind, send, recv, count, element_type=element_type, **kw)
    return recv


@scenario
def every_kind(device: hal.Device, ch: hal.Channel) -> None:
    """Every kind × reduction × dtype, odd sizes, all of one dtype in one barrier region (one
    host step posting them together); expectations from numpy."""
    me, n, e = ch.rank, ch.count, ODD
    for salt, dtype in enumerate(DTYPES):
        size = np.dtype(dtype).itemsize
        checks: list[tuple[str, hal.Buffer, np.ndarray]] = []
        with device.record() as cb:
            op = functools.partial(_op, device, cb, ch, count=e, element_type=dtype)

            mine = data(me, e, dtype, salt)
            every = [data(r, e, dtype, salt) for r in range(n)]
            checks.append(("all_gather", op(K.ALL_GATHER, mine, n * e), np.concatenate(every)))
            blocks = [data(r, n * e, dtype, salt + 50) for r in range(n)]
            checks.append(
                (
                    "all_to_all",
                    op(K.ALL_TO_ALL, blocks[me], n * e),
                    np.concatenate([b[me * e : (me + 1) * e] for b in blocks]),
                )
            )
            root = n - 1
            checks.append(
                (
                    "broadcast",
                    op(K.BROADCAST, mine if me == root else None, e, param=root),
                    every[root],
                )
            )
            # A ring exchange in the same region: posted together, so it cannot deadlock.
            right, left = (me + 1) % n, (me - 1) % n
            cb.collective(
                ch,
                K.SEND,
                device.buffer_from_numpy(mine),
                None,
                e,
                element_type=dtype,
                param=right,
            )
            recv = device.allocate_buffer(e * size)
            cb.collective(ch, K.RECV, None, recv, e, element_type=dtype, param=left)
            checks.append(("send/recv", recv, every[left]))
            for reduction in reductions(dtype):
                values = [
                    data(r, e, dtype, salt + 10 + int(reduction), reduction) for r in range(n)
                ]
                want = reduce(values, reduction, dtype)
                tag = reduction.name
                checks.append(
                    (
                        f"all_reduce {tag}",
                        op(K.ALL_REDUCE, values[me], e, reduction=reduction),
                        want,
                    )
                )
                root = 1 % n
                if me == root:
                    got = op(K.REDUCE, values[me], e, reduction=reduction, param=root)
                    checks.append((f"reduce {tag}", got, want))
                else:
                    cb.collective(
                        ch,
                        K.REDUCE,
                        device.buffer_from_numpy(values[me]),
                        None,
                        e,
                        element_type=dtype,
                        reduction=reduction,
                        param=root,
                    )
                wide = [
                    data(r, n * e, dtype, salt + 20 + int(reduction), reduction) for r in range(n)
                ]
                checks.append(
                    (
                        f"reduce_scatter {tag}",
                        op(K.REDUCE_SCATTER, wide[me], e, reduction=reduction),
                        reduce(wide, reduction, dtype)[me * e : (me + 1) * e],
                    )
                )
        assert cb.stats.host_steps == 1, cb.dump()
        done(device, cb)
        for name, buffer, want in checks:
            check(f"{dtype} {name}", buffer.to_numpy(np.dtype(dtype)), want)


@scenario
def in_place_and_gpu_parts(device: hal.Device, ch: hal.Channel) -> None:
    """A fill before, an in-place ALL_REDUCE, a barrier, a copy after: GPU part, host step, GPU
    part, in program order."""
    me, n = ch.rank, ch.count
    buf = device.buffer_from_numpy(np.full(9, 100, np.int32))
    out = device.allocate_buffer(36)
    with device.record() as cb:
        cb.fill_buffer(buf, 0, 16, me + 1)  # first 4 elements: rank + 1
        cb.collective(ch, K.ALL_REDUCE, buf, buf, 9, element_type="int32", reduction=R.SUM)
        cb.execution_barrier()
        cb.copy_buffer(buf, 0, out, 0, 36)
    assert cb.stats.gpu_parts == 2 and cb.stats.host_steps == 1, cb.dump()
    done(device, cb)
    want = np.array([n * (n + 1) // 2] * 4 + [100 * n] * 5, np.int32)
    check("in place", buf.to_numpy(np.int32), want)
    check("copy after", out.to_numpy(np.int32), want)


@scenario
def subspans_and_refs(device: hal.Device, ch: hal.Channel) -> None:
    """Subspans, BufferRefs and BufferViews; bytes outside the ranges stay as they were."""
    me, n, e = ch.rank, ch.count, 5
    big = device.buffer_from_numpy(np.full(128, 0xEE, np.uint8))
    mine = data(me, e, "float32", 7)
    send = big.subspan(3, 4 * e)
    device.transfer_h2d(mine.tobytes(), send)
    recv = hal.BufferRef(big, 30, 4 * e * n)
    device.queue_collective(ch, K.ALL_GATHER, send, recv, e, element_type=np.float32)
    device.wait_idle(60)
    # queue_collective signals nothing here: wait through a semaphore of our own below.
    sem = device.create_semaphore()
    view = device.buffer_view_from_numpy(np.zeros(e, np.float32))
    device.queue_collective(
        ch,
        K.ALL_REDUCE,
        view,
        view,
        e,
        element_type="float32",
        reduction=R.MAXIMUM,
        signal=[(sem, 1)],
    )
    sem.wait(1, timeout=60)
    everything = big.to_numpy()
    gathered = np.concatenate([data(r, e, "float32", 7) for r in range(n)])
    check("subspan send", everything[3 : 3 + 4 * e].view(np.float32), mine)
    check("ref recv", everything[30 : 30 + 4 * e * n].view(np.float32), gathered)
    untouched = np.concatenate(
        [everything[:3], everything[3 + 4 * e : 30], everything[30 + 4 * e * n :]]
    )
    check("untouched", untouched, np.full(len(untouched), 0xEE, np.uint8))
    check("view in place", view.to_numpy(), np.zeros(e, np.float32))


@scenario
def slots(device: hal.Device, ch: hal.Channel) -> None:
    """Binding-table slots in a reusable command buffer, submitted with two tables."""
    me, n, e = ch.rank, ch.count, 3
    cb = device.create_command_buffer(hal.CommandBufferMode.DEFAULT, binding_capacity=2)
    cb.begin()
    cb.collective(
        ch,
        K.ALL_REDUCE,
        hal.SlotRef(0),
        hal.SlotRef(1, 8),
        e,
        element_type="int32",
        reduction=R.SUM,
    )
    cb.end()
    for round_ in range(2):
        src = device.buffer_from_numpy(np.arange(e, dtype=np.int32) + me + round_)
        dst = device.allocate_buffer(8 + 4 * e)
        done(device, cb, [src, dst])
        want = sum(np.arange(e, dtype=np.int32) + r + round_ for r in range(n))
        check(f"slots {round_}", dst.to_numpy(np.int32)[2:], want)
        check(f"slots {round_} head", dst.to_numpy(np.int32)[:2], np.zeros(2, np.int32))


@scenario
def submission_order(device: hal.Device, ch: hal.Channel) -> None:
    """Queue collectives without semaphores between them reach MPI in submission order:
    each rank broadcasts from a different root, every rank the same sequence."""
    n = ch.count
    sem = device.create_semaphore()
    recvs = []
    for root in range(n):
        send = device.buffer_from_numpy(np.full(4, ch.rank * 10 + root, np.int64))
        recv = device.allocate_buffer(32)
        last = root == n - 1
        device.queue_collective(
            ch,
            K.BROADCAST,
            send,
            recv,
            4,
            element_type="int64",
            param=root,
            signal=[(sem, 1)] if last else (),
        )
        recvs.append(recv)
    sem.wait(1, timeout=60)
    device.wait_idle(60)
    for root, recv in enumerate(recvs):
        check(f"order {root}", recv.to_numpy(np.int64), np.full(4, root * 10 + root, np.int64))


@scenario
def split_channel(device: hal.Device, ch: hal.Channel) -> None:
    """Channel.split: ALL_REDUCE within the even and the odd ranks."""
    me, n = ch.rank, ch.count
    with ch.split(me % 2, me) as sub:
        members = [r for r in range(n) if r % 2 == me % 2]
        assert sub.count == len(members) and sub.rank == members.index(me), (sub, members)
        buf = device.buffer_from_numpy(np.array([me, 1], np.int32))
        sem = device.create_semaphore()
        device.queue_collective(
            sub,
            K.ALL_REDUCE,
            buf,
            buf,
            2,
            element_type="int32",
            reduction=R.SUM,
            signal=[(sem, 1)],
        )
        sem.wait(1, timeout=60)
        check("split", buf.to_numpy(np.int32), np.array([sum(members), len(members)], np.int32))
    try:
        sub.check_usable("test")
    except hal.FailedPreconditionError:
        pass
    else:
        raise AssertionError("a closed channel stayed usable")


@scenario
def failing_and_missing_rank(device: hal.Device, ch: hal.Channel) -> None:
    """Rank 1 fails before its collective on one channel; the last rank never issues one on
    another. The others time out (HAL_COLLECTIVE_TIMEOUT=3) with DeadlineExceededError, the
    failing rank sees its own failure, and the timed-out channels are unusable afterwards."""
    me, n = ch.rank, ch.count
    os.environ["HAL_COLLECTIVE_TIMEOUT"] = "3"
    failing, missing = ch.split(0, me), ch.split(0, me)
    buf = device.buffer_from_numpy(np.ones(4, np.float32))
    other = device.buffer_from_numpy(np.ones(4, np.float32))
    gate, sem_a, sem_b = (device.create_semaphore() for _ in range(3))
    start = time.monotonic()
    device.queue_collective(
        failing,
        K.ALL_REDUCE,
        buf,
        buf,
        4,
        element_type="float32",
        reduction=R.SUM,
        wait=[(gate, 1)],
        signal=[(sem_a, 1)],
    )
    if me == 1:
        gate.fail(RuntimeError("rank 1 failed on purpose"))
    else:
        gate.signal(1)
    if me != n - 1:
        device.queue_collective(
            missing,
            K.ALL_REDUCE,
            other,
            other,
            4,
            element_type="float32",
            reduction=R.SUM,
            signal=[(sem_b, 1)],
        )
    outcomes = []
    for sem, skipped in ((sem_a, False), (sem_b, me == n - 1)):
        if skipped:
            continue
        try:
            sem.wait(1, timeout=30)
        except hal.AbortedError as error:
            outcomes.append(type(error.__cause__).__name__)
        else:
            outcomes.append("ok")
    elapsed = time.monotonic() - start
    want_a = "RuntimeError" if me == 1 else "DeadlineExceededError"
    want = [want_a] if me == n - 1 else [want_a, "DeadlineExceededError"]
    assert outcomes == want, (me, outcomes, want)
    assert elapsed < 20, elapsed
    for channel, broken in ((failing, me != 1), (missing, me != n - 1)):
        try:
            channel.check_usable("test")
        except hal.UnavailableError:
            assert broken, me
        else:
            assert not broken, me
    if me != 1:
        try:
            with device.record() as cb:
                cb.collective(failing, K.ALL_GATHER, buf, buf, 1, element_type="float32")
        except hal.UnavailableError as error:
            assert "unusable" in str(error), error
        else:
            raise AssertionError("a timed-out channel accepted a collective")
    del os.environ["HAL_COLLECTIVE_TIMEOUT"]


def main() -> int:
    from mpi4py import MPI

    only = set(sys.argv[1:])
    with hal.create_device() as device, device.create_channel() as ch:
        passed = 0
        for name, fn in SCENARIOS:
            if only and name not in only:
                continue
            MPI.COMM_WORLD.Barrier()
            fn(device, ch)
            passed += 1
            if ch.rank == 0:
                print(f"OK {name}", flush=True)
        MPI.COMM_WORLD.Barrier()
        assert MPI.Query_thread() == MPI.THREAD_MULTIPLE
        if ch.rank == 0:
            print(f"PASSED {passed}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
