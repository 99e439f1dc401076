"""The workload kernels (issue 16) against numpy at shapes that exercise every edge: sizes that
are not multiples of the tiles, one row, one column; every matmul tile shape of the table, f32
and f16, the fused epilogues; softmax / layer norm / GELU in vec4 and scalar variants, with
subgroup and workgroup reductions; causal attention; the device feature check."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import ExitStack

import numpy as np
import pytest
from conftest import device_without

import hal
from hal.examples import attention, gelu, layernorm, matmul, prefix_sum, softmax, transformer
from hal.examples.matmul_wgsl import MatmulConfig, matmul_source
from hal.examples.rowwise import kernel_source

EDGE_SHAPES = [(1, 1, 1), (1, 37, 5), (37, 1, 1), (33, 17, 70), (64, 64, 64), (130, 9, 67)]


@pytest.fixture(scope="module")
def device_no_subgroups() -> Iterator[hal.Device]:
    """A device without ``subgroup`` (and ``shader-f16``): the portable fallbacks."""
    dev = device_without("subgroup,shader-f16")
    with dev:
        yield dev


def _gpu_matmul(
    device: hal.Device,
    kernel: matmul.MatmulKernel,
    a: np.ndarray,
    b: np.ndarray,
    bias: np.ndarray | None = None,
    residual: np.ndarray | None = None,
    gelu_on: bool = False,
) -> np.ndarray:
    m, k = a.shape
    n = b.shape[1]
    with ExitStack() as stack:
        bufs = [stack.enter_context(device.buffer_from_numpy(x)) for x in (a, b)]
        c = stack.enter_context(device.allocate_buffer(max(4, -(-m * n * a.itemsize // 4) * 4)))
        extra = {
            name: stack.enter_context(device.buffer_from_numpy(x))
            for name, x in (("bias", bias), ("residual", residual))
            if x is not None
        }
        with device.record() as cb:
            matmul.record_matmul(cb, kernel, *bufs, c, m, k, n, gelu=gelu_on, **extra)
        device.queue_execute(cb)
        device.wait_idle(timeout=60)
        return c.to_numpy(a.dtype, (m, n))


# -- matmul ----------------------------------------------------------------------------------


@pytest.mark.parametrize("tile", sorted(matmul.TILES))
@pytest.mark.parametrize("shape", EDGE_SHAPES)
def test_matmul_tiles_f32(device: hal.Device, tile: str, shape: tuple[int, int, int]) -> None:
    m, k, n = shape
    rng = np.random.default_rng(m * 7 + k * 3 + n)
    a = rng.uniform(-1, 1, (m, k)).astype(np.float32)
    b = rng.uniform(-1, 1, (k, n)).astype(np.float32)
    base = matmul.TILES[tile]
    need = matmul.MatmulConfig(base.bm, base.bn, base.bk, base.tm, base.tn, "f32", "f32")
    if need.workgroup_bytes > device.limits["max-compute-workgroup-storage-size"]:
        with pytest.raises(hal.InvalidArgumentError, match="workgroup memory"):
            matmul.load(device, config=base)
        pytest.skip(f"tile {tile} needs {need.workgroup_bytes} B of workgroup memory in f32")
    got = _gpu_matmul(device, matmul.load(device, config=base), a, b)
    np.testing.assert_allclose(got, matmul.reference(a, b), rtol=1e-4, atol=1e-6 * k)


@pytest.mark.parametrize("accumulate", ["f16", "f32"])
@pytest.mark.parametrize("shape", [(1, 1, 1), (33, 17, 70), (70, 64, 36)])
def test_matmul_f16(device: hal.Device, accumulate: str, shape: tuple[int, int, int]) -> None:
    if "shader-f16" not in device.features:
        pytest.skip("the adapter has no shader-f16")
    m, k, n = shape
    rng = np.random.default_rng(k)
    a = rng.uniform(-1, 1, (m, k)).astype(np.float16)
    b = rng.uniform(-1, 1, (k, n)).astype(np.float16)
    got = _gpu_matmul(device, matmul.load(device, "f16", accumulate), a, b)
    assert got.dtype == np.float16
    tol = 4e-3 * k if accumulate == "f16" else 1e-3 * k
    np.testing.assert_allclose(got.astype(np.float64), matmul.reference(a, b), rtol=1e-2, atol=tol)


PAIR_CONFIGS = [
    MatmulConfig(64, 64, 32, 4, 4, pairs=True),
    MatmulConfig(64, 64, 16, 8, 8, pairs=True),
    MatmulConfig(128, 256, 16, 8, 16, pairs=True),
]


@pytest.mark.parametrize("cfg", PAIR_CONFIGS, ids=lambda c: f"{c.bm}x{c.bn}x{c.bk}")
@pytest.mark.parametrize("shape", [*EDGE_SHAPES, (70, 131, 64), (3, 2, 130)])
def test_matmul_f16_pairs(
    device: hal.Device, cfg: MatmulConfig, shape: tuple[int, int, int]
) -> None:
    """The packed k-pair kernel at odd K (a pair half outside a), unaligned N, one row."""
    if "shader-f16" not in device.features:
        pytest.skip("adapter without shader-f16")
    m, k, n = shape
    rng = np.random.default_rng(m * 131 + k)
    a = rng.uniform(-1, 1, (m, k)).astype(np.float16)
    b = rng.uniform(-1, 1, (k, n)).astype(np.float16)
    kernel = matmul.load(device, "f16", config=cfg)
    assert kernel.config.pairs
    got = _gpu_matmul(device, kernel, a, b)
    tol = matmul.F16_ATOL_PER_K * k
    np.testing.assert_allclose(
        got.astype(np.float64), matmul.reference(a, b), rtol=matmul.F16_RTOL, atol=tol
    )


def test_matmul_pairs_rules(device: hal.Device) -> None:
    """pairs needs f16 accumulation and whole pair chunks; f32 accumulation drops it."""
    with pytest.raises(hal.InvalidArgumentError, match="pairs needs f16 elements"):
        MatmulConfig(dtype="f32", pairs=True).check()
    with pytest.raises(hal.InvalidArgumentError, match="multiples of 8"):
        MatmulConfig(64, 64, 16, 4, 4, "f16", "f16", pairs=True).check()
    source = matmul_source(
        MatmulConfig(64, 64, 32, 4, 4, "f16", "f16", False, True, True, True, pairs=True)
    )
    assert "mat4x2<f16>" in source and "fn finish" in source and "tanh" in source
    if "shader-f16" in device.features:
        kernel = matmul.load(device, "f16", "f32", config=PAIR_CONFIGS[0])
        assert not kernel.config.pairs


def test_matmul_f16_pairs_epilogue(device: hal.Device) -> None:
    """bias + GELU + residual fused after the pair sums, N not a multiple of 4."""
    if "shader-f16" not in device.features:
        pytest.skip("adapter without shader-f16")
    m, k, n = 33, 17, 70
    rng = np.random.default_rng(3)
    a = rng.uniform(-1, 1, (m, k)).astype(np.float16)
    b = rng.uniform(-1, 1, (k, n)).astype(np.float16)
    bias = rng.uniform(-1, 1, n).astype(np.float16)
    res = rng.uniform(-1, 1, (m, n)).astype(np.float16)
    kernel = matmul.load(device, "f16", config=PAIR_CONFIGS[0])
    got = _gpu_matmul(device, kernel, a, b, bias=bias, residual=res, gelu_on=True)
    want = gelu.reference(matmul.reference(a, b) + bias) + res
    atol = matmul.F16_ATOL_PER_K * k + 1e-2
    np.testing.assert_allclose(got.astype(np.float64), want, rtol=matmul.F16_RTOL, atol=atol)


def test_matmul_numpy_f16_entry(device: hal.Device) -> None:
    if "shader-f16" not in device.features:
        pytest.skip("the adapter has no shader-f16")
    a = np.arange(12, dtype=np.float16).reshape(3, 4) / 8
    b = np.arange(8, dtype=np.float16).reshape(4, 2) / 8
    got = matmul.matmul(device, a, b)
    assert got.dtype == np.float16
    np.testing.assert_allclose(got, matmul.reference(a, b), rtol=1e-3)


@pytest.mark.parametrize("shape", [(5, 12, 8), (33, 17, 70), (2, 3, 1)])
def test_matmul_epilogue(device: hal.Device, shape: tuple[int, int, int]) -> None:
    m, k, n = shape
    rng = np.random.default_rng(n)
    a = rng.normal(0, 1, (m, k)).astype(np.float32)
    b = rng.normal(0, 1, (k, n)).astype(np.float32)
    bias = rng.normal(0, 1, n).astype(np.float32)
    res = rng.normal(0, 1, (m, n)).astype(np.float32)
    kernel = matmul.load(device)
    got = _gpu_matmul(device, kernel, a, b, bias=bias, residual=res, gelu_on=True)
    want = gelu.reference(matmul.reference(a, b) + bias) + res
    np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)
    plain = _gpu_matmul(device, kernel, a, b, bias=bias)
    np.testing.assert_allclose(plain, matmul.reference(a, b) + bias, rtol=1e-4, atol=1e-4)


def test_matmul_config_rules() -> None:
    with pytest.raises(hal.InvalidArgumentError, match="multiples of 4"):
        matmul_source(MatmulConfig(bm=64, bn=64, tm=6, tn=4))
    with pytest.raises(hal.InvalidArgumentError, match="f32 elements accumulate in f32"):
        MatmulConfig(dtype="f32", accumulate="f16").check()
    source = matmul_source(MatmulConfig(dtype="f16", accumulate="f16", bias=True))
    assert source.startswith("enable f16;") and "bias: array<f16>" in source
    assert "for (var r" not in source  # the register block is written out


def test_tile_table_per_adapter(device: hal.Device) -> None:
    want = "cpu" if device.info.adapter_type == "cpu" else None
    cfg = matmul.tile_config(device)
    if want:
        assert cfg == matmul.TILES["cpu"]
    assert cfg.workgroup_bytes <= device.limits["max-compute-workgroup-storage-size"]


def test_matmul_record_rejects(device: hal.Device) -> None:
    kernel = matmul.load(device)
    with (
        device.allocate_buffer(64) as buf,
        device.record() as cb,
        pytest.raises(hal.InvalidArgumentError, match="must be positive"),
    ):
        matmul.record_matmul(cb, kernel, buf, buf, buf, 0, 4, 4)


# -- feature check ---------------------------------------------------------------------------


def test_f16_needs_shader_f16(device_no_subgroups: hal.Device) -> None:
    assert "shader-f16" not in device_no_subgroups.features
    with pytest.raises(hal.UnimplementedError, match=r"enable f16;.*'shader-f16'"):
        matmul.load(device_no_subgroups, "f16")
    source = "enable subgroups;\n@compute @workgroup_size(1) fn main() {}\n"
    with pytest.raises(hal.UnimplementedError, match=r"enable subgroups;.*'subgroup'"):
        device_no_subgroups.create_executable(source)


def test_enable_subgroups_compiles_where_supported(device: hal.Device) -> None:
    if "subgroup" not in device.features:
        pytest.skip("the adapter has no subgroup feature")
    source = (
        "enable subgroups;\n@group(0) @binding(0) var<storage, read_write> o: array<u32>;\n"
        "@compute @workgroup_size(64) fn main(@builtin(local_invocation_index) i: u32) {\n"
        "  o[i] = subgroupAdd(1u);\n}\n"
    )
    exe = device.create_executable(source)
    with device.allocate_buffer(256) as out:
        with device.record() as cb:
            cb.dispatch(exe, "main", (1, 1, 1), bindings=[out])
        device.queue_execute(cb)
        device.wait_idle(timeout=60)
        sizes = out.to_numpy(np.uint32, (64,))
    assert set(sizes.tolist()) <= {4, 8, 16, 32, 64} and sizes.min() == sizes.max()


# -- row kernels -----------------------------------------------------------------------------

ROW_SHAPES = [(1, 1), (1, 4), (3, 1000), (2, 1023), (5, 4096), (300, 7)]


@pytest.mark.parametrize("shape", ROW_SHAPES)
@pytest.mark.parametrize("portable", [False, True])
def test_softmax(
    device: hal.Device, device_no_subgroups: hal.Device, shape: tuple[int, int], portable: bool
) -> None:
    dev = device_no_subgroups if portable else device
    rng = np.random.default_rng(shape[1])
    x = (rng.normal(0, 4, shape) + rng.uniform(-300, 300, (shape[0], 1))).astype(np.float32)
    got = softmax.softmax(dev, x)
    np.testing.assert_allclose(got, softmax.reference(x), rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(got.sum(axis=1), 1.0, rtol=1e-5)


@pytest.mark.parametrize("shape", ROW_SHAPES)
@pytest.mark.parametrize("portable", [False, True])
def test_layernorm(
    device: hal.Device, device_no_subgroups: hal.Device, shape: tuple[int, int], portable: bool
) -> None:
    dev = device_no_subgroups if portable else device
    rows, cols = shape
    rng = np.random.default_rng(rows)
    x = (rng.normal(0, 2, shape) + rng.uniform(-1000, 1000, (rows, 1))).astype(np.float32)
    g = rng.normal(1, 0.3, cols).astype(np.float32)
    b = rng.normal(0, 0.3, cols).astype(np.float32)
    got = layernorm.layernorm(dev, x, g, b)
    np.testing.assert_allclose(got, layernorm.reference(x, g, b), rtol=1e-3, atol=2e-3)


def test_layernorm_rejects(device: hal.Device) -> None:
    with pytest.raises(hal.InvalidArgumentError, match="gamma"):
        layernorm.layernorm(device, np.ones((2, 3)), np.ones(2), np.ones(3))


@pytest.mark.parametrize("n", [1, 3, 4, 1001, 70000])
def test_gelu(device: hal.Device, n: int) -> None:
    x = np.random.default_rng(n).normal(0, 4, n).astype(np.float32)
    x[0] = 40.0  # tanh saturates; no NaN
    got = gelu.gelu(device, x)
    np.testing.assert_allclose(got, gelu.reference(x), rtol=1e-5, atol=1e-6)


def test_row_sources_pick_variants() -> None:
    sub = kernel_source("softmax", vec4=True, subgroups=True)
    assert sub.startswith("enable subgroups;") and "alias V = vec4<f32>;" in sub
    assert "subgroupAdd" in sub
    portable = kernel_source("softmax", vec4=False, subgroups=False)
    assert "subgroupAdd" not in portable and "alias V = f32;" in portable
    assert "enable" not in kernel_source("gelu", vec4=True, subgroups=True, reduces=False)


# -- attention and the block -----------------------------------------------------------------


@pytest.mark.parametrize("size", [(1, 1, 1, 8), (2, 70, 3, 16), (1, 33, 2, 64)])
def test_attention(device: hal.Device, size: tuple[int, int, int, int]) -> None:
    batch, seq, heads, d = size
    qkv = np.random.default_rng(seq).normal(0, 1, (batch * seq, 3 * heads * d)).astype(np.float32)
    kernel = attention.load(device, d)
    with device.buffer_from_numpy(qkv) as src, device.allocate_buffer(qkv.nbytes // 3) as out:
        with device.record() as cb:
            attention.record_attention(cb, kernel, src, out, batch, seq, heads)
        device.queue_execute(cb)
        device.wait_idle(timeout=60)
        got = out.to_numpy(np.float32, (batch * seq, heads * d))
    np.testing.assert_allclose(got, attention.reference(qkv, batch, seq, heads), atol=2e-5)
    # causality: the first query of each sequence sees only its own value
    first = qkv.reshape(batch, seq, 3, heads * d)[:, 0, 2]
    np.testing.assert_allclose(got.reshape(batch, seq, -1)[:, 0], first, atol=1e-6)


def test_attention_rejects_head_size() -> None:
    with pytest.raises(hal.InvalidArgumentError, match="multiple of 4"):
        attention.attention_source(6)


@pytest.mark.parametrize("size", [(1, 1, 16, 1), (2, 40, 64, 4), (1, 70, 32, 2)])
def test_transformer_block(device: hal.Device, size: tuple[int, int, int, int]) -> None:
    weights = transformer.random_weights(size, seed=size[1])
    # Large projections so attention and the MLP, not the residual, dominate the output.
    for name in ("w_qkv", "w_o", "w_1", "w_2"):
        weights[name] = weights[name] * 20
    got = transformer.forward(device, weights, size)
    want = transformer.reference(weights, size)
    assert np.abs(want - weights["x"]).max() > 0.5
    np.testing.assert_allclose(got, want, rtol=1e-3, atol=1e-3 * np.abs(want).max())


def test_transformer_small_on_cpu(device: hal.Device) -> None:
    result = transformer.run(device, repeats=1)
    assert result.ok, result.summary()
    if device.info.adapter_type == "cpu":
        assert f"seq {transformer.SMALL_SIZE[1]}" in result.detail


def test_transformer_rejects_size(device: hal.Device) -> None:
    with pytest.raises(hal.InvalidArgumentError, match="divisible by heads"):
        transformer.forward(device, {}, (1, 4, 10, 3))


# -- prefix sum: f32 / i32 / u32, vec4 and scalar loads, subgroup and workgroup scans ---------


@pytest.mark.parametrize("fallback", [False, True], ids=["default", "no-subgroups"])
@pytest.mark.parametrize("n", [1, 3, 4, 7, 1024, 1025, 4096 + 4, 1024 * 1024 + 3])
def test_prefix_sum_integers_exact(
    device: hal.Device, device_no_subgroups: hal.Device, fallback: bool, n: int
) -> None:
    # Full-range int32 values: the partial sums wrap, exactly as numpy's in-dtype cumsum.
    dev = device_no_subgroups if fallback else device
    rng = np.random.default_rng(n)
    xi = rng.integers(-(2**31), 2**31 - 1, n, dtype=np.int64).astype(np.int32)
    with prefix_sum.PrefixSum(dev, n, "i32", items=1) as scan:
        assert len(scan.levels) == len(prefix_sum.level_sizes(n, 1024))
        with dev.buffer_from_numpy(xi) as data:
            with dev.record() as cb:
                scan.record(cb, data)
            dev.queue_execute(cb)
            dev.wait_idle(timeout=120)
            got = data.to_numpy(np.int32, (n,))
    np.testing.assert_array_equal(got, np.cumsum(xi, dtype=np.int32))
    xu = xi.view(np.uint32)
    got_u = prefix_sum.prefix_sum(dev, xu)
    assert got_u.dtype == np.uint32
    np.testing.assert_array_equal(got_u, np.cumsum(xu, dtype=np.uint32))


@pytest.mark.parametrize("fallback", [False, True], ids=["default", "no-subgroups"])
@pytest.mark.parametrize("items", [1, 2, 4, 8])
def test_prefix_sum_floats_every_tile_size(
    device: hal.Device, device_no_subgroups: hal.Device, fallback: bool, items: int
) -> None:
    dev = device_no_subgroups if fallback else device
    n = 3 * 1024 * items + 6  # 4 tiles, the last one partial, a length no multiple of 4
    x = np.random.default_rng(items).integers(0, 8, n).astype(np.float32)
    with (
        prefix_sum.PrefixSum(dev, n, items=items) as scan,
        dev.buffer_from_numpy(x) as data,
    ):
        assert scan.levels == [n, 4]
        with dev.record() as cb:
            scan.record(cb, data)
        dev.queue_execute(cb)
        dev.wait_idle(timeout=120)
        got = data.to_numpy(np.float32, (n,))
    np.testing.assert_array_equal(got, np.cumsum(x.astype(np.float64)).astype(np.float32))


def test_prefix_sum_int32_keeps_its_dtype(device: hal.Device) -> None:
    x = np.arange(10, dtype=np.int32)
    got = prefix_sum.prefix_sum(device, x)
    assert got.dtype == np.int32
    np.testing.assert_array_equal(got, np.cumsum(x, dtype=np.int32))


@pytest.mark.parametrize("dtype", [np.int64, np.bool_, np.int16, np.uint64])
def test_prefix_sum_rejects_unsupported_dtypes(device: hal.Device, dtype: type) -> None:
    with pytest.raises(hal.InvalidArgumentError) as caught:
        prefix_sum.prefix_sum(device, np.ones(10, dtype=dtype))
    message = str(caught.value)
    assert f"dtype {np.dtype(dtype)}" in message and "float32" in message and "int32" in message


def test_prefix_sum_rejects_bad_arguments(device: hal.Device) -> None:
    with pytest.raises(hal.InvalidArgumentError, match=r"dtype 'f64' is not one of f32, i32"):
        prefix_sum.PrefixSum(device, 10, "f64")
    with pytest.raises(hal.InvalidArgumentError, match=r"items 0 must be an int in 1\.\.16"):
        prefix_sum.PrefixSum(device, 10, items=0)
    with pytest.raises(hal.InvalidArgumentError, match="must be a positive int"):
        prefix_sum.PrefixSum(device, 0)


# -- builtin transfer kernels with a one-workgroup grid: the unrolled grid-stride steps -------


def _run_builtin(
    device: hal.Device, name: str, entry: str, params: list[int], arrays: list[np.ndarray]
) -> list[np.ndarray]:
    from hal.core.builtins import shader_path

    exe = device.create_executable(shader_path(name))
    with ExitStack() as stack:
        bufs = [stack.enter_context(device.buffer_from_numpy(a)) for a in arrays]
        with device.record() as cb:
            cb.dispatch(exe, entry, (1, 1, 1), constants=params, bindings=bufs)
        device.queue_execute(cb)
        device.wait_idle(timeout=60)
        return [b.to_numpy(np.uint8, a.shape) for b, a in zip(bufs, arrays, strict=True)]


CASES = [(0, 0, 8192), (1, 3, 8190), (3, 1, 8187), (2, 0, 5001), (0, 2, 4099), (5, 9, 3), (1, 2, 2)]


@pytest.mark.parametrize(("src", "dst", "length"), CASES)
def test_builtin_copy_kernels_bytes_exact(
    device: hal.Device, src: int, dst: int, length: int
) -> None:
    rng = np.random.default_rng(length)
    source = rng.integers(0, 256, 8208, dtype=np.uint8)
    target = rng.integers(0, 256, 8208, dtype=np.uint8)
    words = (dst + length + 3) // 4 - dst // 4
    want = target.copy()
    want[dst : dst + length] = source[src : src + length]
    _, got = _run_builtin(
        device, "builtin_copy.wgsl", "copy", [src, dst, length, words], [source, target]
    )
    np.testing.assert_array_equal(got, want)
    # One window: the source range sits after the target's, disjoint.
    both = np.concatenate([target, source])
    want_within = both.copy()
    want_within[dst : dst + length] = both[8208 + src : 8208 + src + length]
    (got_within,) = _run_builtin(
        device, "builtin_copy_within.wgsl", "copy_within", [8208 + src, dst, length, words], [both]
    )
    np.testing.assert_array_equal(got_within, want_within)


@pytest.mark.parametrize(("src", "dst", "count"), [(0, 0, 1024), (1, 2, 1023), (3, 0, 1029)])
def test_builtin_block_kernels_bytes_exact(
    device: hal.Device, src: int, dst: int, count: int
) -> None:
    rng = np.random.default_rng(count)
    source = rng.integers(0, 256, 16 * 1040, dtype=np.uint8)
    target = rng.integers(0, 256, 16 * 1040, dtype=np.uint8)
    want = target.copy()
    want[16 * dst : 16 * (dst + count)] = source[16 * src : 16 * (src + count)]
    _, got = _run_builtin(
        device, "builtin_copy4.wgsl", "copy4", [src, dst, count, 0], [source, target]
    )
    np.testing.assert_array_equal(got, want)
    want_fill = target.copy()
    want_fill[16 * dst : 16 * (dst + count)] = np.tile(np.array([4, 3, 2, 1], np.uint8), 4 * count)
    (got_fill,) = _run_builtin(
        device, "builtin_fill4.wgsl", "fill4", [dst, count, 0x01020304, 0], [target]
    )
    np.testing.assert_array_equal(got_fill, want_fill)
