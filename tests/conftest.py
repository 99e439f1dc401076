"""Shared fixtures: one real wgpu device per session (lavapipe in CI), helpers for byte checks."""

from __future__ import annotations

import contextlib
import linecache
import os
import sys
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

import hal

WAIT = 60.0
"""Seconds any test waits for the GPU before failing instead of hanging."""


@pytest.fixture(scope="session")
def device() -> Iterator[hal.Device]:
    """The default device, with native immediates where the adapter has them."""
    with hal.create_device() as dev:
        yield dev


@pytest.fixture
def no_forced_switches() -> Iterator[None]:
    """No forced GIL hand-over during the test: another thread (the completion tracker) runs
    only where the test's thread lets the GIL go (blocks, sleeps, a C call)."""
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1.0)
    yield
    sys.setswitchinterval(interval)


@contextlib.contextmanager
def interrupt_on_line(filename: str, functions: set[str], marker: str) -> Iterator[list[int]]:
    """Raise KeyboardInterrupt once, on the first executed line containing ``marker`` in one
    of ``functions`` of ``filename`` (a trace function: an interrupt "landing anywhere").
    Yields the list that gets that line's number once it fired."""
    fired: list[int] = []

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        code = frame.f_code
        if code.co_name not in functions or code.co_filename != filename:
            return None

        def local(frame: Any, event: str, arg: Any) -> Any:
            line = linecache.getline(frame.f_code.co_filename, frame.f_lineno)
            if event == "line" and not fired and marker in line:
                fired.append(frame.f_lineno)
                raise KeyboardInterrupt
            return local

        return local

    sys.settrace(tracer)
    try:
        yield fired
    finally:
        sys.settrace(None)


@pytest.fixture
def null() -> Iterator[hal.Device]:
    """A null-backend device of its own (GPU-free: native copies and clears, no kernels);
    its backend named, so HAL_BACKEND (the GL configuration) does not apply to it."""
    dev = hal.create_device(implementation="null", backend="null")
    yield dev
    dev.close()


@pytest.fixture(params=["shared", "null"])
def shared_or_null(request: pytest.FixtureRequest, device: hal.Device) -> Iterator[hal.Device]:
    """The shared real device, then a null-backend device of its own."""
    if request.param == "shared":
        yield device
        return
    dev = hal.create_device(implementation="null", backend="null")
    yield dev
    dev.close()


def dawn_backend_or_skip() -> str:
    """The backend of Dawn's first adapter (Dawn's own, whatever HAL_BACKEND says: the GL
    configuration sets it and Dawn has no GL backend); skips without wgpudawn or an adapter."""
    try:
        import wgpudawn  # noqa: F401
    except ImportError as error:
        pytest.skip(f"wgpudawn is not installed ({error}): pip install '.[dawn]'")
    adapters = hal.available_adapters(implementation="dawn")
    if not adapters:
        pytest.skip("Dawn finds no adapter on this machine (it needs Vulkan with Mesa >= 24)")
    return adapters[0].backend


def device_without(features: str) -> hal.Device:
    """A new default device that pretends the adapter lacks ``features`` (comma-separated,
    as ``HAL_DISABLE_FEATURES`` takes them); the environment is restored afterwards."""
    old = os.environ.get("HAL_DISABLE_FEATURES")
    os.environ["HAL_DISABLE_FEATURES"] = features
    try:
        return hal.create_device()
    finally:
        if old is None:
            del os.environ["HAL_DISABLE_FEATURES"]
        else:
            os.environ["HAL_DISABLE_FEATURES"] = old


@pytest.fixture(scope="session")
def device_no_immediates() -> Iterator[hal.Device]:
    """A device that pretends the adapter lacks immediates: constants go through the
    staged-uniform fallback and kernels are rewritten."""
    dev = device_without("immediates")
    assert not dev.caps.immediates
    with dev:
        yield dev


def random_bytes(size: int, seed: int = 0) -> np.ndarray:
    """``size`` random bytes with no zeros (so untouched bytes are visible)."""
    rng = np.random.default_rng(seed)
    return rng.integers(1, 256, size, dtype=np.uint8)


def submit_and_wait(device: hal.Device, cb: hal.CommandBuffer, binding_table=None) -> None:
    """Submit ``cb`` and block (bounded) until the GPU finished it."""
    semaphore = device.create_semaphore()
    device.queue_execute(cb, signal=[(semaphore, 1)], binding_table=binding_table)
    semaphore.wait(1, timeout=WAIT)


# -- shader layouts the adapter's compiler gets wrong -----------------------------------------
# Each probe runs a tiny kernel and compares the words it wrote with what WGSL's layout rules
# say, so a test that depends on such a layout is marked by what the device does, not by its
# backend's name. (Both are open bugs of naga's GLSL output, which wgpu-native's GL backend
# uses; Vulkan, Metal and D3D12 lay these out as WGSL says.)
_LAYOUT_PROBES: dict[str, tuple[str, list[int], list[int], str]] = {
    "explicit-member-offsets": (
        """
        struct S { @size(16) a: u32, @align(16) b: u32, c: vec2<u32> }
        @group(0) @binding(0) var<storage, read> s: S;
        @group(0) @binding(1) var<storage, read_write> out: array<u32, 4>;
        @compute @workgroup_size(1)
        fn main() { out[0] = s.a; out[1] = s.b; out[2] = s.c.x; out[3] = s.c.y; }
        """,
        [1, 0, 0, 0, 2, 0, 3, 4],
        [1, 2, 3, 4],
        "the shader compiler ignores @size/@align member offsets "
        "(naga GLSL output, gfx-rs/wgpu#4374)",
    ),
    "uniform-matCx2": (
        """
        struct U { m: mat2x2<f32> }
        @group(0) @binding(0) var<uniform> u: U;
        @group(0) @binding(1) var<storage, read_write> out: array<u32, 4>;
        @compute @workgroup_size(1)
        fn main() {
          out[0] = bitcast<u32>(u.m[0][0]); out[1] = bitcast<u32>(u.m[0][1]);
          out[2] = bitcast<u32>(u.m[1][0]); out[3] = bitcast<u32>(u.m[1][1]);
        }
        """,
        [1, 2, 3, 4],
        [1, 2, 3, 4],
        "the shader compiler lays out matCx2 in uniform buffers with a 16-byte column stride "
        "(naga GLSL output, gfx-rs/wgpu#4371)",
    ),
}
_layout_results: dict[tuple[int, str], bool] = {}


def _layout_holds(device: hal.Device, name: str) -> bool:
    """Whether ``device`` compiles the probe ``name`` to WGSL's layout (run once per device)."""
    key = (id(device), name)
    if key not in _layout_results:
        source, words, expected, _ = _LAYOUT_PROBES[name]
        usage = hal.BufferUsage.DEFAULT | hal.BufferUsage.DISPATCH_UNIFORM_READ
        data = device.buffer_from_numpy(np.array(words, np.uint32), usage=usage)
        out = device.allocate_buffer(4 * len(expected))
        with device.record() as cb:
            cb.dispatch(device.create_executable(source), "main", (1, 1, 1), bindings=[data, out])
        submit_and_wait(device, cb)
        _layout_results[key] = out.to_numpy(np.uint32).tolist() == expected
    return _layout_results[key]


def require_layout(device: hal.Device, name: str) -> None:
    """Mark the calling test xfail (strict: it runs no further) when ``device``'s shader
    compiler gets the layout ``name`` wrong (see ``_LAYOUT_PROBES``)."""
    if not _layout_holds(device, name):
        pytest.xfail(_LAYOUT_PROBES[name][3])
