"""``python -m hal run``: run one WGSL entry point on .npy inputs (like IREE's
iree-run-module) and write its outputs as .npy.

Inputs bind to ``@binding(0..k-1)`` in order, outputs (allocated, zero-filled) after them.
Everything that can be checked without a GPU — files, specs, the entry point, the binding
count, the constants — is checked first and raises :class:`UsageError` (exit code 2).
"""

from __future__ import annotations

import argparse
import re
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from hal.errors import InvalidArgumentError, OutOfRangeError

if TYPE_CHECKING:
    from hal.core.wgsl import EntryPointDecl, ModuleInfo
    from hal.runtime.buffer import Buffer
    from hal.runtime.device import Device

__all__ = [
    "KernelInterface",
    "OutputSpec",
    "UsageError",
    "inspect_kernel",
    "load_input",
    "pack_constants",
    "parse_dtype",
    "parse_output",
    "parse_shape",
    "parse_workgroups",
    "run_command",
]

_DTYPE_ALIASES = {
    "f16": "float16",
    "f32": "float32",
    "f64": "float64",
    "i8": "int8",
    "i16": "int16",
    "i32": "int32",
    "i64": "int64",
    "u8": "uint8",
    "u16": "uint16",
    "u32": "uint32",
    "u64": "uint64",
}
_SCALAR_FORMATS = {"u32": "<I", "i32": "<i", "f32": "<f"}


class UsageError(Exception):
    """A command-line mistake (missing file, malformed spec, wrong entry point or binding
    count, bad constants): the CLI prints it and exits with status 2."""


# -- parsing --------------------------------------------------------------------------------


def parse_dtype(text: str, what: str) -> np.dtype[Any]:
    """A numpy dtype from a name (``float32``) or a short alias (``f32``, ``u8``, …).

    Raises UsageError for an unknown name or a non-numeric dtype."""
    name = _DTYPE_ALIASES.get(text.strip().lower(), text.strip())
    try:
        dtype = np.dtype(name)
    except TypeError:
        raise UsageError(f"{what}: unknown dtype {text!r} (e.g. float32, f32, int32, u8)") from None
    if dtype.kind not in "biuf":
        raise UsageError(f"{what}: dtype {dtype} is not a numeric type")
    return dtype


def parse_shape(text: str, what: str = "shape") -> tuple[int, ...]:
    """A shape from ``64x64``, ``64,64`` or ``4096``; ``()``, ``scalar`` or an empty text
    mean a 0-d array. Raises UsageError for anything else."""
    t = text.strip().lower()
    if t in ("", "()", "scalar"):
        return ()
    parts = t.strip("()").replace(",", "x").split("x")
    try:
        dims = tuple(int(p) for p in parts)
    except ValueError:
        raise UsageError(
            f"{what}: shape {text!r} is not non-negative integers separated by 'x' or ','"
        ) from None
    if any(d < 0 for d in dims):
        raise UsageError(f"{what}: shape {text!r} has a negative dimension")
    return dims


@dataclass(frozen=True, slots=True)
class OutputSpec:
    """An ``--output PATH:DTYPE:SHAPE`` argument."""

    path: Path
    dtype: np.dtype[Any]
    shape: tuple[int, ...]

    @property
    def nbytes(self) -> int:
        """Bytes of the output buffer."""
        return int(np.prod(self.shape, dtype=np.int64)) * self.dtype.itemsize


def parse_output(text: str) -> OutputSpec:
    """Parse ``out.npy:float32:64x64``. Raises UsageError for a malformed spec or an output
    folder that does not exist."""
    parts = text.rsplit(":", 2)
    if len(parts) != 3 or not parts[0]:
        raise UsageError(
            f"--output {text!r}: expected PATH:DTYPE:SHAPE, e.g. out.npy:float32:64x64"
        )
    path = Path(parts[0])
    what = f"--output {text!r}"
    spec = OutputSpec(path, parse_dtype(parts[1], what), parse_shape(parts[2], what))
    if not path.parent.is_dir():
        raise UsageError(f"{what}: folder {str(path.parent)!r} does not exist")
    if path.is_dir():
        raise UsageError(f"{what}: {str(path)!r} is a folder")
    return spec


