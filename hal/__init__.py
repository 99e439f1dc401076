"""hal — a Vulkan-like GPU hardware abstraction layer (after IREE's HAL) on wgpu.

Record fills, updates, copies, dispatches, barriers and events into a command buffer; at
``end()`` a lowering pass turns the flat command list into as few WebGPU compute passes and
copy commands as the ordering rules allow; submission replays that plan on the device.
"""

from hal.buffer import WHOLE_BUFFER, Buffer, BufferRef, BufferView, SlotRef
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
from hal.semaphore import Fence, Semaphore

__version__ = "0.1.0"

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
    "ResourceExhaustedError",
    "Semaphore",
    "SlotRef",
    "UnavailableError",
    "UnimplementedError",
    "available_adapters",
    "create_device",
    "lower",
]
