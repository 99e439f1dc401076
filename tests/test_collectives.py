"""Channels and collectives: record-time checks, the split into GPU parts and host steps, a
1-rank channel (MPI.COMM_SELF) doing every kind with real bytes, timeouts, and — through
``mpiexec -n 2`` and ``-n 3`` of tests/mpi_collectives_worker.py — every kind × reduction ×
dtype across ranks, compared with numpy on every rank.

Without mpi4py the MPI tests skip (saying so) and ``create_channel`` must raise
UnavailableError naming the ``mpi`` extra.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import WAIT, submit_and_wait
from mpi_launch import find_launcher

import hal
from hal import CollectiveKind as K
from hal import CollectiveReduction as R
from hal.core.collectives import GpuPart, HostStep, split_segments
from hal.core.segments import BarrierSegment, CollectiveSegment, FillSegment

REPO = Path(__file__).resolve().parent.parent
WORKER = REPO / "tests" / "mpi_collectives_worker.py"

try:
    from mpi4py import MPI
except ImportError:  # pragma: no cover - the `mpi` extra is missing
    MPI = None

needs_mpi = pytest.mark.skipif(MPI is None, reason="mpi4py is not installed (the `mpi` extra)")


@pytest.fixture(scope="module")
def channel(device: hal.Device) -> Any:
    if MPI is None:
        pytest.skip("mpi4py is not installed (the `mpi` extra)")
    with device.create_channel(group=MPI.COMM_SELF) as ch:
        yield ch


class _Comm:
    """A stand-in communicator of ``size`` ranks: record-time checks only read its shape."""

    def __init__(self, rank: int, size: int) -> None:
        self._rank, self._size = rank, size

    def Get_rank(self) -> int:
        return self._rank

    def Get_size(self) -> int:
        return self._size


def wide(device: hal.Device, rank: int = 1, size: int = 4) -> hal.Channel:
    """A channel of ``size`` ranks for record-time checks (never submitted)."""
    return hal.Channel(device, _Comm(rank, size), None)


# -- record-time checks ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kind", "send_bytes", "recv_bytes"),
    [
        (K.ALL_GATHER, 12, 48),
        (K.ALL_REDUCE, 12, 12),
        (K.ALL_TO_ALL, 48, 48),
        (K.REDUCE_SCATTER, 48, 12),
        (K.BROADCAST, None, 12),  # rank 1 is not the root 0: no send side
        (K.SEND, 12, None),
        (K.RECV, None, 12),
    ],
)
def test_sizes_follow_mpi(
    device: hal.Device, kind: K, send_bytes: int | None, recv_bytes: int | None
) -> None:
    """3 int32 elements on a 4-rank channel: exactly the MPI sizes pass, a byte less raises
    OutOfRangeError naming the side; a rejected collective records nothing."""
    ch = wide(device)
    reduction = R.SUM if kind in (K.ALL_REDUCE, K.REDUCE_SCATTER) else None
    big = device.allocate_buffer(256)
    cb = device.create_command_buffer()
    cb.begin()
    for side, need in (("send", send_bytes), ("recv", recv_bytes)):
        if need is None:
            continue
        short = device.allocate_buffer(need - 1)
        buffers = {"send": big.subspan(0, 128), "recv": big.subspan(128, 128), side: short}
        with pytest.raises(hal.OutOfRangeError, match=f"collective: {side} range"):
            cb.collective(
                ch,
                kind,
                buffers["send"],
                buffers["recv"],
                3,
                element_type="int32",
                reduction=reduction,
                param=0,
            )
        assert cb.segments == ()
    exact = {
        "send": None if send_bytes is None else device.allocate_buffer(send_bytes),
        "recv": None if recv_bytes is None else device.allocate_buffer(recv_bytes),
    }
    cb.collective(
        ch, kind, exact["send"], exact["recv"], 3, element_type="int32", reduction=reduction
    )
    (segment,) = cb.segments
    assert isinstance(segment, CollectiveSegment) and segment.kind is kind
    for side, need in (("send", send_bytes), ("recv", recv_bytes)):
        ref = getattr(segment, side)
        assert (None if ref is None else ref.length) == need


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"kind": K.ALL_REDUCE}, "ALL_REDUCE needs a reduction"),
        ({"kind": K.REDUCE_SCATTER}, "REDUCE_SCATTER needs a reduction"),
        ({"kind": K.ALL_GATHER, "reduction": R.SUM}, "ALL_GATHER takes no reduction"),
        ({"kind": K.ALL_REDUCE, "reduction": R.AVERAGE, "element_type": "int32"}, "AVERAGE"),
        ({"kind": K.ALL_REDUCE, "reduction": 9}, "not a CollectiveReduction"),
        ({"kind": 42}, "not a CollectiveKind"),
        ({"kind": K.ALL_GATHER, "element_type": "complex64"}, "complex64 is not supported"),
        ({"kind": K.ALL_GATHER, "element_type": "bool"}, "bool is not supported"),
        ({"kind": K.ALL_GATHER, "element_type": "nonsense"}, "element_type"),
        ({"kind": K.BROADCAST, "param": 4}, "param 4 .root rank of BROADCAST. is outside"),
        ({"kind": K.SEND, "param": 7}, "param 7 .peer rank of SEND. is outside"),
        ({"kind": K.ALL_GATHER, "element_count": -1}, "element_count"),
    ],
)
def test_bad_arguments(device: hal.Device, kwargs: dict[str, Any], message: str) -> None:
    ch = wide(device)
    buf = device.allocate_buffer(1024)
    args: dict[str, Any] = {"element_type": "float32", "param": 0, **kwargs}
    kind = args.pop("kind")
    count = args.pop("element_count", 2)
    with device.record() as cb:
        with pytest.raises(hal.InvalidArgumentError, match=message):
            cb.collective(ch, kind, buf.subspan(0, 512), buf.subspan(512), count, **args)
        assert cb.segments == ()


def test_channel_and_sides(device: hal.Device) -> None:
    ch = wide(device, rank=0)
    buf = device.allocate_buffer(64)
    with device.record() as cb:
        with pytest.raises(hal.InvalidArgumentError, match=r"channel .* is not a hal\.Channel"):
            cb.collective(object(), K.ALL_GATHER, buf, buf, 1, element_type="int8")
        with pytest.raises(hal.InvalidArgumentError, match="ALL_REDUCE needs a send buffer"):
            cb.collective(ch, K.ALL_REDUCE, None, buf, 1, element_type="int8", reduction=R.SUM)
        with pytest.raises(hal.InvalidArgumentError, match="BROADCAST needs a send buffer"):
            cb.collective(ch, K.BROADCAST, None, buf, 1, element_type="int8", param=0)
        with pytest.raises(hal.InvalidArgumentError, match="RECV needs a recv buffer"):
            cb.collective(ch, K.RECV, buf, None, 1, element_type="int8", param=1)
        assert cb.segments == ()


def test_aliasing(device: hal.Device) -> None:
    """send and recv may be the same range only for ALL_REDUCE."""
    ch = wide(device, rank=0, size=1)
    buf = device.allocate_buffer(64)
    with device.record(binding_capacity=1) as cb:
        cb.collective(ch, K.ALL_REDUCE, buf, buf, 4, element_type="int32", reduction=R.MAXIMUM)
        with pytest.raises(hal.InvalidArgumentError, match="overlap; only ALL_REDUCE"):
            cb.collective(
                ch,
                K.ALL_REDUCE,
                buf,
                buf.subspan(4),
                4,
                element_type="int32",
                reduction=R.SUM,
            )
        with pytest.raises(hal.InvalidArgumentError, match="overlap"):
            cb.collective(ch, K.ALL_GATHER, buf, buf, 4, element_type="int32")
        with pytest.raises(hal.InvalidArgumentError, match="overlap"):
            cb.collective(
                ch,
                K.ALL_GATHER,
                hal.BufferRef(buf, 0, 16),
                hal.BufferRef(buf, 8, 16),
                4,
                element_type="int32",
            )
        with pytest.raises(hal.InvalidArgumentError, match="overlap"):
            cb.collective(
                ch, K.ALL_GATHER, hal.SlotRef(0), hal.SlotRef(0, 8), 16, element_type="int8"
            )
        cb.collective(
            ch, K.ALL_GATHER, buf.subspan(0, 16), buf.subspan(16, 16), 4, element_type="int32"
        )
    assert cb.stats is not None and cb.stats.collectives == 2


def test_permissions_state_and_closed_channel(device: hal.Device) -> None:
    ch = wide(device, rank=0, size=1)
    no_source = device.allocate_buffer(16, usage=hal.BufferUsage.TRANSFER_TARGET)
    ok = device.allocate_buffer(16)
    cb = device.create_command_buffer()
    with pytest.raises(hal.FailedPreconditionError, match="not in a recording state"):
        cb.collective(ch, K.ALL_GATHER, ok, ok, 1, element_type="int8")
    cb.begin()
    with pytest.raises(hal.PermissionDeniedError, match="send"):
        cb.collective(ch, K.ALL_GATHER, no_source, ok, 4, element_type="int8")
    dispatch_only = device.create_command_buffer(categories=hal.CommandCategory.TRANSFER)
    dispatch_only.begin()
    with pytest.raises(hal.FailedPreconditionError, match="category"):
        dispatch_only.collective(ch, K.ALL_GATHER, ok, no_source, 4, element_type="int8")
    ch._closed = True  # a stand-in communicator has nothing to free
    with pytest.raises(hal.FailedPreconditionError, match="channel was closed"):
        cb.collective(ch, K.ALL_GATHER, ok, no_source, 4, element_type="int8")
    assert cb.segments == ()


# -- the split ------------------------------------------------------------------------------


def test_split_follows_barrier_regions(device: hal.Device) -> None:
    """A region's collectives form one host step; its other commands recorded before the first
    collective run before it, those after it after; barriers separate host steps."""
    ch = wide(device, rank=0, size=1)
    a, b, c = (device.allocate_buffer(16) for _ in range(3))
    with device.record() as cb:
        cb.fill_buffer(a, 0, 16, 1)  # before: GPU part 0
        cb.collective(ch, K.ALL_GATHER, a, b, 16, element_type="uint8")
        cb.fill_buffer(c, 0, 16, 2)  # after the first collective: GPU part 1
        cb.collective(ch, K.ALL_REDUCE, c, c, 4, element_type="int32", reduction=R.SUM)
        cb.execution_barrier()
        cb.collective(ch, K.BROADCAST, b, a, 16, element_type="uint8")  # its own host step
        cb.execution_barrier()
        cb.copy_buffer(a, 0, b, 0, 16)
    parts = split_segments(cb.segments)
    kinds = [
        ("gpu", len(p.segments)) if isinstance(p, GpuPart) else tuple(x.kind for x in p.collectives)
        for p in parts
    ]
    assert kinds == [
        ("gpu", 1),
        (K.ALL_GATHER, K.ALL_REDUCE),
        ("gpu", 2),  # the fill after the first collective, and the barrier
        (K.BROADCAST,),
        ("gpu", 2),
    ]
    assert isinstance(parts[2], GpuPart) and isinstance(parts[2].segments[0], FillSegment)
    assert isinstance(parts[2].segments[1], BarrierSegment)
    stats = cb.stats
    assert stats is not None
    assert (stats.gpu_parts, stats.host_steps, stats.collectives) == (3, 2, 3)
    assert (stats.native_copies, stats.segments) == (1, 8)
    assert stats.native_clears + stats.dispatches == 2  # the two fills, however lowered
    dump = cb.dump()
    assert "part 1: host step (2 collectives)" in dump
    assert "collective all_reduce sum 4xint32" in dump
    assert "split: 3 GPU parts, 2 host steps, 3 collectives" in dump
    with pytest.raises(hal.InvalidArgumentError, match="split_segments first"):
        hal.lower(cb.segments, device.caps)


def test_split_keeps_collective_order_and_drops_empty_parts() -> None:
    segs = [
        CollectiveSegment(None, K.SEND, None, np.dtype("int8"), i, 0, None, None) for i in range(3)
    ]
    barrier = BarrierSegment(0, 0, 0)
    parts = split_segments([barrier, segs[0], segs[1], barrier, barrier, segs[2], barrier])
    assert parts == (HostStep((segs[0], segs[1])), HostStep((segs[2],)))


# -- one rank, real bytes -------------------------------------------------------------------


def _put(device: hal.Device, values: np.ndarray) -> hal.Buffer:
    return device.buffer_from_numpy(values)


@needs_mpi
def test_every_kind_on_one_rank(device: hal.Device, channel: hal.Channel) -> None:
    """On COMM_SELF each kind moves the bytes (reductions of one rank are the identity,
    AVERAGE divides by 1), inside one command buffer with GPU work on both sides."""
    values = np.array([3, -1, 7, 2, 9], np.float32)
    sentinel = np.full(5, -5, np.float32)
    send = _put(device, values)
    outs = {name: _put(device, sentinel) for name in ("gather", "a2a", "bcast", "scatter", "recv")}
    reduced = {r: _put(device, sentinel) for r in R}
    reduced_root = _put(device, sentinel)
    copy = device.allocate_buffer(20)
    with device.record() as cb:
        cb.fill_buffer(send, 0, 4, np.float32(4).view(np.uint32).item())  # values[0] = 4
        cb.execution_barrier()
        cb.collective(channel, K.ALL_GATHER, send, outs["gather"], 5, element_type="float32")
        cb.collective(channel, K.ALL_TO_ALL, send, outs["a2a"], 5, element_type="float32")
        cb.collective(channel, K.BROADCAST, send, outs["bcast"], 5, element_type="float32")
        cb.collective(
            channel,
            K.REDUCE_SCATTER,
            send,
            outs["scatter"],
            5,
            element_type="float32",
            reduction=R.MINIMUM,
        )
        for r, out in reduced.items():
            cb.collective(channel, K.ALL_REDUCE, send, out, 5, element_type="float32", reduction=r)
        cb.collective(
            channel, K.REDUCE, send, reduced_root, 5, element_type="float32", reduction=R.PRODUCT
        )
        # Send to itself and receive in the same region: posted together, no deadlock.
        cb.collective(channel, K.SEND, send, None, 5, element_type="float32", param=0)
        cb.collective(channel, K.RECV, None, outs["recv"], 5, element_type="float32", param=0)
        cb.execution_barrier()
        cb.copy_buffer(outs["recv"], 0, copy, 0, 20)
    submit_and_wait(device, cb)
    want = values.copy()
    want[0] = 4
    for name, out in (*outs.items(), *((r.name, b) for r, b in reduced.items())):
        np.testing.assert_array_equal(out.to_numpy(np.float32), want, err_msg=name)
    np.testing.assert_array_equal(reduced_root.to_numpy(np.float32), want)
    np.testing.assert_array_equal(copy.to_numpy(np.float32), want)


@needs_mpi
@pytest.mark.parametrize("dtype", ["int8", "uint16", "int64", "uint64", "float16", "float64"])
def test_dtypes_in_place_one_rank(device: hal.Device, channel: hal.Channel, dtype: str) -> None:
    values = (np.arange(7) * 3 + 1).astype(dtype)
    if dtype == "uint64":
        values += np.uint64(1 << 62)
    buf = device.buffer_from_numpy(values)
    sem = device.create_semaphore()
    device.queue_collective(
        channel,
        K.ALL_REDUCE,
        buf,
        buf,
        7,
        element_type=dtype,
        reduction=R.SUM,
        signal=[(sem, 1)],
    )
    sem.wait(1, timeout=WAIT)
    np.testing.assert_array_equal(buf.to_numpy(np.dtype(dtype)), values)


@needs_mpi
def test_slots_on_one_rank(device: hal.Device, channel: hal.Channel) -> None:
    cb = device.create_command_buffer(hal.CommandBufferMode.DEFAULT, binding_capacity=2)
    cb.begin()
    cb.collective(channel, K.ALL_GATHER, hal.SlotRef(0, 2), hal.SlotRef(1), 3, element_type="uint8")
    cb.end()
    assert cb.plan is not None  # no GPU part uses slots: described before a submission
    for seed in (1, 2):
        src = device.buffer_from_numpy(np.arange(8, dtype=np.uint8) * seed)
        dst = device.buffer_from_numpy(np.full(5, 0xEE, np.uint8))
        submit_and_wait(device, cb, [src, dst])
        np.testing.assert_array_equal(dst.to_numpy(), [2 * seed, 3 * seed, 4 * seed, 0xEE, 0xEE])
    small = device.allocate_buffer(2)
    with pytest.raises(hal.OutOfRangeError, match="slot 1"):
        device.queue_execute(cb, binding_table=[src, small])
    overlap = device.allocate_buffer(16)
    with pytest.raises(hal.InvalidArgumentError, match="overlap"):
        device.queue_execute(cb, binding_table=[overlap, hal.BufferRef(overlap, 3, 3)])


@needs_mpi
def test_failed_wait_fails_the_chain_and_later_collectives_run(
    device: hal.Device, channel: hal.Channel
) -> None:
    """A collective whose wait fails never reaches MPI; the channel's next one still runs."""
    gate, failed, ok = (device.create_semaphore() for _ in range(3))
    buf = device.buffer_from_numpy(np.arange(4, dtype=np.int32))
    out = device.allocate_buffer(16)
    device.queue_collective(
        channel,
        K.ALL_GATHER,
        buf,
        out,
        4,
        element_type="int32",
        wait=[(gate, 1)],
        signal=[(failed, 1)],
    )
    device.queue_collective(
        channel, K.BROADCAST, buf, out, 4, element_type="int32", signal=[(ok, 1)]
    )
    gate.fail(RuntimeError("nope"))
    with pytest.raises(hal.AbortedError, match="nope"):
        failed.wait(1, timeout=WAIT)
    ok.wait(1, timeout=WAIT)
    np.testing.assert_array_equal(out.to_numpy(np.int32), np.arange(4))


