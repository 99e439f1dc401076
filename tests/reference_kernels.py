"""numpy reference functions for the test kernels in tests/kernels, for hal.reference.

Each mirrors its WGSL entry point's in-bounds behaviour exactly (integer kernels bit for bit).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from hal.core.reference import (
    DEFAULT_KERNELS,
    DispatchContext,
    KernelRegistry,
    load_words,
    store_words,
)

KERNELS = Path(__file__).parent / "kernels"


def kernel_path(name: str) -> str:
    """Path of ``tests/kernels/NAME``."""
    return str(KERNELS / name)


def xor_copy(context: DispatchContext) -> None:
    """dst[i] = src[i] ^ key for every word both bindings cover (64 invocations a group)."""
    key = context.constant_words()[0]
    src = load_words(context.binding(0))
    dst_view = context.binding(1)
    dst = load_words(dst_view)
    n = min(len(src), len(dst), context.workgroups[0] * 64)
    dst[:n] = src[:n] ^ key
    store_words(dst_view, dst)


def xor_inplace(context: DispatchContext) -> None:
    """data[i] ^= key (64 invocations a group; y/z repeats XOR again)."""
    key = context.constant_words()[0]
    view = context.binding(0)
    data = load_words(view)
    n = min(len(data), context.workgroups[0] * 64)
    if (context.workgroups[1] * context.workgroups[2]) % 2:
        data[:n] ^= key
    store_words(view, data)


def count(context: DispatchContext) -> None:
    """counter[0] += workgroups (atomic); seen[id] = id + 1 for every linear workgroup id."""
    counter_view, seen_view = context.binding(0), context.binding(1)
    counter = load_words(counter_view)
    counter[0] += np.uint32(context.invocations)
    store_words(counter_view, counter)
    seen = load_words(seen_view)
    n = min(len(seen), context.invocations)
    seen[:n] = np.arange(1, n + 1, dtype=np.uint32)
    store_words(seen_view, seen)


def make_params(context: DispatchContext) -> None:
    """params[0..3] = (sizes[0] + 1, sizes[1] * 2, sizes[2])."""
    sizes = load_words(context.binding(0))
    params_view = context.binding(1)
    params = load_words(params_view)
    with np.errstate(over="ignore"):
        params[:3] = (sizes[0] + np.uint32(1), sizes[1] * np.uint32(2), sizes[2])
    store_words(params_view, params)


def _multi(operation: str):  # type: ignore[no-untyped-def]
    def run(context: DispatchContext) -> None:
        value, shift = (int(v) for v in context.constant_words()[:2])
        view = context.binding(0)
        out = load_words(view).astype(np.uint64)
        n = min(len(out), context.workgroups[0] * 16)
        gid = np.arange(n, dtype=np.uint64)
        if operation == "store":
            out[:n] = value + gid
        elif operation == "shift_or":
            out[:n] = ((out[:n] << (shift % 32)) & 0xFFFFFFFF) | value
        else:
            out[:n] = out[:n] * 3 + 1
        store_words(view, (out & 0xFFFFFFFF).astype(np.uint32))

    return run


def dump_words(context: DispatchContext) -> None:
    """out[i] = words[i] + i * 0x01000000 for i < 32."""
    view = context.binding(0)
    out = load_words(view)
    words = context.constant_words()
    n = min(32, len(out))
    with np.errstate(over="ignore"):
        out[:n] = words[:n] + np.arange(n, dtype=np.uint32) * np.uint32(0x01000000)
    store_words(view, out)


def register(registry: KernelRegistry) -> KernelRegistry:
    """Add the test kernels' references to ``registry``; returns it."""
    registry.register(kernel_path("xor_words.wgsl"), "xor_copy", xor_copy)
    registry.register(kernel_path("xor_inplace.wgsl"), "xor_inplace", xor_inplace)
    registry.register(kernel_path("count_workgroups.wgsl"), "count", count)
    registry.register(kernel_path("make_params.wgsl"), "make_params", make_params)
    registry.register(kernel_path("constants_array.wgsl"), "dump_words", dump_words)
    for name in ("store", "shift_or", "fixed"):
        registry.register(kernel_path("multi_entry.wgsl"), name, _multi(name))
    return registry


TEST_KERNELS = register(DEFAULT_KERNELS.copy())
"""The shipped kernels' references plus the test kernels'."""
