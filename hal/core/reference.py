"""The reference executor: runs a recorded command buffer on host memory with numpy.

It interprets the command buffer's *segments* (``cb.segments``) and a binding table — never
the lowered plan — so it is independent of the lowering and of wgpu. Fills, updates and
copies are exact; a dispatch calls the numpy function registered for its kernel (WGSL
source) and entry point. Used by the differential fuzzer and for debugging::

    memory = hal.core.reference.HostMemory.snapshot([a, b])   # host copies of the allocations
    hal.core.reference.execute(cb, memory, binding_table=[a])
    expected = memory.read(b)

Commands run in program order, which is one valid order of every program that respects the
barrier rules. A kernel function sees each binding as a writable ``uint8`` view of exactly the
bound bytes; :func:`load_words` / :func:`store_words` convert to 32-bit words the way a GPU
kernel sees a binding whose length is not a whole number of words (the tail word is padded
with zeros on load, an empty binding shows one word, and only the bound bytes are stored).
Reference functions describe in-bounds behaviour only: what a kernel reads past the end of a
binding is up to the GPU.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from hal.core.refs import BufferLike, BufferRef
from hal.core.segments import (
    CopySegment,
    DispatchSegment,
    FillSegment,
    Ref,
    Segment,
    UpdateSegment,
)
from hal.errors import (
    FailedPreconditionError,
    InvalidArgumentError,
    OutOfRangeError,
    UnimplementedError,
)

__all__ = [
    "DEFAULT_KERNELS",
    "DispatchContext",
    "HostMemory",
    "KernelFunction",
    "KernelRegistry",
    "execute",
    "load_words",
    "run_segments",
    "store_words",
]

# Runtime objects core handles without importing the runtime (hal.core stays pure).
Executable = Any
CommandBuffer = Any


@dataclass(frozen=True)
class DispatchContext:
    """What a reference kernel function gets for one dispatch.

    ``bindings[i]`` is a writable uint8 view of HAL binding i's bytes (None where the entry
    point ignores it); ``constants`` are the dispatch constants padded with zeros to the
    entry point's declared size; ``workgroups`` is (x, y, z), read from memory for
    ``dispatch_indirect``."""

    entry_point: str
    bindings: tuple[np.ndarray | None, ...]
    constants: bytes
    workgroups: tuple[int, int, int]

    def binding(self, index: int) -> np.ndarray:
        """Binding ``index``; raises InvalidArgumentError if it is not bound."""
        view = self.bindings[index] if index < len(self.bindings) else None
        if view is None:
            raise InvalidArgumentError(f"reference: {self.entry_point} binding {index} unbound")
        return view

    def constant_words(self, dtype: Any = np.uint32) -> np.ndarray:
        """The constants as an array of 32-bit ``dtype`` values."""
        return np.frombuffer(self.constants, dtype=np.dtype(dtype).newbyteorder("<"))

    @property
    def invocations(self) -> int:
        """Workgroups in the dispatch: x * y * z."""
        x, y, z = self.workgroups
        return x * y * z


KernelFunction = Callable[[DispatchContext], None]
"""A numpy model of one entry point: updates ``context.bindings`` in place."""


def load_words(view: np.ndarray, dtype: Any = np.uint32) -> np.ndarray:
    """The bytes of ``view`` as little-endian 32-bit words (a copy); a partial last word is
    padded with zero bytes. An empty binding still shows one word, as on the GPU (where a
    zero-length binding is bound as one scratch word whose stores go nowhere)."""
    padded = np.zeros(max(4, -(-len(view) // 4) * 4), np.uint8)
    padded[: len(view)] = view
    return padded.view(np.dtype(dtype).newbyteorder("<")).copy()


def store_words(view: np.ndarray, words: np.ndarray) -> None:
    """Write 32-bit ``words`` back into ``view``: only the bytes ``view`` covers change."""
    raw = np.ascontiguousarray(words).view(np.uint8)
    view[:] = raw[: len(view)]


class KernelRegistry:
    """Reference functions keyed by (WGSL source text, entry point)."""

    def __init__(self) -> None:
        self._functions: dict[tuple[str, str], KernelFunction] = {}

    def register(self, source: Any, entry_point: str, function: KernelFunction) -> None:
        """Register ``function`` for ``entry_point`` of ``source`` (WGSL text, a ``.wgsl``
        path or an Executable). A later registration replaces an earlier one."""
        self._functions[(_source_text(source), entry_point)] = function

    def lookup(self, executable: Executable, entry_point: str) -> KernelFunction:
        """The function for a dispatch. Raises UnimplementedError if none is registered."""
        found = self._functions.get((executable.source, entry_point))
        if found is None:
            raise UnimplementedError(
                f"reference: no reference function for {executable.label}:{entry_point}; "
                "register one with KernelRegistry.register"
            )
        return found

    def __contains__(self, key: tuple[Any, str]) -> bool:
        source, entry_point = key
        return (_source_text(source), entry_point) in self._functions

    def copy(self) -> KernelRegistry:
        """An independent registry with the same functions."""
        other = KernelRegistry()
        other._functions = dict(self._functions)
        return other


def _source_text(source: Any) -> str:
    text = getattr(source, "source", None)
    if isinstance(text, str):
        return text
    if isinstance(source, os.PathLike) or (
        isinstance(source, str) and "\n" not in source and source.endswith(".wgsl")
    ):
        with open(source) as handle:
            return handle.read()
    if isinstance(source, str):
        return source
    raise InvalidArgumentError(
        f"reference: source must be WGSL text, a path or an Executable, not {type(source)}"
    )


class HostMemory:
    """Host copies of allocations (root buffers), the memory the reference executor runs on.

    Every allocation a command buffer or binding table names must be added first."""

    def __init__(self) -> None:
        self._arrays: dict[int, tuple[BufferLike, np.ndarray]] = {}

    @classmethod
    def snapshot(cls, buffers: Iterable[BufferLike]) -> HostMemory:
        """Host copies of the allocations of ``buffers`` (subspans add their whole
        allocation), read from the device after all submitted work."""
        memory = cls()
        for buffer in buffers:
            root = buffer.allocated_buffer
            if id(root) not in memory._arrays:
                data = root.allocation.host.read(root, 0, root.byte_length)  # type: ignore[attr-defined]
                memory.add(root, data)
        return memory

    def add(self, buffer: BufferLike, data: Any = None) -> None:
        """Track ``buffer``'s allocation with contents ``data`` (bytes-like; default zeros)."""
        root = buffer.allocated_buffer
        array = np.zeros(root.byte_length, np.uint8)
        if data is not None:
            raw = np.frombuffer(memoryview(data).cast("B"), np.uint8)
            if len(raw) != root.byte_length:
                raise InvalidArgumentError(
                    f"HostMemory.add: {len(raw)} bytes for a {root.byte_length}-byte allocation"
                )
            array[:] = raw
        self._arrays[id(root)] = (root, array)

    def _array(self, root: BufferLike) -> np.ndarray:
        found = self._arrays.get(id(root))
        if found is None or found[0] is not root:
            raise InvalidArgumentError(f"reference: {root!r} was not added to the host memory")
        return found[1]

    def view(self, buffer: BufferLike) -> np.ndarray:
        """A writable uint8 view of ``buffer``'s bytes (a subspan sees its own range)."""
        array = self._array(buffer.allocated_buffer)
        return array[buffer.byte_offset : buffer.byte_offset + buffer.byte_length]

    def read(self, buffer: BufferLike) -> bytes:
        """``buffer``'s bytes."""
        return self.view(buffer).tobytes()

    def copy(self) -> HostMemory:
        """An independent copy."""
        other = HostMemory()
        other._arrays = {key: (root, array.copy()) for key, (root, array) in self._arrays.items()}
        return other

    def __contains__(self, buffer: BufferLike) -> bool:
        found = self._arrays.get(id(buffer.allocated_buffer))
        return found is not None and found[0] is buffer.allocated_buffer