@needs_mpi
def test_timeout_breaks_the_channel(device: hal.Device, monkeypatch: pytest.MonkeyPatch) -> None:
    """A RECV nobody sends: DeadlineExceededError within HAL_COLLECTIVE_TIMEOUT, then every
    use of the channel raises UnavailableError."""
    monkeypatch.setenv("HAL_COLLECTIVE_TIMEOUT", "0.3")
    ch = device.create_channel(group=MPI.COMM_SELF)
    buf = device.allocate_buffer(8)
    sem = device.create_semaphore()
    device.queue_collective(ch, K.RECV, None, buf, 2, element_type="int32", signal=[(sem, 1)])
    with pytest.raises(hal.AbortedError) as raised:
        sem.wait(1, timeout=WAIT)
    assert isinstance(raised.value.__cause__, hal.DeadlineExceededError)
    assert "HAL_COLLECTIVE_TIMEOUT" in str(raised.value.__cause__)
    with pytest.raises(hal.UnavailableError, match="unusable"):
        device.queue_collective(ch, K.SEND, buf, None, 2, element_type="int32")
    with pytest.raises(hal.UnavailableError):
        ch.split(0, 0)
    ch.close()
    with pytest.raises(hal.FailedPreconditionError, match="closed"):
        device.queue_collective(ch, K.SEND, buf, None, 2, element_type="int32")


