"""Builtin WGSL kernels (fill, copy) that do what WebGPU's transfer commands cannot.

The lowering refers to them by :class:`BuiltinKernel` and packs their parameters with the
pure helpers here; the device's encoder resolves each kernel to a compiled pipeline.
"""

from __future__ import annotations

import enum
import struct
from importlib import resources
from pathlib import Path
from typing import Any

from hal.errors import InvalidArgumentError

__all__ = [
    "CPU_TABLE_LANES",
    "CPU_TABLE_WORKGROUPS",
    "TABLE_KERNELS",
    "TABLE_LANES",
    "WORKGROUP_SIZE",
    "BuiltinKernel",
    "allocation_size",
    "block_grid",
    "copy4_params",
    "copy_params",
    "fill4_params",
    "fill_params",
    "pads_to_blocks",
    "shader_path",
    "shader_source",
    "words_touched",
]

WORKGROUP_SIZE = 256
"""Invocations per workgroup of every builtin kernel."""

MAX_WORKGROUPS = 65535
"""Builtins loop over their range (grid stride), so this many workgroups cover any size.
65535 is every WebGPU adapter's per-dimension minimum; on the H200 a 1 GiB unaligned copy
ran 1.7x faster on it than on 4096 workgroups (benchmarks/README.md, "Workloads")."""

CPU_WORD_WORKGROUPS = 4096
"""The word kernels' grid on a CPU adapter, which pays per workgroup (lavapipe: a 16 MiB
unaligned copy 39 ms on 4096 workgroups, 76 ms on 65535)."""

TABLE_LANES = 256
"""Invocations per workgroup of the table kernels (``builtin_*_table.wgsl``) on a GPU."""

CPU_TABLE_LANES = 8
"""The table kernels' invocations per workgroup on a CPU adapter: llvmpipe runs a workgroup's
invocations as loops of its SIMD width (8 lanes of 32 bits on AVX2), so a 256-lane workgroup
doing a 64-word entry spends three quarters of its time on idle lanes."""

CPU_TABLE_WORKGROUPS = 16
"""The table kernels' grid on a CPU adapter (each workgroup loops over every
``CPU_TABLE_WORKGROUPS``-th entry): lavapipe pays per workgroup; a few per core suffice."""


class BuiltinKernel(enum.Enum):
    """A builtin kernel: its shader file and entry point."""

    FILL = ("builtin_fill.wgsl", "fill")
    COPY = ("builtin_copy.wgsl", "copy")
    FILL4 = ("builtin_fill4.wgsl", "fill4")
    COPY4 = ("builtin_copy4.wgsl", "copy4")
    FILL_TABLE = ("builtin_fill_table.wgsl", "fill_table")
    COPY_TABLE = ("builtin_copy_table.wgsl", "copy_table")
    COPY_WITHIN = ("builtin_copy_within.wgsl", "copy_within")
    COPY16 = ("builtin_copy16.wgsl", "copy16")

    @property
    def entry_point(self) -> str:
        """The WGSL entry point name."""
        return self.value[1]


TABLE_KERNELS = frozenset({BuiltinKernel.FILL_TABLE, BuiltinKernel.COPY_TABLE})
"""The kernels that take a table of ranges (hal/core/batching.py) and the ``lanes`` constant."""


def _shaders() -> Any:
    """The shipped WGSL folder: the repository's ``shaders/`` next to the ``hal`` package when
    running from a checkout (so a worktree uses its own kernels, not those an editable install
    maps), else package data ``hal.shaders``."""
    checkout = Path(__file__).resolve().parents[2] / "shaders"
    if checkout.joinpath("builtin_copy.wgsl").is_file():
        return checkout
    return resources.files("hal.shaders")


def shader_source(name: str) -> str:
    """The text of a WGSL file shipped in ``hal.shaders`` (e.g. ``"elementwise.wgsl"``)."""
    return _shaders().joinpath(name).read_text()


