"""device.profile(): GPU-timestamped events per dispatch and transfer, the host-clock
fallback, the Chrome trace, and the guarantee that the normal encode path is untouched."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import WAIT, device_without

import hal
from hal.core.builtins import shader_path
from hal.core.plan import ComputePass, CopyBuffer
from hal.runtime.encoder import Program

GPU_KINDS = {"dispatch", "transfer", "compute_pass"}


def _expected_names(cb: hal.CommandBuffer) -> list[str]:
    """The commands of ``cb``'s plan, in order, as the profiler names them."""
    assert cb.plan is not None
    names: list[str] = []
    for step in cb.plan.steps:
        if isinstance(step, ComputePass):
            names += [d.label for d in step.dispatches]
        elif isinstance(step, CopyBuffer):
            names.append("copy_buffer_to_buffer")
        else:
            names.append("clear_buffer")
    return names


def _record_mixed(device: hal.Device) -> tuple[hal.CommandBuffer, hal.Buffer]:
    """A command buffer with dispatches and transfers: a zero fill, a copy, two dispatches."""
    ops = device.create_executable(shader_path("elementwise.wgsl"))
    x = np.arange(1024, dtype=np.float32)
    src = device.buffer_from_numpy(x)
    dst = device.allocate_buffer(x.nbytes)
    spare = device.allocate_buffer(1 << 16)
    with device.record(hal.CommandBufferMode.DEFAULT) as cb:
        cb.fill_buffer(spare, 0, 1 << 16, 0)
        cb.copy_buffer(src, 0, spare, 0, x.nbytes)
        cb.execution_barrier()
        for _ in range(2):
            cb.dispatch(ops, "scale", (16, 1, 1), constants=[1024, 2.0, 1.0], bindings=[src, dst])
            cb.execution_barrier()
    return cb, dst


def _run(device: hal.Device, cb: hal.CommandBuffer, value: int = 1) -> None:
    done = device.create_semaphore()
    device.queue_execute(cb, signal=[(done, value)])
    done.wait(value, timeout=WAIT)


@pytest.fixture(scope="module")
def device_no_timestamps() -> Iterator[hal.Device]:
    """A device that pretends the adapter lacks timestamp queries."""
    dev = device_without("timestamp-query")
    assert "timestamp-query" not in dev.features
    with dev:
        yield dev


def test_gpu_events_per_dispatch_and_transfer(device: hal.Device) -> None:
    if "timestamp-query-inside-passes" not in device.features:
        pytest.skip("the adapter cannot time dispatches one by one")
    cb, dst = _record_mixed(device)
    with device.profile() as profile:
        _run(device, cb)
        _run(device, cb, 1)
    events = profile.events
    expected = _expected_names(cb)
    # The dispatches are named "<executable label>:scale": the label is the file's stem, or
    # that of an identical source some earlier test (same worker) compiled first.
    assert sum(name.endswith(":scale") for name in expected) == 2, expected
    for submission in (0, 1):
        spans = [e for e in events if e.submission == submission and e.kind in GPU_KINDS]
        assert [e.name for e in spans] == expected  # GPU order is program order
        assert all(e.clock == "gpu" and e.command_buffer == 0 for e in spans)
        assert all(e.end_ns >= e.start_ns for e in spans)
        assert all(a.end_ns <= b.start_ns for a, b in itertools.pairwise(spans))
        assert sum(e.duration_ns for e in spans) > 0
        whole = [e for e in events if e.submission == submission and e.kind == "command_buffer"]
        assert len(whole) == 1
        assert whole[0].start_ns == spans[0].start_ns and whole[0].end_ns == spans[-1].end_ns
        assert whole[0].args["wgpu_submission"] > 0
    first = next(e for e in events if e.submission == 0 and e.kind == "command_buffer")
    second = next(e for e in events if e.submission == 1 and e.kind == "command_buffer")
    assert first.end_ns <= second.start_ns  # submissions run in order on the queue
    scale = next(e for e in events if e.name.endswith(":scale"))
    assert scale.args["workgroups"] == [16, 1, 1] and scale.args["builtin"] is False
    np.testing.assert_array_equal(
        dst.to_numpy(np.float32), 2 * np.arange(1024, dtype=np.float32) + 1
    )


