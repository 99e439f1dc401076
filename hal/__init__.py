"""hal — a Vulkan-like GPU hardware abstraction layer (after IREE's HAL) on wgpu.

Record fills, updates, copies, dispatches, barriers and events into a command buffer; at
``end()`` a lowering pass turns the flat command list into as few WebGPU compute passes and
copy commands as the ordering rules allow; submission replays that plan on the device.
"""

import importlib
import os
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hal.core.builtins import shader_path
    from hal.core.caps import DeviceCaps
    from hal.core.layout import BindingLayout, EntryPointLayout
    from hal.core.lowering import LoweringOptions, lower
    from hal.core.plan import Plan, PlanStats
    from hal.core.refs import WHOLE_BUFFER, BufferRef, SlotRef
    from hal.enums import (
        AccessScope,
        BufferUsage,
        CollectiveKind,
        CollectiveReduction,
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
    from hal.runtime.buffer import Buffer, BufferView
    from hal.runtime.channel import Channel
    from hal.runtime.command_buffer import CommandBuffer, CommandBufferState
    from hal.runtime.device import AdapterInfo, Device, available_adapters, create_device
    from hal.runtime.event import Event
    from hal.runtime.executable import Executable
    from hal.runtime.profiling import Profile, ProfileEvent
    from hal.runtime.semaphore import Fence, Semaphore

__version__ = "0.1.0"

# HAL_LOG=debug|info|warning: hal's records to stderr (hal/log.py). Loaded only then, so
# that `import hal.core.…` loads nothing but the pure layer.
if os.environ.get("HAL_LOG"):
    importlib.import_module("hal.log").configure_from_env()

# Names load on first use (PEP 562): ``import hal.core.lowering`` stays free of wgpu, and
# ``import hal`` stays cheap.
_EXPORTS = {
    "AbortedError": "hal.errors",
    "AccessScope": "hal.enums",
    "AdapterInfo": "hal.runtime.device",
    "BindingLayout": "hal.core.layout",
    "Buffer": "hal.runtime.buffer",
    "BufferRef": "hal.core.refs",
    "BufferUsage": "hal.enums",
    "BufferView": "hal.runtime.buffer",
    "Channel": "hal.runtime.channel",
    "CollectiveKind": "hal.enums",
    "CollectiveReduction": "hal.enums",
    "CommandBuffer": "hal.runtime.command_buffer",
    "CommandBufferMode": "hal.enums",
    "CommandBufferState": "hal.runtime.command_buffer",
    "CommandCategory": "hal.enums",
    "DeadlineExceededError": "hal.errors",
    "Device": "hal.runtime.device",
    "DeviceCaps": "hal.core.caps",
    "EntryPointLayout": "hal.core.layout",
    "Event": "hal.runtime.event",
    "Executable": "hal.runtime.executable",
    "ExecutionStage": "hal.enums",
    "FailedPreconditionError": "hal.errors",
    "Fence": "hal.runtime.semaphore",
    "HalError": "hal.errors",
    "InvalidArgumentError": "hal.errors",
    "LoweringOptions": "hal.core.lowering",
    "MemoryAccess": "hal.enums",
    "MemoryType": "hal.enums",
    "OutOfRangeError": "hal.errors",
    "PermissionDeniedError": "hal.errors",
    "Plan": "hal.core.plan",
    "Profile": "hal.runtime.profiling",
    "ProfileEvent": "hal.runtime.profiling",
    "PlanStats": "hal.core.plan",
    "ResourceExhaustedError": "hal.errors",
    "Semaphore": "hal.runtime.semaphore",
    "SlotRef": "hal.core.refs",
    "UnavailableError": "hal.errors",
    "UnimplementedError": "hal.errors",
    "WHOLE_BUFFER": "hal.core.refs",
    "available_adapters": "hal.runtime.device",
    "create_device": "hal.runtime.device",
    "lower": "hal.core.lowering",
    "shader_path": "hal.core.builtins",
}

# Modules reachable as attributes of ``hal`` (``hal.reference.execute``,
# ``hal.builtins.shader_path``).
_SUBMODULES = {
    "builtins": "hal.core.builtins",
    "caps": "hal.core.caps",
    "checks": "hal.core.checks",
    "core": "hal.core",
    "enums": "hal.enums",
    "errors": "hal.errors",
    "examples": "hal.examples",
    "log": "hal.log",
    "lowering": "hal.core.lowering",
    "plan": "hal.core.plan",
    "reference": "hal.core.reference",
    "segments": "hal.core.segments",
    "wgsl": "hal.core.wgsl",
    "runtime": "hal.runtime",
    "backends": "hal.backends",
    "tools": "hal.tools",
}


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is not None:
        value = getattr(importlib.import_module(module), name)
    elif name in _SUBMODULES:
        value = importlib.import_module(_SUBMODULES[name])
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
    "Channel",
    "CollectiveKind",
    "CollectiveReduction",
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