def shader_path(name: str) -> str:
    """A filesystem path of a shipped WGSL file (for ``create_executable(path)``). Raises
    InvalidArgumentError for a name that is not a str or not a shipped file."""
    folder = _shaders()
    if not isinstance(name, str) or not folder.joinpath(name).is_file():
        shipped = sorted(p.name for p in folder.iterdir() if p.name.endswith(".wgsl"))
        raise InvalidArgumentError(
            f"shader_path: name {name!r} is not a shipped WGSL file (shipped: {', '.join(shipped)})"
        )
    return str(folder.joinpath(name))


def words_touched(first_byte: int, end_byte: int) -> int:
    """4-byte words that bytes ``[first_byte, end_byte)`` touch (partial edge words too)."""
    return (end_byte + 3) // 4 - first_byte // 4


def allocation_size(size: int, max_buffer_size: int) -> int:
    """Bytes of the backend buffer behind a ``size``-byte allocation: whole 16-byte blocks (so
    the unaligned copy can bind 16-byte windows, ``builtin_copy16.wgsl``) where that fits in
    ``max_buffer_size``, else whole 4-byte words (so word kernels can read-modify-write the
    last partial word); never empty. Any window ending at or below ``max_buffer_size``
    rounded down to 16 can thus be rounded up to 16 inside its allocation."""
    blocks = max(16, -(-size // 16) * 16)
    return blocks if blocks <= max_buffer_size else max(4, -(-size // 4) * 4)


def pads_to_blocks(size: int, max_buffer_size: int) -> bool:
    """Whether :func:`allocation_size` pads a ``size``-byte allocation to whole 16-byte
    blocks: then any window inside its first ``size`` bytes rounds up to whole blocks inside
    the allocation."""
    # allocation_size's two cases, inline (a rebase computes this per slot per new table):
    # whole blocks always pad; the word fallback pads where it happens to be whole blocks.
    return max(16, -(-size // 16) * 16) <= max_buffer_size or max(4, -(-size // 4) * 4) % 16 == 0


def workgroups_for(units: int, limit: int = MAX_WORKGROUPS) -> int:
    """Workgroups a builtin dispatch over ``units`` words (or 16-byte blocks) uses: one
    invocation per unit up to ``limit`` workgroups, beyond which the kernels loop."""
    return max(1, min(limit, -(-units // WORKGROUP_SIZE)))


def block_grid(blocks: int, limit: int = MAX_WORKGROUPS) -> tuple[int, int, int]:
    """Workgroups of a ``builtin_copy4.wgsl`` dispatch over ``blocks`` 16-byte blocks: one
    invocation per block, as (x, 1, 1) while x fits in ``limit``, else on two dimensions
    (x, y, 1) with x * y workgroups just covering them (the kernel indexes by
    ``y * x_count + x``); past ``limit`` squared workgroups the kernel loops. On the H200 a
    1 GiB copy ran 1.9% faster so than on a capped 65535-workgroup grid
    (benchmarks/README.md, "H200, session 21")."""
    groups = max(1, -(-blocks // WORKGROUP_SIZE))
    if groups <= limit:
        return (groups, 1, 1)
    rows = min(limit, -(-groups // limit))
    return (min(limit, -(-groups // rows)), rows, 1)


def fill_params(begin: int, length: int, pattern_word: int) -> bytes:
    """Immediate bytes of a fill of ``length`` bytes from window byte ``begin``."""
    end = begin + length
    return struct.pack("<4I", begin, end, pattern_word, words_touched(begin, end))


def copy_params(src_begin: int, dst_begin: int, length: int) -> bytes:
    """Immediate bytes of a copy of ``length`` bytes between window bytes."""
    return struct.pack(
        "<4I", src_begin, dst_begin, length, words_touched(dst_begin, dst_begin + length)
    )


def fill4_params(begin_block: int, count: int, pattern_word: int) -> bytes:
    """Immediate bytes of a 16-byte-block fill."""
    return struct.pack("<4I", begin_block, count, pattern_word, 0)


def copy4_params(src_block: int, dst_block: int, count: int) -> bytes:
    """Immediate bytes of a 16-byte-block copy."""
    return struct.pack("<4I", src_block, dst_block, count, 0)
