"""Device capabilities the lowering needs, as plain data (no wgpu objects)."""

from __future__ import annotations

from dataclasses import dataclass, field

from hal.core.cost import TransferCosts

__all__ = ["DeviceCaps"]


@dataclass(frozen=True, slots=True)
class DeviceCaps:
    """The limits and features that shape a plan.

    ``storage_alignment``/``uniform_alignment`` are the adapter's minimum binding offset
    alignments; ``immediates`` says whether ``var<immediate>`` constants are native (otherwise
    the lowering stages constants into a uniform buffer); ``max_binding_size`` bounds one
    storage binding window; ``max_workgroups`` bounds one dispatch dimension;
    ``word_workgroups`` is the grid of the builtin word (unaligned) kernels, which loop over
    their range; ``table_workgroups`` caps the grid of the table kernels (batched small
    transfers), which loop over their entries; ``costs`` is the adapter's measured transfer
    cost model.
    ``padded_allocations`` says that every root allocation is padded as
    :func:`hal.core.builtins.allocation_size` says (the device's allocator does), so the
    unaligned builtin copy may bind windows rounded up to whole 16-byte blocks; stand-in
    buffers of tests are not, by default.
    """

    storage_alignment: int = 256
    uniform_alignment: int = 256
    immediates: bool = True
    max_immediate_size: int = 128
    max_binding_size: int = 128 << 20
    max_uniform_binding_size: int = 64 << 10
    max_workgroups: int = 65535
    word_workgroups: int = 65535
    table_workgroups: int = 65535
    max_buffer_size: int = (1 << 31) - 1
    padded_allocations: bool = False
    costs: TransferCosts = field(default_factory=TransferCosts)
