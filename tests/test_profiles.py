"""Adapter profiles (hal.core.profiles): another platform's limits imposed on this adapter.

``restrict`` only ever lowers what the adapter offers; a device opened under a profile
requests the lowered limits from wgpu (so wgpu enforces them too), plans with them, and hal
rejects a kernel over a per-stage limit itself, before wgpu sees it.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import hal
from hal.core.profiles import PROFILES, parse_limits, restrict
from tests.conftest import submit_and_wait

ADAPTER = {
    "max-storage-buffers-per-shader-stage": 48,
    "max-uniform-buffers-per-shader-stage": 12,
    "min-storage-buffer-offset-alignment": 32,
    "min-uniform-buffer-offset-alignment": 512,
    "max-compute-workgroup-storage-size": 16384,
    "max-immediate-size": 256,
    "max-buffer-size": 1 << 30,
    "max-storage-buffer-binding-size": 1 << 27,
}
FEATURES = frozenset({"timestamp-query", "timestamp-query-inside-passes", "shader-f16"})


def test_metal_lowers_maxima_raises_alignments_and_removes_inside_pass_timestamps() -> None:
    limits, features = restrict(ADAPTER, FEATURES, "metal")
    assert limits["max-storage-buffers-per-shader-stage"] == 31
    assert limits["min-storage-buffer-offset-alignment"] == 256
    # Never better than the adapter: its own stricter values stay.
    assert limits["max-uniform-buffers-per-shader-stage"] == 12
    assert limits["min-uniform-buffer-offset-alignment"] == 512
    assert limits["max-compute-workgroup-storage-size"] == 16384
    assert limits["max-buffer-size"] == 1 << 30
    assert features == {"timestamp-query", "shader-f16"}


def test_every_profile_only_restricts() -> None:
    for name in PROFILES:
        limits, features = restrict(ADAPTER, FEATURES, name)
        assert features <= FEATURES
        assert set(limits) == set(ADAPTER)
        for key, value in limits.items():
            if key.startswith("min-"):
                assert value >= ADAPTER[key], (name, key)
            else:
                assert value <= ADAPTER[key], (name, key)


def test_a_profile_skips_limits_the_adapter_does_not_report() -> None:
    small = {"min-storage-buffer-offset-alignment": 32}
    assert restrict(small, (), "metal") == ({"min-storage-buffer-offset-alignment": 256}, set())


def test_d3d12_profile_values() -> None:
    limits, features = restrict(ADAPTER, FEATURES, "D3D12")
    assert limits["max-storage-buffers-per-shader-stage"] == 16
    assert limits["max-immediate-size"] == 128
    assert limits["min-storage-buffer-offset-alignment"] == 32  # D3D12's 4 is looser
    assert features == FEATURES


def test_overrides_apply_after_the_profile_and_never_raise_a_limit() -> None:
    overrides = parse_limits(
        " max-storage-buffers-per-shader-stage=8, max-immediate-size=4096,"
        "min-storage-buffer-offset-alignment=64,"
    )
    limits, _ = restrict(ADAPTER, FEATURES, "metal", overrides)
    assert limits["max-storage-buffers-per-shader-stage"] == 8
    assert limits["max-immediate-size"] == 256
    assert limits["min-storage-buffer-offset-alignment"] == 256
    assert restrict(ADAPTER, FEATURES) == (ADAPTER, FEATURES)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max-immediate-size", r"HAL_LIMITS: entry 'max-immediate-size' is not name=value"),
        ("=4", r"HAL_LIMITS: entry '=4' is not name=value"),
        ("max-immediate-size=-1", r"max-immediate-size = '-1' must be a non-negative integer"),
        ("max-immediate-size=1k", r"max-immediate-size = '1k' must be a non-negative integer"),
    ],
)
def test_malformed_limits_are_rejected(text: str, message: str) -> None:
    with pytest.raises(hal.InvalidArgumentError, match=message):
        parse_limits(text)


def test_unknown_profiles_limits_and_bad_alignments_are_rejected() -> None:
    with pytest.raises(hal.InvalidArgumentError, match=r"unknown profile 'vulkan' \(known: metal"):
        restrict(ADAPTER, FEATURES, "vulkan")
    with pytest.raises(hal.InvalidArgumentError, match=r"HAL_LIMITS: .*no limit 'max-foo'"):
        restrict(ADAPTER, FEATURES, None, {"max-foo": 1})
    with pytest.raises(hal.InvalidArgumentError, match=r"min-storage-buffer-offset-alignment = 48"):
        restrict(ADAPTER, FEATURES, None, {"min-storage-buffer-offset-alignment": 48})


# -- a device under the Metal profile --------------------------------------------------------


@pytest.fixture(scope="module")
def metal_like() -> Iterator[hal.Device]:
    """A device on this adapter with the Metal profile imposed."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("HAL_ADAPTER_PROFILE", "metal")
        dev = hal.create_device()
    with dev:
        yield dev


