"""Variants of hal's builtin copy kernels and of the f16 matmul, timed side by side in one run
(issue 16, session 20): which block copy shape (invocations per workgroup x blocks per step),
which unaligned copy (staged through workgroup memory, PER words per invocation, against the
previous kernel given by ``--old-copy``; the 16-byte-access one, builtin_copy16.wgsl, with
1, 2 or 4 blocks a step or staged through workgroup memory) and which f16 tile shape
(``fma`` or a contractible product and sum) is fastest. Every transfer variant is checked
byte for byte, every matmul against numpy on sampled rows.

    python3 benchmarks/kernel_sweep.py --json out.json [--old-copy old_builtin_copy.wgsl]
    python3 benchmarks/kernel_sweep.py --quick       # small sizes (lavapipe smoke run)
    python3 benchmarks/kernel_sweep.py --only copy,copy16 --json out.json  # copies only
"""

from __future__ import annotations

import argparse
import json
import os
import time
from collections.abc import Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

import numpy as np
import workloads

import hal
from hal.core.builtins import block_grid, copy4_params, copy_params, shader_source
from hal.core.lowering import LoweringOptions, lower
from hal.enums import CommandBufferMode
from hal.examples.matmul_wgsl import MatmulConfig
from hal.runtime.encoder import compile_plan

Row = dict[str, Any]

MATMUL_F16 = [
    MatmulConfig(128, 256, 16, 16, 16),
    MatmulConfig(256, 128, 8, 16, 8),
    MatmulConfig(128, 256, 8, 8, 16),
    MatmulConfig(128, 128, 8, 8, 8),
    MatmulConfig(128, 256, 32, 16, 16),
    MatmulConfig(256, 256, 16, 16, 16),
    MatmulConfig(128, 512, 8, 8, 32),
    MatmulConfig(256, 128, 16, 16, 8),
    MatmulConfig(64, 256, 16, 8, 16),
]
"""f16 tile shapes, each timed with ``fused`` on and off."""


def copy4_variant(wg: int, per: int) -> str:
    """A 16-byte block copy with ``wg`` invocations per workgroup and ``per`` blocks a step,
    each a grid apart, all loaded before any store."""
    loads = "\n".join(f"    let v{j} = src[s + i + {j}u * stride];" for j in range(per))
    stores = "\n".join(f"    dst[d + i + {j}u * stride] = v{j};" for j in range(per))
    return f"""struct P {{ s: u32, d: u32, count: u32, _pad: u32 }}
var<immediate> params: P;
@group(0) @binding(0) var<storage, read_write> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;
@compute @workgroup_size({wg})
fn copy4(@builtin(global_invocation_id) gid: vec3<u32>,
         @builtin(num_workgroups) groups: vec3<u32>) {{
  let stride = groups.x * {wg}u;
  let count = params.count;
  let s = params.s;
  let d = params.d;
  var i = gid.x;
  for (; i + {per - 1}u * stride < count; i += {per}u * stride) {{
{loads}
{stores}
  }}
  for (; i < count; i += stride) {{ dst[d + i] = src[s + i]; }}
}}
"""


_COPY4_HEAD = """struct P {{ s: u32, d: u32, count: u32, _pad: u32 }}
var<immediate> params: P;
@group(0) @binding(0) var<storage, read_write> src: array<vec4<u32>>;
@group(0) @binding(1) var<storage, read_write> dst: array<vec4<u32>>;
@compute @workgroup_size({wg})
fn copy4(@builtin(local_invocation_index) lid: u32,
         @builtin(workgroup_id) wid: vec3<u32>,
         @builtin(num_workgroups) groups: vec3<u32>) {{
  let count = params.count;
  let s = params.s;
  let d = params.d;
  let group = wid.y * groups.x + wid.x;
"""


