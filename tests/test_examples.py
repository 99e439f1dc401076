"""The example workloads (hal.examples) on small sizes, checked against numpy."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

import hal
from hal.examples import EXAMPLES, ExampleResult, example_size, mlp, run_example
from hal.examples import matmul as mm
from hal.examples import prefix_sum as ps
from hal.examples import softmax as sm
from hal.examples.common import compare, grid, parse_size

# -- pure helpers ----------------------------------------------------------------------------


def test_parse_size() -> None:
    assert parse_size(None, (4, 5), "t") == (4, 5)
    assert parse_size("7", (4, 5), "t") == (7, 7)
    assert parse_size("7x3", (4, 5), "t") == (7, 3)
    assert parse_size("7,3", (4, 5, 6), "t") == (7, 3, 6)
    for bad in ("0", "x", "3x-1", "1x2x3", "abc"):
        with pytest.raises(hal.InvalidArgumentError):
            parse_size(bad, (4, 5), "t")


def test_example_size() -> None:
    assert example_size("mlp", "8") == (8, 784, 512, 10)
    assert example_size("mlp", "8x4x3x2") == (8, 4, 3, 2)
    assert example_size("matmul", "32") == (32, 32, 32)
    assert example_size("prefix_sum", None) == EXAMPLES["prefix_sum"].default_size
    with pytest.raises(hal.InvalidArgumentError, match="unknown example"):
        example_size("nope", None)


def test_grid() -> None:
    assert grid(0, 10) == (0, 1, 1)
    assert grid(10, 10) == (10, 1, 1)
    for groups in (11, 37, 99, 100):
        x, y, z = grid(groups, 10)
        assert x <= 10 and y <= 10 and z == 1 and x * y >= groups
    with pytest.raises(hal.InvalidArgumentError):
        grid(101, 10)


def test_level_sizes() -> None:
    assert ps.level_sizes(1) == [1]
    assert ps.level_sizes(ps.BLOCK) == [ps.BLOCK]
    assert ps.level_sizes(ps.BLOCK + 1) == [ps.BLOCK + 1, 2]
    assert ps.level_sizes(ps.BLOCK**2 + 1) == [ps.BLOCK**2 + 1, ps.BLOCK + 1, 2]


def test_compare() -> None:
    assert compare(np.ones(3), np.ones(3), 0, 0) == (True, 0.0)
    assert compare(np.ones(3), np.ones(4), 1, 1)[0] is False
    ok, err = compare(np.array([1.0, 2.5]), np.array([1.0, 2.0]), 0, 0.1)
    assert not ok and err == pytest.approx(0.5)


# -- matmul ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1, 1), (64, 64, 64), (70, 33, 130), (3, 200, 5)])
def test_matmul(device: hal.Device, shape: tuple[int, int, int]) -> None:
    m, k, n = shape
    rng = np.random.default_rng(m * 1000 + n)
    a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    got = mm.matmul(device, a, b)
    assert got.dtype == np.float32 and got.shape == (m, n)
    np.testing.assert_allclose(got, mm.reference(a, b), rtol=1e-4, atol=1e-6 * k)


def test_matmul_rejects_bad_shapes(device: hal.Device) -> None:
    with pytest.raises(hal.InvalidArgumentError, match="don't multiply"):
        mm.matmul(device, np.ones((2, 3)), np.ones((4, 2)))


def test_matmul_without_immediates(device_no_immediates: hal.Device) -> None:
    result = mm.run(device_no_immediates, (33, 17, 70), repeats=1)
    assert result.ok, result.summary()


# -- prefix sum ------------------------------------------------------------------------------


@pytest.mark.parametrize("n", [1, 5, 1024, 1025, 4097, 3 * ps.BLOCK + 5])
def test_prefix_sum_exact(device: hal.Device, n: int) -> None:
    # Small integers: every partial sum is exact in f32, so the scan must match exactly.
    x = np.random.default_rng(n).integers(0, 8, n).astype(np.float32)
    got = ps.prefix_sum(device, x)
    np.testing.assert_array_equal(got, np.cumsum(x.astype(np.float64)).astype(np.float32))


def test_prefix_sum_levels_and_dispatches(device: hal.Device) -> None:
    with ps.PrefixSum(device, 1024**2 + 3, items=1) as scan:  # 1024-element tiles
        assert scan.levels == [1024**2 + 3, 1025, 2] and scan.dispatches == 5
        with device.record() as cb, device.allocate_buffer(4 * scan.n) as data:
            scan.record(cb, data)
        dispatches = [s for s in cb.segments if type(s).__name__ == "DispatchSegment"]
        assert len(dispatches) == 5


def test_prefix_sum_random_floats(device: hal.Device) -> None:
    result = ps.run(device, (300_001,), repeats=1)
    assert result.ok, result.summary()


def test_prefix_sum_rejects_empty(device: hal.Device) -> None:
    with pytest.raises(hal.InvalidArgumentError):
        ps.prefix_sum(device, np.zeros(0, np.float32))


# -- softmax ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", [(1, 1), (3, 1000), (17, 257), (64, 10)])
def test_softmax(device: hal.Device, shape: tuple[int, int]) -> None:
    rng = np.random.default_rng(shape[1])
    x = rng.normal(0, 3, shape).astype(np.float32)
    got = sm.softmax(device, x)
    np.testing.assert_allclose(got, sm.reference(x), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)


def test_softmax_is_numerically_stable(device: hal.Device) -> None:
    # exp(90) overflows f32: a naive softmax gives inf/nan here.
    x = np.array([[1e4, 1e4 - 1, 1e4 - 2], [-1e4, -1e4 - 1, -1e4 - 50], [90, 0, -90]], np.float32)
    got = sm.softmax(device, x)
    assert np.all(np.isfinite(got))
    np.testing.assert_allclose(got, sm.reference(x), rtol=1e-5, atol=1e-7)


# -- the 2-D workgroup grids, exercised with a small per-dimension limit ------------------------


def test_kernels_index_2d_grids(device: hal.Device, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(device, "caps", dataclasses.replace(device.caps, max_workgroups=4))
    rng = np.random.default_rng(7)
    x = rng.normal(0, 1, (13, 9)).astype(np.float32)  # 13 rows -> a 4 x 4 grid
    np.testing.assert_allclose(sm.softmax(device, x), sm.reference(x), rtol=1e-4, atol=1e-7)
    v = rng.integers(0, 4, 11 * ps.BLOCK + 5).astype(np.float32)  # 12 blocks -> 4 x 3
    np.testing.assert_array_equal(ps.prefix_sum(device, v), np.cumsum(v))
    arrays = mlp.random_weights((8, 8, 250, 3), seed=1)  # bias: 2000 elements -> 4 x 2
    got = mlp.forward(device, *arrays)
    np.testing.assert_allclose(got, mlp.reference(*arrays), rtol=1e-4, atol=1e-6)


# -- MLP ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1, 1, 1), (4, 20, 30, 5), (33, 65, 70, 3)])
def test_mlp_forward(device: hal.Device, size: tuple[int, int, int, int]) -> None:
    arrays = mlp.random_weights(size, seed=size[0])
    got = mlp.forward(device, *arrays)
    assert got.shape == (size[0], size[3])
    np.testing.assert_allclose(got, mlp.reference(*arrays), rtol=1e-4, atol=1e-6)


def test_mlp_is_one_command_buffer_one_pass(device: hal.Device) -> None:
    result = mlp.run(device, (8, 16, 32, 4), repeats=2)
    assert result.ok, result.summary()
    assert "5 dispatches in 1 compute pass" in result.detail


def test_mlp_rejects_shapes_that_dont_chain(device: hal.Device) -> None:
    x, w1, b1, w2, b2 = mlp.random_weights((2, 3, 4, 5))
    with pytest.raises(hal.InvalidArgumentError, match="don't chain"):
        mlp.forward(device, x, w1, b1[:3], w2, b2)


def test_mlp_without_immediates(device_no_immediates: hal.Device) -> None:
    result = mlp.run(device_no_immediates, (6, 10, 12, 4), repeats=1)
    assert result.ok, result.summary()


# -- the registry ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "size"),
    [("matmul", "40x24x72"), ("prefix_sum", "3000"), ("softmax", "9x300"), ("mlp", "4x8x16x3")],
)
def test_run_example(device: hal.Device, name: str, size: str) -> None:
    result = run_example(name, device, size, repeats=2)
    assert isinstance(result, ExampleResult)
    assert result.ok, result.summary()
    assert result.name == name and result.timing.repeats == 2
    assert result.timing.median_s > 0 and result.max_abs_error >= 0
    line = result.summary()
    assert line.startswith(f"{name}: ") and "ms median of 2" in line and line.endswith("OK")