def execute(
    command_buffer: CommandBuffer,
    memory: HostMemory,
    binding_table: Sequence[BufferLike | BufferRef] | None = None,
    kernels: KernelRegistry | None = None,
) -> None:
    """Run an ended ``command_buffer`` on ``memory`` (in place). Raises
    FailedPreconditionError for a command buffer that is not ended, OutOfRangeError for a
    binding table that does not cover a slot range, UnimplementedError for a dispatch of a
    kernel with no registered reference function."""
    if command_buffer.state.value in ("initial", "recording"):
        raise FailedPreconditionError(
            f"reference: the command buffer is not ended (state {command_buffer.state.value})"
        )
    run_segments(command_buffer.segments, memory, binding_table, kernels)


def run_segments(
    segments: Sequence[Segment],
    memory: HostMemory,
    binding_table: Sequence[BufferLike | BufferRef] | None = None,
    kernels: KernelRegistry | None = None,
) -> None:
    """Run ``segments`` in order on ``memory``, resolving slot references through
    ``binding_table``. Barriers, events and advice change nothing. Errors as
    :func:`execute`."""
    registry = DEFAULT_KERNELS if kernels is None else kernels
    table = list(binding_table or ())
    for segment in segments:
        if isinstance(segment, FillSegment):
            target = _resolve(memory, table, segment.target)
            pattern = np.frombuffer(segment.pattern, np.uint8)
            target[:] = np.resize(pattern, len(target))
        elif isinstance(segment, UpdateSegment):
            target = _resolve(memory, table, segment.target)
            target[:] = np.frombuffer(segment.data, np.uint8)[: len(target)]
        elif isinstance(segment, CopySegment):
            source = _resolve(memory, table, segment.source)
            target = _resolve(memory, table, segment.target)
            if segment.source.length is None and segment.target.length is None:
                size = min(len(source), len(target))
                source, target = source[:size], target[:size]
            if len(source) != len(target):
                raise OutOfRangeError(
                    f"reference: copy of {len(source)} bytes into a {len(target)}-byte range"
                )
            target[:] = source.copy()  # memmove semantics, whatever the overlap
        elif isinstance(segment, DispatchSegment):
            _dispatch(segment, memory, table, registry)