@needs_mpi
def test_bad_timeout_setting(
    device: hal.Device, channel: hal.Channel, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HAL_COLLECTIVE_TIMEOUT", "soon")
    buf = device.allocate_buffer(4)
    sem = device.create_semaphore()
    out = device.allocate_buffer(4)
    device.queue_collective(
        channel, K.BROADCAST, buf, out, 1, element_type="int32", signal=[(sem, 1)]
    )
    with pytest.raises(hal.AbortedError, match="HAL_COLLECTIVE_TIMEOUT='soon'"):
        sem.wait(1, timeout=WAIT)


@needs_mpi
def test_collective_abort_calls_mpi_abort() -> None:
    """HAL_COLLECTIVE_ABORT=1: a timeout aborts the job (singleton MPI, no mpiexec)."""
    code = textwrap.dedent(
        """
        import hal
        from mpi4py import MPI
        with hal.create_device() as d:
            ch = d.create_channel(group=MPI.COMM_SELF)
            s = d.create_semaphore()
            d.queue_collective(ch, hal.CollectiveKind.RECV, None, d.allocate_buffer(4), 1,
                               element_type="int32", signal=[(s, 1)])
            try:
                s.wait(1, timeout=30)
            except hal.AbortedError:
                print("NOT ABORTED")
        """
    )
    env = {
        **os.environ,
        "HAL_COLLECTIVE_TIMEOUT": "0.3",
        "HAL_COLLECTIVE_ABORT": "1",
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
    }
    done = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=WAIT
    )
    assert done.returncode != 0, done
    assert "NOT ABORTED" not in done.stdout
    assert "HAL_COLLECTIVE_ABORT=1" in done.stderr or "Abort" in done.stderr, done.stderr


