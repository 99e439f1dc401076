"""The builtin copy kernels dispatched directly on small grids, so that every workgroup loops
over several tiles / grid steps (the lowering's grids cover a test-sized copy in one step):
the word kernel's staged funnel shift (builtin_copy.wgsl, tiles of 1024 target words) at
lengths around whole tiles, every byte-offset pair, and the 16-byte block kernel. Bytes
inside the range are compared with numpy, bytes outside it must keep their values."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import random_bytes, submit_and_wait

import hal
from hal.core.builtins import copy4_params, copy_params, shader_source

TILE_BYTES = 4096
"""Target bytes of one staged tile of builtin_copy.wgsl (256 invocations x 4 words)."""

SIZE = 5 * TILE_BYTES + 64


def _run(
    device: hal.Device, name: str, entry: str, groups: int, params: bytes
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Dispatch ``entry`` of builtin ``name`` from one random buffer into another; return
    (source, target before, target after)."""
    src_np, dst_np = random_bytes(SIZE, 1), random_bytes(SIZE, 2)
    exe = device.create_executable(shader_source(name), label=name)
    with device.buffer_from_numpy(src_np) as src, device.buffer_from_numpy(dst_np) as dst:
        with device.record() as cb:
            cb.dispatch(exe, entry, (groups, 1, 1), constants=params, bindings=[src, dst])
        submit_and_wait(device, cb)
        return src_np, dst_np, dst.to_numpy(np.uint8, (SIZE,))


def _expect(src: np.ndarray, before: np.ndarray, s0: int, d0: int, length: int) -> np.ndarray:
    want = before.copy()
    want[d0 : d0 + length] = src[s0 : s0 + length]
    return want


@pytest.mark.parametrize(
    ("s0", "d0", "length", "groups"),
    [
        (1, 3, 4 * TILE_BYTES + 5, 1),  # one workgroup, five tiles, the last partial
        (1, 3, 4 * TILE_BYTES - 4, 2),  # whole tiles exactly (plus the partial edge words)
        (2, 1, 3 * TILE_BYTES + 4, 2),  # one word past whole tiles
        (3, 0, TILE_BYTES - 1, 1),  # under one tile
        (5, 130, 4 * TILE_BYTES + 777, 3),
        (7, 4, 9, 1),  # two partial words, one whole
        (0, 6, 2, 1),  # inside one target word
        (9, 2, 4 * TILE_BYTES + 1000, 64),  # more workgroups than tiles
    ],
)
def test_word_copy_shifted_tiles(
    device: hal.Device, s0: int, d0: int, length: int, groups: int
) -> None:
    src, before, got = _run(
        device, "builtin_copy.wgsl", "copy", groups, copy_params(s0, d0, length)
    )
    np.testing.assert_array_equal(got, _expect(src, before, s0, d0, length))


@pytest.mark.parametrize("shift", [1, 2, 3])
@pytest.mark.parametrize("d0", [0, 1, 2, 3])
def test_word_copy_every_offset_pair(device: hal.Device, shift: int, d0: int) -> None:
    s0 = d0 + shift
    length = 2 * TILE_BYTES + 3 * d0 + 1
    src, before, got = _run(device, "builtin_copy.wgsl", "copy", 1, copy_params(s0, d0, length))
    np.testing.assert_array_equal(got, _expect(src, before, s0, d0, length))


@pytest.mark.parametrize(("s0", "d0"), [(0, 0), (4, 8), (12, 0)])
def test_word_copy_equal_offsets_grid_stride(device: hal.Device, s0: int, d0: int) -> None:
    length = 4 * TILE_BYTES + 12
    src, before, got = _run(device, "builtin_copy.wgsl", "copy", 2, copy_params(s0, d0, length))
    np.testing.assert_array_equal(got, _expect(src, before, s0, d0, length))


@pytest.mark.parametrize(("blocks", "groups"), [(1, 1), (255, 1), (1023, 1), (1027, 2), (1200, 3)])
def test_block_copy_grid_stride(device: hal.Device, blocks: int, groups: int) -> None:
    src, before, got = _run(
        device, "builtin_copy4.wgsl", "copy4", groups, copy4_params(2, 1, blocks)
    )
    np.testing.assert_array_equal(got, _expect(src, before, 32, 16, 16 * blocks))