def test_transfers_and_queue_operations_are_named(device: hal.Device) -> None:
    buf = device.allocate_buffer(1 << 16)
    other = device.allocate_buffer(1 << 16)
    with device.profile() as profile:
        device.queue_fill(buf, 0, None, 0, 4)
        device.queue_copy(buf, 0, other, 0, None)
        device.transfer_h2d(np.ones(1000, np.uint8), buf, 3)
        assert device.transfer_d2h(buf, 3, 1000) == bytes([1]) * 1000
    names = [e.name for e in profile.events]
    assert "host_write" in names and "host_read" in names
    if "timestamp-query-inside-encoders" in device.features:
        assert {"clear_buffer", "copy_buffer_to_buffer"} & set(names) or any(
            n.startswith("builtin.") for n in names
        )
    host = [e for e in profile.events if e.kind == "host_transfer"]
    assert all(e.clock == "host" and e.args["bytes"] == 1000 for e in host)


def test_host_clock_fallback_forced(device: hal.Device) -> None:
    cb, _ = _record_mixed(device)
    with device.profile(clock="host") as profile:
        _run(device, cb)
    events = profile.events
    assert len(events) == 1
    (event,) = events
    assert event.clock == "host" and event.kind == "submission" and event.name == "queue_execute"
    assert event.end_ns > event.start_ns
    assert event.args["commands"] == _expected_names(cb)


def test_host_clock_without_timestamp_features(device_no_timestamps: hal.Device) -> None:
    device = device_no_timestamps
    cb, _ = _record_mixed(device)
    with device.profile() as profile:
        assert not profile.gpu
        _run(device, cb)
    assert [e.clock for e in profile.events] == ["host"]
    with pytest.raises(hal.UnimplementedError):
        device.profile(clock="gpu")


def test_chrome_trace_schema(device: hal.Device, tmp_path: Path) -> None:
    cb, _ = _record_mixed(device)
    with device.profile() as profile:
        _run(device, cb)
        device.transfer_d2h(device.allocate_buffer(64))
    path = tmp_path / "trace.json"
    profile.save_chrome_trace(path)
    trace = json.loads(path.read_text())
    _check_trace_event_format(trace)
    complete = [e for e in trace["traceEvents"] if e["ph"] == "X"]
    assert len(complete) == len(profile.events)
    assert {e["name"] for e in complete} >= {"host_read"}


def _check_trace_event_format(trace: Any) -> None:
    """The subset of the Trace Event Format that chrome://tracing and Perfetto need."""
    assert isinstance(trace, dict) and isinstance(trace["traceEvents"], list)
    assert trace.get("displayTimeUnit", "ms") in ("ms", "ns")
    for event in trace["traceEvents"]:
        assert isinstance(event["name"], str) and event["name"]
        assert isinstance(event["pid"], int) and isinstance(event["tid"], int)
        assert isinstance(event.get("args", {}), dict)
        if event["ph"] == "M":
            assert event["name"] in ("process_name", "thread_name")
            assert isinstance(event["args"]["name"], str)
            continue
        assert event["ph"] == "X"
        assert isinstance(event["ts"], (int, float)) and event["ts"] >= 0
        assert isinstance(event["dur"], (int, float)) and event["dur"] >= 0
        json.dumps(event["args"])  # plain JSON values only


def test_profile_misuse(device: hal.Device) -> None:
    with pytest.raises(hal.InvalidArgumentError):
        device.profile(clock="wall")
    with device.profile(), pytest.raises(hal.FailedPreconditionError):
        device.profile().__enter__()
    assert device._profiler.active is None


def test_held_back_work_is_reported_once_it_ran(device: hal.Device) -> None:
    cb, _ = _record_mixed(device)
    gate, done = device.create_semaphore(), device.create_semaphore()
    with device.profile() as profile:
        device.queue_execute(cb, wait=[(gate, 1)], signal=[(done, 1)])
    assert profile.events == []  # held back: nothing ran yet, and reading does not hang
    gate.signal(1)
    done.wait(1, timeout=WAIT)
    assert profile.events


def test_normal_encode_path_is_unchanged(
    device: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Outside a profile the queue never calls the profiled encoder."""

    def fail(*args: Any, **kwargs: Any) -> Any:
        raise AssertionError("encode_profiled called without an active profile")

    monkeypatch.setattr(Program, "encode_profiled", fail)
    cb, dst = _record_mixed(device)
    _run(device, cb)
    assert device._profiler.active is None
    assert dst.to_numpy(np.float32)[1] == 3.0