def test_without_mpi4py(device: hal.Device, monkeypatch: pytest.MonkeyPatch) -> None:
    """mpi4py hidden: UnavailableError naming the `mpi` extra."""
    monkeypatch.setitem(sys.modules, "mpi4py", None)
    monkeypatch.setitem(sys.modules, "mpi4py.MPI", None)
    with pytest.raises(
        hal.UnavailableError, match=r"create_channel: mpi4py is not installed.*\.\[mpi\]"
    ):
        device.create_channel()


@needs_mpi
def test_bad_group(device: hal.Device) -> None:
    with pytest.raises(hal.InvalidArgumentError, match="intracommunicator"):
        device.create_channel(group="world")


@needs_mpi
def test_channel_basics(device: hal.Device) -> None:
    with device.create_channel(group=MPI.COMM_SELF) as ch:
        assert (ch.rank, ch.count) == (0, 1)
        assert ch.comm != MPI.COMM_SELF  # a duplicate
        with ch.split(0, 0) as sub:
            assert (sub.rank, sub.count) == (0, 1)
    closed = r"Channel\.split: the channel was closed"
    with pytest.raises(hal.FailedPreconditionError, match=closed):
        ch.split(0, 0)
    ch.close()  # idempotent


# -- several ranks ----------------------------------------------------------------------------


