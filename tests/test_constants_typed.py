"""Dispatch constants typed by the reflected immediate fields (issue 12 item 4) and override
constants validated against the module's ``override`` declarations (item 5).

GPU tests use kernels that write their immediates back to a buffer, so the bytes the
kernel saw are compared with numpy.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
import pytest

import hal
from hal.core.checks import pack_constants, pack_scalar
from hal.core.wgsl import ImmediateField, reflect
from hal.tools.cli_run import UsageError, inspect_kernel
from hal.tools.cli_run import pack_constants as cli_pack_constants
from tests.conftest import require_layout, submit_and_wait

CORPUS = Path(__file__).parent / "wgsl_corpus"
MIXED = (CORPUS / "immediate_mixed.wgsl").read_text()  # {n: u32, a: f32, b: f32}
PADDED = (CORPUS / "immediate_padded.wgsl").read_text()  # {i32, vec3<f32>, u32, mat2x2<f32>}
OVERRIDES = (CORPUS / "overrides.wgsl").read_text()

FIELDS = (
    ImmediateField("p.n", 0, "u32"),
    ImmediateField("p.a", 4, "f32"),
    ImmediateField("p.i", 8, "i32"),
    ImmediateField("p.v[0]", 16, "f32"),
)


@pytest.fixture(params=["device", "device_no_immediates"])
def any_device(request: pytest.FixtureRequest) -> hal.Device:
    """Native immediates, then the staged-uniform fallback."""
    return request.getfixturevalue(request.param)


def dump(device: hal.Device, source: str, words: int, constants: object) -> bytes:
    """Run the ``dump`` kernel of ``source`` with ``constants``; the words it wrote."""
    executable = device.create_executable(source)
    out = device.allocate_buffer(4 * words)
    with device.record() as cb:
        cb.dispatch(executable, "dump", (1, 1, 1), constants=constants, bindings=[out])
    submit_and_wait(device, cb)
    return out.to_numpy(np.uint8).tobytes()


# -- packing (no device) ----------------------------------------------------------------------


def test_values_take_their_field_types_and_padding_is_zero() -> None:
    data = pack_constants("dispatch", [7, 2, -3, 1], FIELDS)
    expected = bytearray(20)
    expected[0:12] = struct.pack("<Ifi", 7, 2.0, -3)
    expected[16:20] = struct.pack("<f", 1.0)
    assert data == bytes(expected)


def test_fewer_values_leave_the_rest_out_and_numpy_scalars_work() -> None:
    assert pack_constants("dispatch", [np.uint8(9), np.float32(0.5)], FIELDS) == struct.pack(
        "<If", 9, 0.5
    )
    assert pack_constants("dispatch", [True], FIELDS) == struct.pack("<I", 1)
    assert pack_constants("dispatch", [np.int64(2**32 - 1)], FIELDS) == b"\xff" * 4
    assert pack_constants("dispatch", [], FIELDS) == b""


def test_inf_and_nan_are_f32_values() -> None:
    data = pack_constants("dispatch", [0, math.inf, 0, math.nan], FIELDS)
    values = np.frombuffer(data, dtype=np.float32)
    assert values[1] == np.inf and np.isnan(values[4])


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ([2**32], r"constants\[0\] = 4294967296 does not fit in u32 field p.n \(0..4294967295\)"),
        ([-1], r"constants\[0\] = -1 does not fit in u32 field p.n"),
        ([0, 0, 2**31], r"constants\[2\] = 2147483648 does not fit in i32 field p.i"),
        ([0, 0, -(2**31) - 1], r"does not fit in i32 field p.i"),
        ([3.0], r"constants\[0\] = 3.0 is a float, but it fills the u32 field p.n"),
        ([0, 0, np.float32(1.5)], r"constants\[2\] = .* is a float, but it fills the i32"),
        ([0, 1e40], r"constants\[1\] = 1e\+40 does not fit in f32 field p.a"),
        ([0, 2**200], r"constants\[1\] = .* does not fit in f32 field p.a"),
        ([0, "1.0"], r"constants\[1\] = '1.0' is not a number for the f32 field p.a"),
        (["7"], r"constants\[0\] = '7' is not an int for the u32 field p.n"),
        ([1, 2, 3, 4, 5], r"5 constants given, but the kernel's immediate block has 4 fields"),
    ],
)
def test_values_that_do_not_fit_their_field(values: list[object], message: str) -> None:
    with pytest.raises(hal.InvalidArgumentError, match=r"^dispatch: .*" + message):
        pack_constants("dispatch", values, FIELDS)


def test_raw_bytes_keep_their_meaning() -> None:
    raw = struct.pack("<ff", 1.0, 2.0)
    assert pack_constants("dispatch", raw, FIELDS) == raw
    assert pack_constants("dispatch", np.array([1.0, 2.0], dtype=np.float32), FIELDS) == raw
    assert pack_constants("dispatch", memoryview(raw), FIELDS) == raw
    with pytest.raises(hal.InvalidArgumentError, match="not a multiple of 4"):
        pack_constants("dispatch", b"\x01\x02", FIELDS)
    with pytest.raises(hal.InvalidArgumentError, match="dtype object"):
        pack_constants("dispatch", np.array([1, 2], dtype=object), FIELDS)
    with pytest.raises(hal.InvalidArgumentError, match="not str"):
        pack_constants("dispatch", "1234", FIELDS)


def test_pack_scalar_is_the_one_conversion() -> None:
    assert pack_scalar("w", "v", 2, "f32") == struct.pack("<f", 2.0)
    assert pack_scalar("w", "v", 1.5, "f16") == struct.pack("<e", 1.5)
    with pytest.raises(hal.InvalidArgumentError, match="does not fit in f16"):
        pack_scalar("w", "v", 70000.0, "f16")


def test_the_cli_types_constants_with_the_same_fields() -> None:
    """``hal run`` reads the slot types from the same reflection (padding slots untyped)
    and converts with the same function as dispatch."""
    kernel = inspect_kernel(MIXED, "immediate_mixed.wgsl", None)
    assert kernel.constant_types == ("u32", "f32", "f32")
    core = pack_constants("dispatch", [8, 2, 1], reflect(MIXED).immediate_fields)
    assert cli_pack_constants(["8", "2", "1"], kernel) == core == struct.pack("<Iff", 8, 2, 1)
    padded = inspect_kernel(PADDED, "immediate_padded.wgsl", None)
    assert padded.constant_types == (
        "i32",
        None,
        None,
        None,
        "f32",
        "f32",
        "f32",
        "u32",
        "f32",
        "f32",
        "f32",
        "f32",
    )
    with pytest.raises(UsageError, match="does not fit in f32"):
        cli_pack_constants(["1", "u32:0", "u32:0", "u32:0", "1e40"], padded)


# -- on the GPU -------------------------------------------------------------------------------


def test_int_values_for_float_fields_arrive_as_floats(any_device: hal.Device) -> None:
    """The issue's case: [8, 2, 1] for {n: u32, a: f32, b: f32} is n=8, a=2.0, b=1.0 (the
    kernel used to read a = 2.8e-45)."""
    got = dump(any_device, MIXED, 3, [8, 2, 1])
    assert got == np.array([8], np.uint32).tobytes() + np.array([2, 1], np.float32).tobytes()


def test_padded_block_is_packed_to_its_layout(any_device: hal.Device) -> None:
    if not any_device.caps.immediates:  # the block is staged into a var<uniform>
        require_layout(any_device, "uniform-matCx2")
    values = [-3, 1.5, 2, -0.25, 7, 1, 2, 3, 4]
    got = np.frombuffer(dump(any_device, PADDED, 9, values), dtype=np.uint32)
    expected = np.empty(9, dtype=np.uint32)
    expected[0] = np.array([-3], np.int32).view(np.uint32)[0]
    expected[1:4] = np.array([1.5, 2, -0.25], np.float32).view(np.uint32)
    expected[4] = 7
    expected[5:9] = np.array([1, 2, 3, 4], np.float32).view(np.uint32)
    np.testing.assert_array_equal(got, expected)


def test_missing_trailing_values_read_zero(any_device: hal.Device) -> None:
    got = np.frombuffer(dump(any_device, PADDED, 9, [5, 1.0]), dtype=np.uint32)
    expected = np.zeros(9, dtype=np.uint32)
    expected[0] = 5
    expected[1] = np.array([1.0], np.float32).view(np.uint32)[0]
    np.testing.assert_array_equal(got, expected)


def test_a_value_that_does_not_fit_is_rejected_at_record(device: hal.Device) -> None:
    executable = device.create_executable(MIXED)
    out = device.allocate_buffer(12)
    cb = device.create_command_buffer()
    cb.begin()
    with pytest.raises(hal.InvalidArgumentError, match=r"constants\[1\] = 1e\+40 .*f32"):
        cb.dispatch(executable, "dump", (1, 1, 1), constants=[1, 1e40], bindings=[out])
    with pytest.raises(hal.InvalidArgumentError, match=r"constants\[0\] = 0.5 is a float"):
        cb.dispatch(executable, "dump", (1, 1, 1), constants=[0.5], bindings=[out])
    with pytest.raises(hal.InvalidArgumentError, match=r"4 constants given.*3 fields"):
        cb.dispatch(executable, "dump", (1, 1, 1), constants=[1, 2, 3, 4], bindings=[out])
    cb.end()
    assert cb.segments == ()


# -- override constants -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("constants", "message"),
    [
        ({"COUNT": 1, "X": "abc"}, r"constants\['X'\]: the module declares no override 'X'"),
        ({"COUNT": "abc"}, r"constants\['COUNT'\] = 'abc': override 'COUNT' is i32; pass an int"),
        ({"COUNT": 1.5}, r"override 'COUNT' is i32; pass an int"),
        ({"COUNT": 2**31}, r"does not fit in i32 override 'COUNT'"),
        ({"COUNT": 1, "WG": -1}, r"constants\['WG'\] = -1: does not fit in u32 override 'WG'"),
        ({"COUNT": 1, "ENABLED": 1}, r"override 'ENABLED' is bool; pass a bool"),
        ({"COUNT": 1, "SCALE": 1e40}, r"override 'SCALE' is f32; pass a finite value"),
        ({"COUNT": 1, "SCALE": math.inf}, r"override 'SCALE' is f32; pass a finite value"),
        ({"COUNT": 1, "SCALE": [1.0]}, r"override 'SCALE' takes a number, not list"),
        ({"COUNT": 1, "SCALE": 1.0, "7": 2.0}, r"constants\['7'\]: override 'SCALE' is already"),
        ({"COUNT": 1, 7: 2.0}, r"constants\[7\]: keys must be override names \(str\)"),
        ([("COUNT", 1)], r"constants must be a dict of override values, not list"),
    ],
)
def test_override_constants_are_validated_first(
    device: hal.Device, constants: object, message: str
) -> None:
    with pytest.raises(hal.InvalidArgumentError, match=r"^create_executable: .*" + message):
        device.create_executable(OVERRIDES, constants=constants)  # type: ignore[arg-type]


def test_override_values_reach_the_kernel(device: hal.Device) -> None:
    """SCALE (set by its @id), OFFSET and COUNT change what the kernel writes."""
    executable = device.create_executable(
        OVERRIDES, constants={"7": 0.5, "OFFSET": np.int32(10), "COUNT": 2, "ENABLED": True}
    )
    out = device.allocate_buffer(64 * 4)
    with device.record() as cb:
        cb.dispatch(executable, "main", (1, 1, 1), bindings=[out])
    submit_and_wait(device, cb)
    lanes = np.arange(64, dtype=np.float32)
    expected = (63 - lanes) * np.float32(0.5) + np.float32(12)
    np.testing.assert_array_equal(out.to_numpy(np.float32), expected)
    assert (
        device.create_executable(
            OVERRIDES, constants={"7": 0.5, "OFFSET": 10, "COUNT": 2, "ENABLED": True}
        )
        is executable
    )  # normalised values share the cache entry