def _resolve(memory: HostMemory, table: list[Any], ref: Ref) -> np.ndarray:
    """The bytes ``ref`` names, as a writable view into ``memory``."""
    if ref.buffer is not None:
        array = memory._array(ref.buffer)
        length = len(array) - ref.offset if ref.length is None else ref.length
        return array[ref.offset : ref.offset + length]
    assert ref.slot is not None
    if ref.slot >= len(table):
        raise OutOfRangeError(f"reference: slot {ref.slot} is past the binding table's end")
    entry = table[ref.slot]
    if isinstance(entry, BufferRef):
        buffer = entry.buffer
        base = buffer.byte_offset + entry.offset
        size = buffer.byte_length - entry.offset if entry.length is None else entry.length
    else:
        buffer, base, size = entry, entry.byte_offset, entry.byte_length
    length = size - ref.offset if ref.length is None else ref.length
    if ref.offset + length > size:
        raise OutOfRangeError(
            f"reference: slot {ref.slot} range [{ref.offset}, {ref.offset + length}) is past "
            f"its {size}-byte entry"
        )
    array = memory._array(buffer.allocated_buffer)
    return array[base + ref.offset : base + ref.offset + length]


def _dispatch(
    segment: DispatchSegment, memory: HostMemory, table: list[Any], registry: KernelRegistry
) -> None:
    function = registry.lookup(segment.executable, segment.entry_point)
    if segment.indirect is not None:
        params = _resolve(memory, table, segment.indirect)[:12]
        x, y, z = (int(v) for v in np.frombuffer(params.tobytes(), "<u4"))
    else:
        assert segment.workgroups is not None
        x, y, z = segment.workgroups
    limit = segment.executable.device.caps.max_workgroups
    if x * y * z == 0 or max(x, y, z) > limit:
        return  # wgpu validates indirect counts on the GPU and skips such a dispatch
    bindings = tuple(
        None if ref is None else _resolve(memory, table, ref) for ref in segment.bindings
    )
    constants = segment.constants.ljust(segment.layout.constants_size, b"\0")
    function(DispatchContext(segment.entry_point, bindings, constants, (x, y, z)))


# -- reference functions of the shipped example kernels -----------------------------------


def _elementwise(operation: str) -> KernelFunction:
    """``shaders/elementwise.wgsl``: one invocation per element along x (64 per group)."""

    def run(context: DispatchContext) -> None:
        count, scale, bias = (
            int(context.constant_words()[0]),
            *context.constant_words(np.float32)[1:3],
        )
        source = load_words(context.binding(0), np.float32)
        output_view = context.binding(1)
        output = load_words(output_view, np.float32)
        n = min(count, context.workgroups[0] * 64, len(source), len(output))
        repeats = context.workgroups[1] * context.workgroups[2]
        with np.errstate(all="ignore"):
            if operation == "scale":
                output[:n] = source[:n] * np.float32(scale) + np.float32(bias)
            elif operation == "square":
                output[:n] = source[:n] * source[:n]
            else:
                for _ in range(repeats):
                    output[:n] = output[:n] + source[:n]
        store_words(output_view, output)

    return run


def _touch(context: DispatchContext) -> None:
    """``shaders/noop.wgsl`` ``touch``: counter[0] += 1 per invocation (exact for one
    workgroup; several race on the GPU)."""
    view = context.binding(0)
    words = load_words(view)
    words[0] += np.uint32(context.invocations)
    store_words(view, words)


def _default_registry() -> KernelRegistry:
    from hal.core.builtins import shader_source

    registry = KernelRegistry()
    elementwise = shader_source("elementwise.wgsl")
    for name in ("scale", "square", "accumulate"):
        registry.register(elementwise, name, _elementwise(name))
    registry.register(shader_source("noop.wgsl"), "touch", _touch)
    return registry


DEFAULT_KERNELS = _default_registry()
"""References for the kernels shipped in ``hal.shaders``; register more here or in a copy."""
