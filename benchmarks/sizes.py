"""Byte sizes on benchmark command lines and in their tables (shared by the benchmark scripts,
which run as scripts: this folder is their ``sys.path[0]``)."""

from __future__ import annotations

KIB, MIB, GIB = 1 << 10, 1 << 20, 1 << 30


def parse_size(text: str) -> int:
    """``"4K"``, ``"16M"``, ``"1G"`` (also ``"4KiB"``, ``"16MB"``) or plain bytes. Raises
    ValueError for anything else."""
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    scale = {"K": KIB, "M": MIB, "G": GIB}.get(text[-1:], 1)
    return int(text[:-1] if scale > 1 else text) * scale


def human(size: int) -> str:
    """``4096`` -> ``"4 KiB"``; sizes that are no whole multiple stay in bytes."""
    for unit, scale in (("GiB", GIB), ("MiB", MIB), ("KiB", KIB)):
        if size >= scale and size % scale == 0:
            return f"{size // scale} {unit}"
    return f"{size} B"