def _many_buffers(count: int) -> str:
    decls = "\n".join(
        f"@group(0) @binding({i}) var<storage, read_write> b{i}: array<u32>;" for i in range(count)
    )
    body = "\n".join(f"  b{i}[0] = {i}u + 100u;" for i in range(count))
    return f"{decls}\n@compute @workgroup_size(1)\nfn main() {{\n{body}\n}}\n"


def test_the_device_reports_and_plans_with_the_profile(metal_like: hal.Device) -> None:
    limits = metal_like.limits
    assert limits["max-storage-buffers-per-shader-stage"] <= 31
    assert limits["min-storage-buffer-offset-alignment"] >= 256
    assert metal_like.caps.storage_alignment >= 256
    assert "timestamp-query-inside-passes" not in metal_like.features


def test_a_kernel_over_the_per_stage_limit_is_rejected_by_hal(metal_like: hal.Device) -> None:
    limit = metal_like.limits["max-storage-buffers-per-shader-stage"]
    with pytest.raises(
        hal.InvalidArgumentError,
        match=rf"entry point 'main' binds {limit + 1} storage buffers; this device allows at "
        rf"most {limit} \(max-storage-buffers-per-shader-stage\)",
    ):
        metal_like.create_executable(_many_buffers(limit + 1))
    executable = metal_like.create_executable(_many_buffers(limit))
    buffers = [metal_like.allocate_buffer(4) for _ in range(limit)]
    with metal_like.record() as cb:
        cb.dispatch(executable, "main", (1, 1, 1), bindings=buffers)
    submit_and_wait(metal_like, cb)
    assert [int(b.to_numpy(np.uint32)[0]) for b in buffers] == [i + 100 for i in range(limit)]


def test_bindings_at_offsets_below_the_profile_alignment_still_work(
    metal_like: hal.Device,
) -> None:
    """Views at 32-byte offsets (fine on lavapipe, not on Metal): the lowering rebinds them
    at 256-byte-aligned offsets, which wgpu (asked for 256) would otherwise reject."""
    source = """
    @group(0) @binding(0) var<storage, read> src: array<u32>;
    @group(0) @binding(1) var<storage, read_write> dst: array<u32>;
    @compute @workgroup_size(8)
    fn main(@builtin(global_invocation_id) id: vec3<u32>) { dst[id.x] = src[id.x] * 3u; }
    """
    executable = metal_like.create_executable(source)
    data = np.arange(1, 129, dtype=np.uint32)
    src = metal_like.buffer_from_numpy(data)
    dst = metal_like.buffer_from_numpy(np.zeros(128, np.uint32))
    with metal_like.record() as cb:
        cb.dispatch(
            executable, "main", (1, 1, 1), bindings=[src.subspan(32, 32), dst.subspan(96, 32)]
        )
    submit_and_wait(metal_like, cb)
    expected = np.zeros(128, np.uint32)
    expected[24:32] = data[8:16] * 3
    np.testing.assert_array_equal(dst.to_numpy(np.uint32), expected)
