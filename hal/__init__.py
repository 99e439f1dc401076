"""hal — a Vulkan-like GPU hardware abstraction layer (after IREE's HAL) on wgpu.

Record fills, updates, copies, dispatches, barriers and events into a command buffer; at
``end()`` a lowering pass turns the flat command list into as few WebGPU compute passes and
copy commands as the ordering rules allow; submission replays that plan on the device.
"""

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hal.buffer import WHOLE_BUFFER, Buffer, BufferRef, BufferView, SlotRef
    from hal.builtins import shader_path
    from hal.caps import DeviceCaps
    from hal.command_buffer import CommandBuffer, CommandBufferState
    from hal.device import AdapterInfo, Device, available_adapters, create_device
    from hal.enums import (
        AccessScope,
        BufferUsage,
        CommandBufferMode,
        CommandCategory,
        ExecutionStage,
        MemoryAccess,
        MemoryType,
    )
    from hal.errors import (
        AbortedError,
        DeadlineExceededError,
        FailedPreconditionError,
        HalError,
        InvalidArgumentError,
        OutOfRangeError,
        PermissionDeniedError,
        ResourceExhaustedError,
        UnavailableError,
        UnimplementedError,
    )
    from hal.event import Event
    from hal.executable import BindingLayout, EntryPointLayout, Executable
    from hal.lowering import LoweringOptions, lower
    from hal.plan import Plan, PlanStats
    from hal.profiling import Profile, ProfileEvent
    from hal.semaphore import Fence, Semaphore

__version__ = "0.1.0"

# Names load on first use (PEP 562): ``import hal.lowering`` stays free of wgpu, and
# ``import hal`` stays cheap.
_EXPORTS = {
    "AbortedError": "hal.errors",
    "AccessScope": "hal.enums",
    "AdapterInfo": "hal.device",
    "BindingLayout": "hal.executable",
    "Buffer": "hal.buffer",
    "BufferRef": "hal.buffer",
    "BufferUsage": "hal.enums",
    "BufferView": "hal.buffer",
    "CommandBuffer": "hal.command_buffer",
    "CommandBufferMode": "hal.enums",
    "CommandBufferState": "hal.command_buffer",
    "CommandCategory": "hal.enums",
    "DeadlineExceededError": "hal.errors",
    "Device": "hal.device",
    "DeviceCaps": "hal.caps",
    "EntryPointLayout": "hal.executable",
    "Event": "hal.event",
    "Executable": "hal.executable",
    "ExecutionStage": "hal.enums",
    "FailedPreconditionError": "hal.errors",
    "Fence": "hal.semaphore",
    "HalError": "hal.errors",
    "InvalidArgumentError": "hal.errors",
    "LoweringOptions": "hal.lowering",
    "MemoryAccess": "hal.enums",
    "MemoryType": "hal.enums",
    "OutOfRangeError": "hal.errors",
    "PermissionDeniedError": "hal.errors",
    "Plan": "hal.plan",
    "Profile": "hal.profiling",
    "ProfileEvent": "hal.profiling",
    "PlanStats": "hal.plan",
    "ResourceExhaustedError": "hal.errors",
    "Semaphore": "hal.semaphore",
    "SlotRef": "hal.buffer",
    "UnavailableError": "hal.errors",
    "UnimplementedError": "hal.errors",
    "WHOLE_BUFFER": "hal.buffer",
    "available_adapters": "hal.device",
    "create_device": "hal.device",
    "lower": "hal.lowering",
    "shader_path": "hal.builtins",
}

_SUBMODULES = frozenset(
    {
        "allocator",
        "buffer",
        "builtins",
        "caps",
        "cli",
        "command_buffer",
        "demo",
        "device",
        "encoder",
        "enums",
        "errors",
        "event",
        "executable",
        "loss",
        "lowering",
        "native",
        "plan",
        "queue",
        "queue_ops",
        "reference",
        "segments",
        "semaphore",
        "validation",
        "wgsl",
    }
)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(f"hal.{name}")
    else:
        raise AttributeError(f"module 'hal' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *_EXPORTS, *_SUBMODULES})


__all__ = [
    "WHOLE_BUFFER",
    "AbortedError",
    "AccessScope",
    "AdapterInfo",
    "BindingLayout",
    "Buffer",
    "BufferRef",
    "BufferUsage",
    "BufferView",
    "CommandBuffer",
    "CommandBufferMode",
    "CommandBufferState",
    "CommandCategory",
    "DeadlineExceededError",
    "Device",
    "DeviceCaps",
    "EntryPointLayout",
    "Event",
    "Executable",
    "ExecutionStage",
    "FailedPreconditionError",
    "Fence",
    "HalError",
    "InvalidArgumentError",
    "LoweringOptions",
    "MemoryAccess",
    "MemoryType",
    "OutOfRangeError",
    "PermissionDeniedError",
    "Plan",
    "PlanStats",
    "Profile",
    "ProfileEvent",
    "ResourceExhaustedError",
    "Semaphore",
    "SlotRef",
    "UnavailableError",
    "UnimplementedError",
    "available_adapters",
    "create_device",
    "lower",
    "shader_path",
]