def run_mpi(ranks: int, *argv: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """``mpiexec -n ranks python argv...`` with the launcher of mpi4py's own MPI family
    (tests/mpi_launch.py), bounded by the launcher's timeout (hydra's MPIEXEC_TIMEOUT, Open
    MPI's ``--timeout``) and our own; skips, saying why, when MPI or its launcher is missing."""
    if MPI is None:
        pytest.skip("mpi4py is not installed (the `mpi` extra)")
    launcher = find_launcher(MPI.Get_library_version())
    if isinstance(launcher, str):
        pytest.skip(launcher)
    env = {
        **os.environ,
        **dict(launcher.env),
        "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")]),
        "MPIEXEC_TIMEOUT": str(int(timeout)),
    }
    env.pop("HAL_COLLECTIVE_TIMEOUT", None)
    return subprocess.run(
        [*launcher.argv(ranks, timeout), sys.executable, *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout + 30,
    )


# `make fuzz` adds more ranks (HAL_MPI_RANKS, e.g. "2,3,4,5"): 2 cores keep make test at 2 and 3.
MPI_RANKS = [int(n) for n in os.environ.get("HAL_MPI_RANKS", "2,3").split(",") if n.strip()]


@needs_mpi
@pytest.mark.parametrize("ranks", MPI_RANKS)
def test_mpiexec(ranks: int) -> None:
    """Every scenario of tests/mpi_collectives_worker.py on ``ranks`` processes."""
    done = run_mpi(ranks, str(WORKER))
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.split()
    assert "PASSED" in lines and lines[lines.index("PASSED") + 1] == "7", done.stdout


# -- the data-parallel example --------------------------------------------------------------


@needs_mpi
def test_data_parallel_example_one_rank(device: hal.Device, channel: hal.Channel) -> None:
    """One rank: training equals numpy's full-batch training, and the weights did move (so
    the comparison means something)."""
    from hal.examples import mlp_data_parallel as dp

    size = (12, 9, 16, 5)
    weights, _ = dp.train(device, channel, size, steps=4, seed=3)
    x, labels, *initial = dp.data(size, seed=3)
    want = dp.reference_training(x, labels, initial, 4, dp.LEARNING_RATE)
    for got, expected, start in zip(weights, want, initial, strict=True):
        np.testing.assert_allclose(got, expected, rtol=dp.RTOL, atol=dp.ATOL)
        assert np.max(np.abs(expected - start)) > 1e-3
    with pytest.raises(hal.InvalidArgumentError, match="at least 2"):
        dp.train(device, channel, size, steps=1)


@needs_mpi
def test_data_parallel_example_mpiexec() -> None:
    """``python -m hal example mlp_data_parallel`` under ``mpiexec -n 2``: each rank trains on
    half the batch and ends with the weights of full-batch training (checked by the example
    against numpy on every rank), where one shard alone would not."""
    from hal.examples import mlp_data_parallel as dp

    size = (16, 12, 20, 4)
    x, labels, *initial = dp.data(size, seed=0)
    full = dp.reference_training(x, labels, initial, 4, dp.LEARNING_RATE)
    half = dp.reference_training(x[:8], labels[:8], initial, 4, dp.LEARNING_RATE)
    assert max(np.max(np.abs(f - h)) for f, h in zip(full, half, strict=True)) > 10 * dp.ATOL
    done = run_mpi(
        2,
        "-m",
        "hal",
        "example",
        "mlp_data_parallel",
        "--size",
        "16x12x20x4",
        "--repeat",
        "3",
    )
    assert done.returncode == 0, done.stdout + done.stderr
    # Found anywhere, not per line: mpiexec forwards each rank's output in chunks, and one
    # rank's line can run into the other's (its newline forwarded later).
    found = re.findall(
        r"mlp_data_parallel: (rank \d of 2), .*?vs numpy: ([A-Z]+)", done.stdout, re.S
    )
    assert sorted(found) == [("rank 0 of 2", "OK"), ("rank 1 of 2", "OK")], done.stdout
