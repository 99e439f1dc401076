"""Completion strategies on raw wgpu-native (issue 10, item 5): what a round trip costs when
the waiting thread blocks in wgpuDevicePoll itself, when a tracker thread polls and hands over
through a condition variable, when both poll, and with OnSubmittedWorkDone + non-blocking polls.

    python3 benchmarks/wait_strategies.py      # prints medians in µs
"""

from __future__ import annotations

import statistics
import threading
import time
from typing import Any

import wgpu
from wgpu.backends.wgpu_native._ffi import ffi, lib

adapter = wgpu.gpu.request_adapter_sync(power_preference="high-performance")
device = adapter.request_device_sync()
buffer = device.create_buffer(
    size=1 << 20, usage=wgpu.BufferUsage.COPY_DST | wgpu.BufferUsage.COPY_SRC
)


def submit() -> int:
    encoder = device.create_command_encoder()
    encoder.clear_buffer(buffer, 0, 4)
    handles = ffi.new("WGPUCommandBuffer[]", [encoder.finish()._internal])
    return int(lib.wgpuQueueSubmitForIndex(device.queue._internal, 1, handles))


def poll(index: int) -> None:
    lib.wgpuDevicePoll(device._internal, True, ffi.new("WGPUSubmissionIndex*", index))


cond = threading.Condition()
state: dict[str, Any] = {"ticket": 0, "done": 0, "stop": False}


def tracker() -> None:
    while True:
        with cond:
            while state["ticket"] <= state["done"] and not state["stop"]:
                cond.wait()
            if state["stop"]:
                return
            ticket = state["ticket"]
        poll(ticket)
        with cond:
            state["done"] = max(state["done"], ticket)
            cond.notify_all()


def hand(index: int) -> None:
    with cond:
        state["ticket"] = index
        cond.notify_all()


def blocking() -> None:
    poll(submit())


def tracker_hop() -> None:
    index = submit()
    hand(index)
    with cond:
        while state["done"] < index:
            cond.wait(1.0)


def double_poll() -> None:
    index = submit()
    hand(index)
    poll(index)
    with cond:
        while state["done"] < index:
            cond.wait(1.0)


done = {"n": 0}


@ffi.callback("void(WGPUQueueWorkDoneStatus, WGPUStringView, void *, void *)")
def work_done(status: int, message: Any, user1: Any, user2: Any) -> None:
    done["n"] += 1


info = ffi.new("WGPUQueueWorkDoneCallbackInfo *")
info.mode = lib.WGPUCallbackMode_AllowProcessEvents
info.callback = work_done


def work_done_spin() -> None:
    submit()
    seen = done["n"]
    lib.wgpuQueueOnSubmittedWorkDone(device.queue._internal, info[0])
    while done["n"] == seen:
        lib.wgpuDevicePoll(device._internal, False, ffi.NULL)


def work_done_spin_tracker() -> None:
    """As work_done_spin while the tracker also blocks in its poll (what a runtime has)."""
    index = submit()
    hand(index)
    seen = done["n"]
    lib.wgpuQueueOnSubmittedWorkDone(device.queue._internal, info[0])
    while done["n"] == seen and state["done"] < index:
        lib.wgpuDevicePoll(device._internal, False, ffi.NULL)


def spin_sleep0() -> None:
    index = submit()
    hand(index)
    while state["done"] < index:
        time.sleep(0)


def main() -> None:
    thread = threading.Thread(target=tracker, daemon=True)
    thread.start()
    cases = (
        blocking,
        tracker_hop,
        double_poll,
        work_done_spin,
        work_done_spin_tracker,
        spin_sleep0,
    )
    results: dict[str, list[float]] = {c.__name__: [] for c in cases}
    for _ in range(30):
        for case in cases:
            for _ in range(3):
                case()
            samples = []
            for _ in range(20):
                start = time.perf_counter()
                case()
                samples.append(time.perf_counter() - start)
            results[case.__name__].append(statistics.median(samples))
    for name, values in results.items():
        print(f"{name:16s} {statistics.median(values) * 1e6:8.1f} us")
    state["stop"] = True
    with cond:
        cond.notify_all()


if __name__ == "__main__":
    main()