def parse_workgroups(text: str) -> tuple[int, int, int]:
    """``X,Y,Z`` (or ``X`` / ``X,Y``; missing counts are 1; ``x`` also separates) into a
    triple. Raises UsageError for anything but non-negative integers."""
    parts = text.strip().lower().replace("x", ",").split(",")
    try:
        counts = [int(p) for p in parts]
    except ValueError:
        raise UsageError(
            f"--workgroups {text!r}: expected X,Y,Z with non-negative integers"
        ) from None
    if not 1 <= len(counts) <= 3 or any(c < 0 for c in counts):
        raise UsageError(f"--workgroups {text!r}: expected X,Y,Z with non-negative integers")
    counts += [1] * (3 - len(counts))
    return (counts[0], counts[1], counts[2])


def load_input(text: str) -> tuple[str, np.ndarray]:
    """Load ``a.npy`` (or ``a.npy:DTYPE`` to convert) into a C-contiguous array.

    Raises UsageError for a missing or unreadable file, a non-numeric array or a bad dtype."""
    path_text, dtype = text, None
    if ":" in text:
        head, tail = text.rsplit(":", 1)
        if head and not Path(text).exists():
            path_text, dtype = head, parse_dtype(tail, f"--input {text!r}")
    path = Path(path_text)
    if not path.is_file():
        raise UsageError(f"--input {text!r}: no such file")
    try:
        array = np.load(path, allow_pickle=False)
    except (OSError, ValueError, EOFError) as error:
        raise UsageError(f"--input {text!r}: not a readable .npy file ({error})") from None
    if not isinstance(array, np.ndarray):
        raise UsageError(f"--input {text!r}: an .npz archive; pass single .npy arrays")
    if array.dtype.kind not in "biuf":
        raise UsageError(f"--input {text!r}: dtype {array.dtype} is not numeric")
    if dtype is not None:
        array = array.astype(dtype)
    return str(path), np.asarray(array, order="C")  # keeps 0-d arrays 0-d


# -- the kernel's interface -------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class KernelInterface:
    """What a dispatch of one entry point needs, read from the WGSL without a GPU:
    ``bindings`` as (index, kind, name) for the bindings it uses, ``binding_count``
    (highest used + 1), the immediate block's byte size (0 if unused) and the scalar type of
    each 32-bit constant slot (None where unknown)."""

    entry: str
    bindings: tuple[tuple[int, str, str], ...]
    binding_count: int
    constants_size: int
    constant_types: tuple[str | None, ...]

    def describe(self) -> str:
        """The bindings as ``@binding(i) name (kind)``, comma separated."""
        if not self.bindings:
            return "no bindings"
        return ", ".join(f"@binding({i}) {name} ({kind})" for i, kind, name in self.bindings)


