"""The few wgpu-native entry points hal needs that wgpu-py 0.32.0 does not expose.

``wgpuQueueSubmitForIndex`` returns the submission index and ``wgpuDevicePoll`` reports
whether the queue is empty and can wait for one index. hal uses them to detect completion
precisely without ``queue.on_submitted_work_done*`` (broken in 0.32.0). Everything here goes
through wgpu-py's own cffi handles; where they are missing, the public calls are used.
"""

from __future__ import annotations

from typing import Any

__all__ = ["poll", "submit"]

try:
    from wgpu.backends.wgpu_native._ffi import ffi as _ffi
    from wgpu.backends.wgpu_native._ffi import lib as _lib

    _HAVE_INDEX = hasattr(_lib, "wgpuQueueSubmitForIndex") and hasattr(_lib, "wgpuDevicePoll")
except ImportError:  # pragma: no cover - other wgpu backends
    _HAVE_INDEX = False


def submit(queue: Any, command_buffers: list[Any]) -> int:
    """Submit ``command_buffers`` on ``queue``; the submission index (0 if unknown)."""
    if not _HAVE_INDEX:
        queue.submit(command_buffers)
        return 0
    handles = _ffi.new("WGPUCommandBuffer[]", [cb._internal for cb in command_buffers])
    return int(_lib.wgpuQueueSubmitForIndex(queue._internal, len(command_buffers), handles))


def poll(device: Any, wait: bool, index: int = 0) -> bool:
    """Process finished work; with ``wait``, block until submission ``index`` (0: all
    submitted work) finished. True when the queue is empty."""
    if not _HAVE_INDEX:
        device._poll(wait)
        return wait
    target = _ffi.new("WGPUSubmissionIndex*", index) if wait and index else _ffi.NULL
    return bool(_lib.wgpuDevicePoll(device._internal, wait, target))