def copy4_grid_variant(wg: int, per: int, chunk: bool) -> str:
    """A 16-byte block copy on a one- or two-dimensional grid (so an exact grid of one
    invocation per ``per`` blocks fits any size): ``wg`` invocations per workgroup, ``per``
    blocks a step, every load of a step before its first store, straight-line code. Each
    step's blocks lie a grid apart (grid stride) or, ``chunk``, ``wg`` apart inside a run of
    ``wg * per`` consecutive blocks per workgroup."""
    head = _COPY4_HEAD.format(wg=wg)
    if chunk:
        loads = "\n".join(f"      let v{j} = src[s + i + {j * wg}u];" for j in range(per))
        stores = "\n".join(f"      dst[d + i + {j * wg}u] = v{j};" for j in range(per))
        return (
            head
            + f"""  let run = {wg * per}u;
  let step = groups.x * groups.y * run;
  for (var base = group * run; base < count; base += step) {{
    let i = base + lid;
    if (base + run <= count) {{
{loads}
{stores}
    }} else {{
      for (var j = 0u; j < {per}u; j++) {{
        if (i + j * {wg}u < count) {{ dst[d + i + j * {wg}u] = src[s + i + j * {wg}u]; }}
      }}
    }}
  }}
}}
"""
        )
    loads = "\n".join(f"    let v{j} = src[s + i + {j}u * stride];" for j in range(per))
    stores = "\n".join(f"    dst[d + i + {j}u * stride] = v{j};" for j in range(per))
    return (
        head
        + f"""  let stride = groups.x * groups.y * {wg}u;
  var i = group * {wg}u + lid;
  for (; i + {per - 1}u * stride < count; i += {per}u * stride) {{
{loads}
{stores}
  }}
  for (; i < count; i += stride) {{ dst[d + i] = src[s + i]; }}
}}
"""
    )