def _constant_types(source: str, info: ModuleInfo) -> tuple[str | None, ...]:
    """The scalar type of each 4-byte slot of the immediate block, from the reflected
    fields (None for padding and 16-bit fields); () when unknown."""
    if info.immediate_type is None or not info.immediate_fields:
        return ()
    types: list[str | None] = [None] * (info.immediate_size // 4)
    for field in info.immediate_fields:
        if field.scalar in _SCALAR_FORMATS and field.offset % 4 == 0:
            types[field.offset // 4] = field.scalar
    return tuple(types)


def inspect_kernel(source: str, path: str, entry: str | None) -> KernelInterface:
    """Reflect ``entry`` of WGSL ``source`` (the only entry point when ``entry`` is None).

    Raises UsageError for an unknown or ambiguous entry point or a module without one, and
    InvalidArgumentError for WGSL the reflector cannot read (a kernel problem: exit 1)."""
    from hal.core.wgsl import reflect

    try:
        info = reflect(source)
    except ValueError as error:
        raise InvalidArgumentError(f"{path}: {error}") from None
    names = [ep.name for ep in info.entry_points]
    if not names:
        raise UsageError(f"{path}: no @compute entry point")
    if entry is None:
        if len(names) > 1:
            raise UsageError(
                f"{path} has several entry points; pick one with --entry ({', '.join(names)})"
            )
        entry = names[0]
    found: EntryPointDecl | None = next((ep for ep in info.entry_points if ep.name == entry), None)
    if found is None:
        raise UsageError(
            f"--entry {entry!r}: no such @compute entry point in {path} "
            f"(entry points: {', '.join(names)})"
        )
    used = sorted(
        (b.binding, b.kind, b.name) for b in info.bindings if b.name in found.uses and b.group == 0
    )
    uses_constants = info.immediate_name is not None and info.immediate_name in found.uses
    return KernelInterface(
        entry,
        tuple(used),
        used[-1][0] + 1 if used else 0,
        info.immediate_size if uses_constants else 0,
        _constant_types(source, info) if uses_constants else (),
    )


_INT = re.compile(r"[+-]?(0[xX][0-9a-fA-F]+|0[bB][01]+|\d+)[uUiI]?")


def _to_int(text: str) -> int:
    """An integer literal: decimal, ``0x`` hex or ``0b`` binary, optional WGSL ``u``/``i``
    suffix. Raises ValueError."""
    t = text.strip().rstrip("uUiI")
    body = t.lstrip("+-")
    base = 16 if body[:2].lower() == "0x" else 2 if body[:2].lower() == "0b" else 10
    return int(t, base)


def pack_constants(values: list[str], kernel: KernelInterface) -> bytes:
    """Pack ``--constants`` values into the immediate block's bytes, one 32-bit slot each.

    A value may carry its type (``u32:5``, ``i32:-1``, ``f32:2``); otherwise it takes the
    type of its slot in the kernel's ``var<immediate>`` struct or array, and where that is
    unknown an integer literal packs as u32 (i32 if negative) and anything else as f32.
    Raises UsageError for malformed values, values that don't fit their type, or more values
    than the block holds."""
    from hal.core.checks import pack_scalar  # the one conversion dispatch constants use

    slots = kernel.constants_size // 4
    if len(values) > slots:
        declared = (
            f"{kernel.constants_size} bytes ({slots} values)"
            if slots
            else "no var<immediate> block"
        )
        raise UsageError(
            f"--constants: {len(values)} values given, but entry {kernel.entry!r} uses {declared}"
        )
    data = bytearray()
    for i, raw in enumerate(values):
        text = raw.strip()
        kind: str | None = None
        if ":" in text:
            kind, text = (p.strip() for p in text.split(":", 1))
            if kind not in _SCALAR_FORMATS:
                raise UsageError(f"--constants[{i}] {raw!r}: type must be u32, i32 or f32")
        elif i < len(kernel.constant_types):
            kind = kernel.constant_types[i]
        is_int = _INT.fullmatch(text) is not None
        if kind is None:
            kind = ("i32" if text.startswith("-") else "u32") if is_int else "f32"
        try:
            if kind == "f32":
                value: float | int = float(text)
            elif is_int:
                value = _to_int(text)
            else:
                raise ValueError
        except ValueError:
            raise UsageError(f"--constants[{i}] {raw!r} is not a valid {kind} value") from None
        try:
            data += pack_scalar("--constants", f"--constants[{i}]", value, kind)
        except InvalidArgumentError:
            raise UsageError(f"--constants[{i}] {raw!r} does not fit in {kind}") from None
    return bytes(data)


def _split_values(items: list[str] | None) -> list[str]:
    return [v for item in items or () for v in item.split(",") if v.strip()]


def _parse_overrides(items: list[str] | None) -> dict[str, float | int | bool]:
    overrides: dict[str, float | int | bool] = {}
    for item in items or ():
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise UsageError(f"--override {item!r}: expected NAME=VALUE")
        text = value.strip().lower()
        try:
            if text in ("true", "false"):
                overrides[name.strip()] = text == "true"
            elif _INT.fullmatch(text):
                overrides[name.strip()] = _to_int(text)
            else:
                overrides[name.strip()] = float(text)
        except ValueError:
            raise UsageError(f"--override {item!r}: {value!r} is not a number") from None
    return overrides


# -- running --------------------------------------------------------------------------------


def _preview(array: np.ndarray) -> str:
    with np.printoptions(threshold=8, edgeitems=3, precision=6, linewidth=200):
        return " ".join(str(array).split())


def _format_ms(seconds: float) -> str:
    return f"{seconds * 1e3:.3f} ms"


def run_command(args: argparse.Namespace, open_device: Any) -> int:
    """Run ``python -m hal run`` for parsed ``args``; ``open_device(adapter)`` opens the
    device. Returns 0; raises UsageError (exit 2) and HalError/OSError (exit 1)."""
    kernel_path = Path(args.kernel)
    if not kernel_path.is_file():
        raise UsageError(f"kernel {args.kernel!r}: no such file")
    try:
        source = kernel_path.read_text()
    except (OSError, UnicodeDecodeError) as error:
        raise UsageError(f"kernel {args.kernel!r}: cannot read it ({error})") from None
    kernel = inspect_kernel(source, args.kernel, args.entry)
    workgroups = parse_workgroups(args.workgroups)
    inputs = [load_input(item) for item in args.input or ()]
    outputs = [parse_output(item) for item in args.output or ()]
    if args.repeat < 1:
        raise UsageError(f"--repeat {args.repeat}: must be at least 1")
    if len(inputs) + len(outputs) != kernel.binding_count:
        raise UsageError(
            f"entry {kernel.entry!r} takes {kernel.binding_count} bindings "
            f"({kernel.describe()}), but {len(inputs)} input(s) + {len(outputs)} output(s) "
            "were given (inputs bind first, then outputs)"
        )
    constants = pack_constants(_split_values(args.constants), kernel)
    overrides = _parse_overrides(args.override)
    kinds = {i: kind for i, kind, _ in kernel.bindings}
    for j, spec in enumerate(outputs):
        kind = kinds.get(len(inputs) + j)
        if kind is not None and kind != "storage":
            print(
                f"warning: output {spec.path} is bound to @binding({len(inputs) + j}), which "
                f"{kernel.entry!r} declares {kind}: the kernel cannot write it",
                file=sys.stderr,
            )

    with open_device(args.adapter) as device:
        return _execute(
            args, device, source, kernel, workgroups, inputs, outputs, constants, overrides
        )


def _execute(
    args: argparse.Namespace,
    device: Device,
    source: str,
    kernel: KernelInterface,
    workgroups: tuple[int, int, int],
    inputs: list[tuple[str, np.ndarray]],
    outputs: list[OutputSpec],
    constants: bytes,
    overrides: dict[str, float | int | bool],
) -> int:
    from hal.enums import CommandBufferMode

    quiet = args.quiet
    limit = device.caps.max_workgroups
    if max(workgroups) > limit:
        raise UsageError(
            f"--workgroups {args.workgroups}: the adapter allows at most {limit} per dimension"
        )
    executable = device.create_executable(
        source, constants=overrides or None, label=Path(args.kernel).name
    )
    input_buffers = [device.buffer_from_numpy(array) for _, array in inputs]
    output_buffers = [device.allocate_buffer(spec.nbytes) for spec in outputs]
    bindings: list[Buffer] = [*input_buffers, *output_buffers]
    try:
        with device.record(mode=CommandBufferMode.DEFAULT) as cb:
            cb.dispatch(
                executable, kernel.entry, workgroups, constants=constants, bindings=bindings
            )
    except (InvalidArgumentError, OutOfRangeError) as error:
        raise UsageError(str(error)) from None
    if not quiet:
        print(f"device: {device.info}")
        print(
            f"kernel: {args.kernel} entry {kernel.entry!r}, workgroups {workgroups}, "
            f"{len(inputs)} input(s), {len(outputs)} output(s), {len(constants)} bytes of "
            "constants"
        )
        for (path, array), i in zip(inputs, range(len(inputs)), strict=True):
            print(f"  @binding({i}) <- {path} {array.dtype} {array.shape}")

    # Inputs the kernel may write are restored before every repetition, outputs re-zeroed, so
    # every run starts from the same state and the outputs are those of one run.
    writable = {i for i, kind, _ in kernel.bindings if kind == "storage"}
    restore = [(input_buffers[i], inputs[i][1]) for i in range(len(inputs)) if i in writable]
    semaphore = device.create_semaphore()
    value = 0
    samples: list[float] = []
    for run in range(args.repeat):
        if run:
            for buffer, array in restore:
                device.queue_update(array.reshape(-1).view(np.uint8), 0, buffer, 0, array.nbytes)
            for buffer in output_buffers:
                device.queue_fill(buffer, 0, None, 0, 1)
            value += 1
            device.queue_barrier(signal=[(semaphore, value)])
            semaphore.wait(value, timeout=args.timeout)
        value += 1
        start = time.perf_counter()
        device.queue_execute(cb, signal=[(semaphore, value)])
        semaphore.wait(value, timeout=args.timeout)
        samples.append(time.perf_counter() - start)

    results = [
        buffer.to_numpy(spec.dtype, spec.shape)
        for buffer, spec in zip(output_buffers, outputs, strict=True)
    ]
    for buffer in bindings:
        buffer.release()
    for spec, array in zip(outputs, results, strict=True):
        with spec.path.open("wb") as file:  # np.save(path) would append ".npy"
            np.save(file, array, allow_pickle=False)
        if not quiet:
            print(f"  -> {spec.path} {array.dtype} {array.shape}: {_preview(array)}")
    rest = samples[1:]
    line = f"timing: first run {_format_ms(samples[0])} (with one-time costs: lowering, first use)"
    if rest:
        line += (
            f"; then median {_format_ms(statistics.median(rest))}, min {_format_ms(min(rest))} "
            f"over {len(rest)} run(s)"
        )
    print(line + " [queue_execute + wait]")
    return 0
