"""The f16 matmul on subgroup matrices (hal.examples.matmul_subgroup_matrix): the generated
WGSL and its reflection, the configuration rules, the typed error where the device lacks
``chromium-experimental-subgroup-matrix`` (lavapipe, CI), the variant selection and its
fallback to the portable kernel (checked against numpy), and the kernel itself against numpy
at edge shapes where a device has the feature."""

from __future__ import annotations

import re
from contextlib import ExitStack
from dataclasses import dataclass, replace

import numpy as np
import pytest

import hal
from hal.core.wgsl import reflect
from hal.examples import matmul
from hal.examples.matmul_subgroup_matrix import (
    ENABLE,
    FEATURE,
    SubgroupMatrixConfig,
    subgroup_matrix_source,
)
from hal.examples.matmul_wgsl import MatmulConfig

EDGE_SHAPES = [(1, 1, 1), (1, 37, 5), (37, 1, 1), (33, 17, 70), (64, 64, 64), (130, 9, 67)]


def _run(
    device: hal.Device, kernel: matmul.MatmulKernel, a: np.ndarray, b: np.ndarray
) -> np.ndarray:
    m, k = a.shape
    n = b.shape[1]
    with ExitStack() as stack:
        bufs = [stack.enter_context(device.buffer_from_numpy(x)) for x in (a, b)]
        c = stack.enter_context(device.allocate_buffer(max(4, -(-m * n * 2 // 4) * 4)))
        with device.record() as cb:
            matmul.record_matmul(cb, kernel, *bufs, c, m, k, n)
        device.queue_execute(cb)
        device.wait_idle(timeout=60)
        return c.to_numpy(np.float16, (m, n))


def _check(got: np.ndarray, a: np.ndarray, b: np.ndarray) -> None:
    want = a.astype(np.float64) @ b.astype(np.float64)
    bound = matmul.F16_RTOL * np.abs(want) + matmul.F16_ATOL_PER_K * a.shape[1]
    assert got.shape == want.shape
    assert np.all(np.abs(got.astype(np.float64) - want) <= bound)


def _inputs(shape: tuple[int, int, int]) -> tuple[np.ndarray, np.ndarray]:
    m, k, n = shape
    rng = np.random.default_rng(m * 1000 + k * 10 + n)
    a = rng.uniform(-1, 1, (m, k)).astype(np.float16)
    b = rng.uniform(-1, 1, (k, n)).astype(np.float16)
    return a, b


# -- the generated WGSL ----------------------------------------------------------------------


def test_source_reflects_with_one_subgroup_per_workgroup() -> None:
    cfg = SubgroupMatrixConfig(bm=32, bn=64, bk=32)
    source = subgroup_matrix_source(cfg)
    assert source.startswith(f"enable f16;\nenable {ENABLE};\n")
    info = reflect(source)
    assert info.enables == frozenset({"f16", ENABLE})
    assert [b.name for b in info.bindings] == ["a", "b", "c"]
    (entry,) = info.entry_points
    assert entry.name == "matmul" and entry.workgroup_size == (32, 1, 1)
    assert info.immediate_size == 12  # m, k, n
    # (bm / sm) x (bn / sn) accumulators, written out, one multiply-accumulate each per k step
    assert len(re.findall(r"subgroupMatrixMultiplyAccumulate", source)) == 2 * 4
    assert "var<storage, read> a: array<vec4<f16>>" in source
    # every matrix builtin's offset derives from workgroup_id and constants (uniform)
    for call in re.findall(r"subgroupMatrix(?:Load|Store)[^;]*;", source):
        assert "lidx" not in call and "local_invocation" not in call


def test_direct_store_only_for_f16_results_without_epilogue() -> None:
    direct = subgroup_matrix_source(SubgroupMatrixConfig(accumulate="f16"))
    assert "subgroupMatrixStore(&c," in direct and "array<f16, 256>" in direct
    for cfg in (
        SubgroupMatrixConfig(accumulate="f32"),
        SubgroupMatrixConfig(accumulate="f16", bias=True),
        SubgroupMatrixConfig(accumulate="f16", gelu=True),
    ):
        source = subgroup_matrix_source(cfg)
        assert "subgroupMatrixStore(&c," not in source
        assert "subgroupMatrixStore(&scratch, 0u" in source
    staged = SubgroupMatrixConfig(accumulate="f16", direct=False)
    source = subgroup_matrix_source(staged)
    assert "subgroupMatrixStore(&c," not in source
    assert "subgroupMatrixStore(&scratch, 0u" in source
    f32 = subgroup_matrix_source(SubgroupMatrixConfig(accumulate="f32"))
    assert "var<workgroup> scratch: array<f32, 256>;" in f32
    assert "subgroup_matrix_result<f32, 16, 16>" in f32


def test_c_min_bytes_is_one_result_matrix_where_it_stores_into_c() -> None:
    # Dawn's minimum of the direct variant's c binding, as the H200 reported: 16*16*2 bytes
    assert SubgroupMatrixConfig(accumulate="f16").c_min_bytes == 512
    assert SubgroupMatrixConfig(accumulate="f16", bm=32, bn=16, sn=8).c_min_bytes == 256
    assert SubgroupMatrixConfig(accumulate="f16", direct=False).c_min_bytes == 0
    assert SubgroupMatrixConfig(accumulate="f32").c_min_bytes == 0
    assert SubgroupMatrixConfig(accumulate="f16", residual=True).c_min_bytes == 0
    cfg = SubgroupMatrixConfig(accumulate="f16").with_epilogue(
        aligned=False, bias=False, gelu=False, residual=False, direct=False
    )
    assert not cfg.direct and not cfg.aligned and not cfg.stores_direct


def test_unaligned_variant_and_epilogue_bindings() -> None:
    cfg = SubgroupMatrixConfig(aligned=False, bias=True, gelu=True, residual=True)
    source = subgroup_matrix_source(cfg)
    info = reflect(source)
    assert [(b.name, b.binding) for b in info.bindings] == [
        ("a", 0),
        ("b", 1),
        ("c", 2),
        ("bias", 3),
        ("residual", 4),
    ]
    assert "var<storage, read> a: array<f16>" in source and "tanh(" in source


def test_non_square_matrix_shape_types() -> None:
    # the types take (columns, rows): left M x K, right K x N, result M x N
    source = subgroup_matrix_source(SubgroupMatrixConfig(bm=32, bn=16, sm=16, sn=8, sk=16))
    assert "subgroup_matrix_left<f16, 16, 16>" in source
    assert "subgroup_matrix_right<f16, 8, 16>" in source
    assert "subgroup_matrix_result<f32, 8, 16>" in source
    assert len(re.findall(r"= subgroup_matrix_result", source)) == 2 * 2


def test_reflection_accepts_subgroup_matrix_types_inside_functions() -> None:
    source = (
        f"enable f16;\nenable {ENABLE};\n"
        "@group(0) @binding(0) var<storage, read_write> o: array<f32>;\n"
        "var<workgroup> t: array<f16, 64>;\n"
        "fn helper(x: subgroup_matrix_result<f32, 8, 8>) { subgroupMatrixStore(&o, 0u, x, "
        "false, 8u); }\n"
        "@compute @workgroup_size(32) fn main() {\n"
        "  let l = subgroupMatrixLoad<subgroup_matrix_left<f16, 8, 8>>(&t, 0u, false, 8u);\n"
        "  var r: subgroup_matrix_right<f16, 8, 8>;\n"
        "  var acc = subgroup_matrix_result<f32, 8, 8>();\n"
        "  acc = subgroupMatrixMultiplyAccumulate(l, r, acc);\n"
        "  helper(acc);\n}\n"
    )
    info = reflect(source)
    assert ENABLE in info.enables
    assert info.entry_points[0].uses >= {"o", "t"}


def test_config_rules() -> None:
    with pytest.raises(hal.InvalidArgumentError, match="bm, bn must be multiples of sm, sn"):
        SubgroupMatrixConfig(bm=40).check()
    with pytest.raises(hal.InvalidArgumentError, match="bk must be a multiple of sk and 4"):
        subgroup_matrix_source(SubgroupMatrixConfig(bk=24))
    with pytest.raises(hal.InvalidArgumentError, match="pad a multiple of 4"):
        SubgroupMatrixConfig(pad=2).check()
    with pytest.raises(hal.InvalidArgumentError, match="multiples of 4 \\* invocations"):
        SubgroupMatrixConfig(bm=16, bn=16, bk=16, sg=128).check()
    with pytest.raises(hal.InvalidArgumentError, match="accumulate is 'f32' or 'f16'"):
        SubgroupMatrixConfig(accumulate="f64").check()
    with pytest.raises(hal.InvalidArgumentError, match="sizes must be positive"):
        SubgroupMatrixConfig(bm=0).check()
    cfg = SubgroupMatrixConfig(bm=64, bn=64, bk=32, pad=8, accumulate="f32")
    assert cfg.threads == 32 and cfg.dtype == "f16"
    assert cfg.workgroup_bytes == 2 * (64 * 40 + 32 * 72) + 16 * 16 * 4


# -- the device feature ----------------------------------------------------------------------


def test_missing_feature_is_unimplemented(device: hal.Device) -> None:
    if FEATURE in device.features:
        pytest.skip("this device has subgroup matrices")
    with pytest.raises(hal.UnimplementedError, match=rf"enable {ENABLE};.*'{FEATURE}'"):
        matmul.load(device, "f16", config=SubgroupMatrixConfig())
    source = f"enable {ENABLE};\n@compute @workgroup_size(1) fn main() {{}}\n"
    with pytest.raises(hal.UnimplementedError, match=rf"'{FEATURE}'; this device lacks it"):
        device.create_executable(source)


def test_subgroup_matrix_config_needs_f16_elements(device: hal.Device) -> None:
    with pytest.raises(hal.InvalidArgumentError, match="takes f16 elements, not 'f32'"):
        matmul.load(device, "f32", config=SubgroupMatrixConfig())


@dataclass(frozen=True)
class _Info:
    vendor: str
    name: str
    adapter_type: str


@dataclass(frozen=True)
class _FakeDevice:
    features: frozenset[str]
    info: _Info


def test_selection_by_feature_and_vendor(monkeypatch: pytest.MonkeyPatch) -> None:
    entry = SubgroupMatrixConfig(bm=32, bn=32)
    monkeypatch.setitem(matmul.SUBGROUP_MATRIX_TILES, "nvidia", entry)
    gpu = _Info("NVIDIA", "NVIDIA H200", "discrete")
    pick = matmul.subgroup_matrix_config
    assert pick(_FakeDevice(frozenset({FEATURE}), gpu)) == entry  # type: ignore[arg-type]
    assert pick(_FakeDevice(frozenset(), gpu)) is None  # type: ignore[arg-type]
    other = _Info("AMD", "Radeon", "discrete")
    assert pick(_FakeDevice(frozenset({FEATURE}), other)) is None  # type: ignore[arg-type]
    cpu = _Info("NVIDIA", "llvmpipe", "cpu")
    assert pick(_FakeDevice(frozenset({FEATURE}), cpu)) is None  # type: ignore[arg-type]


def test_default_f16_falls_back_to_the_portable_kernel(
    device: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where the subgroup-matrix kernel cannot be built (here: the feature is missing, as a
    shape the adapter lacks would fail to compile), f16 runs on the portable kernel."""
    if "shader-f16" not in device.features or FEATURE in device.features:
        pytest.skip("needs shader-f16 and no subgroup matrices")
    monkeypatch.setattr(matmul, "subgroup_matrix_config", lambda _d: SubgroupMatrixConfig())
    for acc in ("f16", "f32"):
        kernel = matmul.load(device, "f16", acc)
        assert isinstance(kernel.config, MatmulConfig) and kernel.config.accumulate == acc
        a, b = _inputs((33, 17, 70))
        _check(_run(device, kernel, a, b), a, b)
    a, b = _inputs((5, 9, 3))
    _check(matmul.matmul(device, a, b), a, b)


def test_aligned_variant_needs_k_and_n_multiples_of_4(device: hal.Device) -> None:
    kernel = matmul.MatmulKernel(device, SubgroupMatrixConfig())
    assert kernel.aligned(8, 4) and not kernel.aligned(6, 4) and not kernel.aligned(8, 6)
    portable = matmul.MatmulKernel(device, MatmulConfig())
    assert portable.aligned(6, 4) and not portable.aligned(8, 6)


# -- the kernel, where a device has the feature ----------------------------------------------


@pytest.mark.parametrize("accumulate", ["f16", "f32"])
@pytest.mark.parametrize("shape", [*EDGE_SHAPES, (70, 131, 64), (3, 2, 130), (128, 64, 256)])
def test_subgroup_matrix_kernel_against_numpy(
    device: hal.Device, accumulate: str, shape: tuple[int, int, int]
) -> None:
    if FEATURE not in device.features or "shader-f16" not in device.features:
        pytest.skip(f"the device lacks {FEATURE} (Dawn on a GPU with cooperative matrices)")
    cfg = replace(SubgroupMatrixConfig(), accumulate=accumulate)
    kernel = matmul.load(device, "f16", accumulate, cfg)
    a, b = _inputs(shape)
    _check(_run(device, kernel, a, b), a, b)


class _Recorder:
    """A command buffer stand-in: keeps what record_matmul dispatches."""

    def __init__(self) -> None:
        self.dispatches: list[tuple[object, str, tuple[int, int, int], list[object]]] = []

    def dispatch(
        self,
        executable: object,
        entry: str,
        groups: tuple[int, int, int],
        *,
        constants: list[int],
        bindings: list[object],
    ) -> None:
        self.dispatches.append((executable, entry, groups, bindings))


def test_record_matmul_stores_into_c_only_where_the_binding_is_large_enough(
    device: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The direct variant (Dawn: c's binding >= one result matrix, 512 B here) only where a
    tile lies inside c and the bound range is large enough; else the workgroup-memory one."""
    asked: list[dict[str, bool]] = []

    def variant(self: matmul.MatmulKernel, **flags: bool) -> str:
        asked.append(flags)
        return f"variant{len(asked)}"

    monkeypatch.setattr(matmul.MatmulKernel, "executable", variant)
    kernel = matmul.MatmulKernel(device, SubgroupMatrixConfig(accumulate="f16"))
    with ExitStack() as stack:
        a, b, c = (stack.enter_context(device.allocate_buffer(64 * 64 * 2)) for _ in range(3))
        cases = [
            (c, (64, 64, 64), True),
            (c, (63, 64, 64), False),  # no tile inside c: the direct branch is dead
            (c, (64, 64, 32), False),
            (hal.BufferRef(c, 0, 256), (64, 64, 64), False),  # 256 B < 512 B
            (hal.BufferRef(c, 64 * 64 * 2 - 256), (64, 64, 64), False),
            (hal.BufferRef(c, 256), (64, 64, 64), True),  # 7936 B to the end
            (hal.SlotRef(0), (64, 64, 64), False),  # size unknown here: staged
        ]
        for target, (m, k, n), want in cases:
            asked.clear()
            cb = _Recorder()
            matmul.record_matmul(cb, kernel, a, b, target, m, k, n)  # type: ignore[arg-type]
            assert asked[-1]["direct"] is want, (target, m, n)
            (dispatched, entry, groups, bindings) = cb.dispatches[0]
            assert dispatched == "variant1" and entry == "matmul"
            assert groups == (-(-n // 64), -(-m // 64), 1) and bindings == [a, b, target]
        staged = matmul.MatmulKernel(device, SubgroupMatrixConfig(accumulate="f16", direct=False))
        matmul.record_matmul(_Recorder(), staged, a, b, c, 64, 64, 64)  # type: ignore[arg-type]
        assert asked[-1]["direct"] is False  # the config's choice stands
        portable = matmul.MatmulKernel(device, MatmulConfig())
        assert portable.direct(hal.BufferRef(c, 0, 4), 1, 1)  # one store path: no minimum


def test_staged_and_direct_sources_differ_only_where_the_store_is_direct(
    device: hal.Device, monkeypatch: pytest.MonkeyPatch
) -> None:
    """f32 accumulation has one store path: both flags compile the same source (one cached
    executable); f16 gets two."""
    sources: list[str] = []
    monkeypatch.setattr(device, "create_executable", lambda src, label: sources.append(src))
    for acc in ("f32", "f16"):
        kernel = matmul.MatmulKernel(device, SubgroupMatrixConfig(accumulate=acc))
        kernel.executable(aligned=True, direct=True)
        kernel.executable(aligned=True, direct=False)
    f32_direct, f32_staged, f16_direct, f16_staged = sources
    assert f32_direct == f32_staged and "subgroupMatrixStore(&c," not in f32_direct
    assert "subgroupMatrixStore(&c," in f16_direct and "subgroupMatrixStore(&c," not in f16_staged