def grid(units: int, exact: bool) -> tuple[int, int, int]:
    """Workgroups for ``units`` workgroups' worth of work: all of them on a 2-D grid
    (``exact``) or at most 65535 on one dimension (the builtins' capped grid)."""
    if not exact:
        return (max(1, min(65535, units)), 1, 1)
    rows = -(-units // 65535)
    return (-(-units // rows), rows, 1)


def copy16_variant(per: int, staged: bool) -> str:
    """builtin_copy16.wgsl with ``per`` target blocks a step (each a grid apart, all source
    loads before any store), or, ``staged``, tiles of 512 target blocks whose 513 source
    blocks go through workgroup memory first (one global load per source block)."""
    text = shader_source("builtin_copy16.wgsl")
    head, _, _ = text.partition("@compute")
    if staged:
        return head + _COPY16_STAGED
    loads = "\n".join(
        f"    let a{j} = source_blocks[s0 + i + {j}u * stride];\n"
        f"    let b{j} = source_blocks[s0 + i + {j}u * stride + next];"
        for j in range(per)
    )
    stores = "\n".join(
        f"    target_blocks[lo + i + {j}u * stride] = assemble(a{j}, b{j}, q, r);"
        for j in range(per)
    )
    return head + _COPY16_MAIN.format(last=per - 1, per=per, loads=loads, stores=stores)


_COPY16_PROLOGUE = """  let dst_begin = params.dst_begin;
  let dst_end = dst_begin + params.length;
  let src_begin = params.src_begin;
  let lo = (dst_begin + 15u) / 16u;
  let hi = max(dst_end / 16u, lo);
  let count = hi - lo;
  let stride = groups.x * 256u;
  let delta = src_begin - dst_begin;
  let m = delta & 15u;
  let q = m >> 2u;
  let r = (m & 3u) * 8u;
  let s0 = (lo * 16u + delta) >> 4u;
  let next = select(0u, 1u, m != 0u);
"""

_COPY16_EPILOGUE = """  if (gid.x == 0u && dst_begin / 16u < lo) {
    patch_block(dst_begin / 16u, dst_begin, dst_end, src_begin);
  }
  if (gid.x == 1u && hi < (dst_end + 15u) / 16u) {
    patch_block(hi, dst_begin, dst_end, src_begin);
  }
}
"""

_COPY16_MAIN = (
    """@compute @workgroup_size(256)
fn copy16(@builtin(global_invocation_id) gid: vec3<u32>,
          @builtin(num_workgroups) groups: vec3<u32>) {{
"""
    + _COPY16_PROLOGUE.replace("{", "{{").replace("}", "}}")
    + """  var i = gid.x;
  for (; i + {last}u * stride < count; i += {per}u * stride) {{
{loads}
{stores}
  }}
  for (; i < count; i += stride) {{
    target_blocks[lo + i] = assemble(source_blocks[s0 + i], source_blocks[s0 + i + next], q, r);
  }}
"""
    + _COPY16_EPILOGUE.replace("{", "{{").replace("}", "}}")
)

_COPY16_STAGED = (
    """var<workgroup> staged: array<vec4<u32>, 513>;

fn staged_source(s0: u32, i: u32, count: u32, next: u32) -> vec4<u32> {
  var v = vec4<u32>(0u);
  if (i < count + next) { v = source_blocks[s0 + i]; }
  return v;
}

@compute @workgroup_size(256)
fn copy16(@builtin(global_invocation_id) gid: vec3<u32>,
          @builtin(workgroup_id) wid: vec3<u32>,
          @builtin(local_invocation_index) lane: u32,
          @builtin(num_workgroups) groups: vec3<u32>) {
"""
    + _COPY16_PROLOGUE
    + """  let tiles = (count + 511u) / 512u;
  for (var t = wid.x; t < tiles; t += groups.x) {
    let base = t * 512u + lane;
    let a = staged_source(s0, base, count, next);
    let b = staged_source(s0, base + 256u, count, next);
    var e = vec4<u32>(0u);
    if (lane == 0u) { e = staged_source(s0, t * 512u + 512u, count, next); }
    staged[lane] = a;
    staged[lane + 256u] = b;
    if (lane == 0u) { staged[512] = e; }
    workgroupBarrier();
    if (base < count) {
      target_blocks[lo + base] = assemble(staged[lane], staged[lane + 1u], q, r);
    }
    if (base + 256u < count) {
      target_blocks[lo + base + 256u] = assemble(staged[lane + 256u], staged[lane + 257u], q, r);
    }
    workgroupBarrier();
  }
"""
    + _COPY16_EPILOGUE
)


def time_transfer(
    device: hal.Device,
    exe: Any,
    entry: str,
    groups: int | tuple[int, int, int],
    params: bytes,
    bufs: Any,
    reps: int,
) -> float:
    """Seconds per dispatch: 8 per submission with a barrier between each two."""
    shape = groups if isinstance(groups, tuple) else (groups, 1, 1)
    with device.record(mode=CommandBufferMode.DEFAULT) as cb:
        for i in range(workloads.TRANSFERS_PER_SUBMIT):
            if i:
                cb.execution_barrier()
            cb.dispatch(exe, entry, shape, constants=params, bindings=list(bufs))
    return workloads.replay_seconds(device, cb, reps) / workloads.TRANSFERS_PER_SUBMIT


def _backend_timer(device: hal.Device, program: Any, reps: int) -> Callable[[], float]:
    """A timer of ``program`` (anything with ``encode()``) submitted ``reps`` times straight
    through the backend, back to back, one wait at the end, seconds per transfer of
    :data:`workloads.TRANSFERS_PER_SUBMIT`."""
    backend = device.backend

    def run(count: int) -> None:
        ticket = 0
        for _ in range(count):
            with backend.submission_lock:
                ticket = backend.submit([program.encode()])
        backend.wait(ticket)

    def timer() -> float:
        run(2)
        start = time.perf_counter()
        run(reps)
        return (time.perf_counter() - start) / reps / workloads.TRANSFERS_PER_SUBMIT

    return timer


def plan_timer(
    device: hal.Device, source: hal.Buffer, target: hal.Buffer, size: int, transfers: str, reps: int
) -> Callable[[], float]:
    """A timer of 8 aligned copies of ``size`` bytes per submission (a barrier between each
    two) lowered with ``LoweringOptions(transfers=transfers)`` ("native": wgpu's
    ``copy_buffer_to_buffer``; "kernel": the builtin block kernel; "auto": the cost
    model's choice), submitted back to back through the backend as calibrate.py does,
    seconds per copy."""
    cb = device.create_command_buffer(CommandBufferMode.DEFAULT)
    cb.begin()
    for i in range(workloads.TRANSFERS_PER_SUBMIT):
        if i:
            cb.execution_barrier()
        cb.copy_buffer(source, 0, target, 0, size)
    cb.end()
    program = compile_plan(
        lower(cb.segments, device.caps, LoweringOptions(transfers=transfers)), device.encoding
    )
    return _backend_timer(device, program, reps)


def _torch_copy(size: int, reps: int) -> Callable[[], float | None] | None:
    """A timer of torch's ``copy_`` of ``size`` bytes (int32) on the same GPU, or None."""
    torch = workloads._torch()
    if torch is None:
        return None
    a = torch.arange(size // 4, dtype=torch.int32, device="cuda")
    b = torch.empty_like(a)
    return lambda: workloads.torch_seconds(lambda: b.copy_(a), reps)


def bench_aligned(device: hal.Device, size: int, reps: int, repeats: int) -> list[Row]:
    """The aligned copy of ``size`` bytes every way hal can make it, round robin over
    ``repeats`` rounds with torch's ``copy_``: through the public API (the lowering's choice),
    lowered native (``copy_buffer_to_buffer``) and kernel, the shipped block kernel and its
    variants (workgroup 128 / 256 / 512, 1-4 blocks a step, capped grid + grid stride or an
    exact grid, grid-apart or consecutive-run blocks) dispatched directly; then native
    against kernel at 16 and 256 MiB. Bytes checked after each case's first timing, on a
    target cleared before it. Rows: median, spread and every sample per case."""
    words = np.arange(size // 4, dtype=np.uint32) * np.uint32(2654435761)
    blocks = size // 16
    whole = copy4_params(0, 0, blocks)
    kernels: list[tuple[str, str, tuple[int, int, int]]] = [
        ("copy4 shipped", shader_source("builtin_copy4.wgsl"), block_grid(blocks))
    ]
    for wg in (128, 256):
        for per in (1, 2, 3, 4):
            for exact in (False, True):
                units = -(-blocks // (wg * (per if exact else 1)))
                name = f"copy4 wg {wg} x {per} {'exact' if exact else 'capped'}"
                kernels.append((name, copy4_grid_variant(wg, per, False), grid(units, exact)))
    kernels.append(
        (
            "copy4 wg 512 x 2 exact",
            copy4_grid_variant(512, 2, False),
            grid(-(-blocks // 1024), True),
        )
    )
    for wg, per in ((256, 2), (256, 4), (128, 4)):
        kernels.append(
            (
                f"copy4 wg {wg} x {per} runs",
                copy4_grid_variant(wg, per, True),
                grid(-(-blocks // (wg * per)), False),
            )
        )
    rows: list[Row] = []
    with ExitStack() as stack:
        src = stack.enter_context(device.buffer_from_numpy(words))
        dst = stack.enter_context(device.allocate_buffer(size))
        timers: dict[str, Callable[[], float | None] | None] = {
            "api copy_buffer": _api_copy_timer(device, src, dst, size, reps),
            "lowered native": plan_timer(device, src, dst, size, "native", reps),
            "lowered kernel": plan_timer(device, src, dst, size, "kernel", reps),
        }
        for name, text, shape in kernels:
            exe = device.create_executable(text, label=name)
            timers[name] = lambda exe=exe, shape=shape: (  # type: ignore[misc]
                time_transfer(device, exe, "copy4", shape, whole, (src, dst), reps)
            )
        timers["torch copy_"] = _torch_copy(size, reps)
        rows += _round_robin(device, timers, repeats, size, dst, words)
        for small in (s for s in (16 << 20, 256 << 20) if s < size):
            pair: dict[str, Callable[[], float | None] | None] = {}
            for how in ("native", "kernel"):
                pair[f"lowered {how} {small >> 20} MiB"] = plan_timer(
                    device, src, dst, small, how, reps
                )
            pair[f"torch copy_ {small >> 20} MiB"] = _torch_copy(small, reps)
            rows += _round_robin(device, pair, repeats, small, None, words)
    return rows


def raw_timer(device: hal.Device, cb: hal.CommandBuffer, reps: int) -> Callable[[], float]:
    """A timer of ended ``cb``'s program submitted ``reps`` times straight through the
    backend, back to back, one wait at the end (no queue, semaphores or completion
    tracker: what the GPU work costs without hal's submission path), seconds per transfer
    of :data:`workloads.TRANSFERS_PER_SUBMIT`."""
    program = cb.prepare(None)
    return _backend_timer(device, program, reps)


def _transfer_cbs(device: hal.Device, src: hal.Buffer, dst: hal.Buffer, size: int) -> list[Any]:
    """(name, reusable command buffer) of workloads.py's three transfer rows."""
    out = []
    for name, record, *_ in workloads._transfer_cases(size):
        with device.record(mode=CommandBufferMode.DEFAULT) as cb:
            for i in range(workloads.TRANSFERS_PER_SUBMIT):
                if i:
                    cb.execution_barrier()
                record(cb, src, dst)
        out.append((name, cb))
    return out


def bench_tracker(
    size: int, reps: int, repeats: int, spins: list[float], polls: tuple[float, ...] = ()
) -> list[Row]:
    """The submission path's share of the transfer rows. Devices in one process: the
    default one and, per ``spins`` entry, one whose completion thread polls without
    blocking for that many µs (``HAL_POLL_SPIN_US``) before it blocks in
    ``wgpuDevicePoll``. Each times workloads.py's transfer rows through ``queue_execute``
    (the public API); the default one also submits the same programs raw (back to back
    through the backend), and the shipped copy4 and three exact-grid variants raw. Round
    robin with torch's ``copy_``. Per ``polls`` entry, one more device whose tracker sleeps
    up to that many µs between non-blocking polls (``HAL_TRACKER_POLL_US``; 0: it blocks in
    ``wgpuDevicePoll``, the behaviour before session 21)."""
    words = np.arange(size // 4 + 64, dtype=np.uint32) * np.uint32(2654435761)
    blocks = size // 16
    whole = copy4_params(0, 0, blocks)
    saved = {name: os.environ.pop(name, None) for name in _TRACKER_ENV}
    timers: dict[str, Callable[[], float | None] | None] = {}
    with ExitStack() as stack:
        configs: list[tuple[str, str | None, float | None]] = [("default", None, None)]
        configs += [(f"spin {us:g} us", "HAL_POLL_SPIN_US", us) for us in spins]
        configs += [(f"tracker poll {us:g} us", "HAL_TRACKER_POLL_US", us) for us in polls]
        for label, env, spin in configs:
            if env is not None:
                os.environ[env] = str(spin)
            device = stack.enter_context(hal.create_device())
            if env is not None:
                os.environ.pop(env, None)
            src = stack.enter_context(device.buffer_from_numpy(words))
            dst = stack.enter_context(device.allocate_buffer(words.nbytes))
            for name, cb in _transfer_cbs(device, src, dst, size):
                timers[f"api {name} [{label}]"] = _api_timer(device, cb, reps)
                if spin is None:
                    timers[f"raw {name} [{label}]"] = raw_timer(device, cb, reps)
            if spin is not None:
                continue
            workloads.warm_up(device, 1.0)
            variants = [("copy4 shipped", shader_source("builtin_copy4.wgsl"),
                         block_grid(blocks))]  # fmt: skip
            for wg, per in ((128, 1), (256, 1), (256, 2)):
                variants.append((f"copy4 wg {wg} x {per} exact",
                                 copy4_grid_variant(wg, per, False),
                                 grid(-(-blocks // (wg * per)), True)))  # fmt: skip
            for name, text, shape in variants:
                exe = device.create_executable(text, label=name)
                with device.record(mode=CommandBufferMode.DEFAULT) as cb:
                    for i in range(workloads.TRANSFERS_PER_SUBMIT):
                        if i:
                            cb.execution_barrier()
                        cb.dispatch(exe, "copy4", shape, constants=whole, bindings=[src, dst])
                timers[f"raw {name} [{label}]"] = raw_timer(device, cb, reps)
        timers["torch copy_"] = _torch_copy(size, reps)
        rows = _round_robin(device, timers, repeats, size, None, words)
    for name, value in saved.items():
        if value is not None:
            os.environ[name] = value
    return rows


_TRACKER_ENV = ("HAL_POLL_SPIN_US", "HAL_TRACKER_POLL_US")


def _api_timer(device: hal.Device, cb: hal.CommandBuffer, reps: int) -> Callable[[], float]:
    """A timer of ``cb`` replayed through the public API, seconds per transfer."""
    return lambda: workloads.replay_seconds(device, cb, reps) / workloads.TRANSFERS_PER_SUBMIT


def _api_copy_timer(
    device: hal.Device, src: hal.Buffer, dst: hal.Buffer, size: int, reps: int
) -> Callable[[], float]:
    """A timer of the public API's copy (8 per reusable command buffer), seconds per copy."""
    with device.record(mode=CommandBufferMode.DEFAULT) as cb:
        for i in range(workloads.TRANSFERS_PER_SUBMIT):
            if i:
                cb.execution_barrier()
            cb.copy_buffer(src, 0, dst, 0, size)
    return lambda: workloads.replay_seconds(device, cb, reps) / workloads.TRANSFERS_PER_SUBMIT


def _round_robin(
    device: hal.Device,
    timers: dict[str, Callable[[], float | None] | None],
    repeats: int,
    size: int,
    dst: hal.Buffer | None,
    words: np.ndarray,
) -> list[Row]:
    """``repeats`` rounds over ``timers``; with ``dst``, every hal case (not torch's) is
    checked against ``words`` after its first timing, ``dst`` cleared before it."""
    samples: dict[str, list[float]] = {name: [] for name, t in timers.items() if t is not None}
    exact: dict[str, bool] = {}
    for rnd in range(repeats):
        for name in samples:
            check = rnd == 0 and dst is not None and not name.startswith("torch")
            if check:
                workloads._clear(device, dst)  # type: ignore[arg-type]
            secs = timers[name]()  # type: ignore[misc]
            if secs is not None:
                samples[name].append(secs)
            if check:
                got = dst.to_numpy(np.uint32, (size // 4,))  # type: ignore[union-attr]
                exact[name] = bool(np.array_equal(got, words[: size // 4]))
    rows: list[Row] = []
    for name, got in samples.items():
        gbps = sorted(size / t / 1e9 for t in got)
        row: Row = {
            "name": name,
            "bytes": size,
            "median_gbps": float(np.median(gbps)),
            "min_gbps": gbps[0],
            "max_gbps": gbps[-1],
            "seconds": got,
        }
        if name in exact:
            row["bytes_exact"] = exact[name]
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def bench_copies(
    device: hal.Device, size: int, reps: int, old: str | None, only: str, variants: str | None
) -> list[Row]:
    """The shipped copy kernels (and, with ``copy4`` in ``only``, every block variant; with
    ``old``, the previous word kernel; every ``*.wgsl`` of the folder ``variants`` as a word
    kernel) at ``size`` bytes, two passes; bytes checked in the
    first."""
    words = np.arange(size // 4 + 64, dtype=np.uint32) * np.uint32(2654435761)
    source = words.view(np.uint8)
    blocks = size // 16
    nwords = source.nbytes // 4
    cases: list[tuple[str, str, str, Any, bytes, int, int, int]] = []
    groups = min(65535, -(-blocks // 256))
    whole = copy4_params(0, 0, blocks)
    if "copy4" in only:
        for wg in (256, 512, 1024):
            for per in (1, 2, 4, 8):
                name = f"copy4 wg {wg} x {per}"
                cases.append((name, copy4_variant(wg, per), "copy4", groups, whole, 0, 0, size))
    shipped = shader_source("builtin_copy4.wgsl")
    cases.append(("copy4 shipped", shipped, "copy4", block_grid(blocks), whole, 0, 0, size))
    word_groups = min(65535, -(-nwords // 256))
    unaligned = copy_params(1, 3, size - 4)
    word = shader_source("builtin_copy.wgsl")
    if old:
        cases.append(
            ("word copy 1->3 previous", old, "copy", word_groups, unaligned, 1, 3, size - 4)
        )
    cases.append(("word copy 1->3 shipped", word, "copy", word_groups, unaligned, 1, 3, size - 4))
    for path in sorted(Path(variants).glob("*.wgsl")) if variants else []:
        text = path.read_text()
        cases.append(
            (f"word copy 1->3 {path.stem}", text, "copy", word_groups, unaligned, 1, 3, size - 4)
        )
    cases.append(
        ("word copy 0->0 shipped", word, "copy", word_groups, copy_params(0, 0, size), 0, 0, size)
    )
    # The 16-byte-access unaligned copy the lowering now uses (windows of whole blocks: both
    # buffers here are), shipped and its variants; 0->4 is offsets equal modulo 4.
    block_groups = min(65535, -(-(blocks + 1) // 256))
    copy16 = shader_source("builtin_copy16.wgsl")
    for name, s0, d0 in (("1->3", 1, 3), ("3->1", 3, 1), ("0->4", 0, 4)):
        p16 = copy_params(s0, d0, size - 4)
        cases.append(
            (f"copy16 {name} shipped", copy16, "copy16", block_groups, p16, s0, d0, size - 4)
        )
    if "copy16" in only:
        p16 = copy_params(1, 3, size - 4)
        for per in (1, 4):
            text = copy16_variant(per, False)
            cases.append(
                (f"copy16 1->3 x {per}", text, "copy16", block_groups, p16, 1, 3, size - 4)
            )
        text = copy16_variant(2, True)
        cases.append(("copy16 1->3 staged", text, "copy16", block_groups, p16, 1, 3, size - 4))
    rows: list[Row] = []
    with ExitStack() as stack:
        src = stack.enter_context(device.buffer_from_numpy(source))
        dst = stack.enter_context(device.allocate_buffer(source.nbytes))
        exes = {name: device.create_executable(text, label=name) for name, text, *_ in cases}
        for rep in (1, 2):
            for name, _text, entry, groups, params, s0, d0, length in cases:
                secs = time_transfer(device, exes[name], entry, groups, params, (src, dst), reps)
                row: Row = {
                    "name": name,
                    "pass": rep,
                    "groups": groups,
                    "ms": secs * 1e3,
                    "gbps": length / secs / 1e9,
                }
                if rep == 1:
                    got = dst.to_numpy(np.uint8, (source.nbytes,))
                    row["bytes_exact"] = bool(
                        np.array_equal(got[d0 : d0 + length], source[s0 : s0 + length])
                    )
                print(json.dumps(row), flush=True)
                rows.append(row)
    return rows


def bench_f16(device: hal.Device, n: int, reps: int) -> list[Row]:
    """The f32 kernel of TILES (the ratio's base) and every f16 shape, fused and not."""
    rows = workloads.bench_matmul(device, n, "f32", reps, False)
    configs = [MatmulConfig(128, 256, 8, 8, 16, fused=False)]
    workloads.SWEEP[:] = configs
    rows += workloads.bench_matmul(device, n, "f32", reps, True)
    workloads.SWEEP_F16[:] = [
        MatmulConfig(c.bm, c.bn, c.bk, c.tm, c.tn, fused=f)
        for c in MATMUL_F16
        for f in (True, False)
    ]
    rows += workloads.bench_matmul(device, n, "f16", reps, True)
    for row in rows:
        print(json.dumps(row), flush=True)
    return rows


def main() -> None:
    """Run the sweep and write ``--json``."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--json")
    parser.add_argument("--old-copy", help="WGSL file of the previous builtin_copy kernel")
    parser.add_argument("--variants", help="folder of candidate builtin_copy kernels (*.wgsl)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument(
        "--only",
        default="copy,copy4,copy16,matmul",
        help="copy,copy4,copy16,matmul,aligned,tracker (aligned: the 1 GiB aligned copy every "
        "way; tracker: the transfer rows with and without the completion thread's spin; "
        "both with --repeats rounds)",
    )
    parser.add_argument(
        "--repeats", type=int, default=5, help="rounds of --only aligned and tracker"
    )
    parser.add_argument(
        "--spin-us", default="1000000", help="HAL_POLL_SPIN_US values of --only tracker"
    )
    parser.add_argument(
        "--tracker-poll-us", default="", help="HAL_TRACKER_POLL_US values of --only tracker"
    )
    args = parser.parse_args()
    device = hal.create_device()
    quick = args.quick or device.info.adapter_type == "cpu"
    reps = 3 if quick else 20
    old = Path(args.old_copy).read_text() if args.old_copy else None
    rows: list[Row] = []
    if "aligned" in args.only:
        if not quick:
            workloads.warm_up(device, 1.0)
        rows += bench_aligned(device, 1 << (22 if quick else 30), reps, args.repeats)
    if "tracker" in args.only:
        rows += bench_tracker(
            1 << (22 if quick else 30),
            reps,
            args.repeats,
            [float(v) for v in args.spin_us.split(",") if v],
            tuple(float(v) for v in args.tracker_poll_us.split(",") if v),
        )
    if "copy" in args.only.replace("aligned", ""):
        size = 1 << (22 if quick else 30)
        rows += bench_copies(device, size, reps, old, args.only, args.variants)
    if "matmul" in args.only and "shader-f16" in device.features:
        rows += bench_f16(device, 256 if quick else 4096, reps)
    if args.json:
        Path(args.json).write_text(json.dumps({"device": str(device.info), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
