"""The ``python -m hal`` command line: ``devices``, ``run``, ``example``, ``bench``, ``demo``.

Exit status: 0 success; 1 runtime failure (no device, a kernel that does not compile, a GPU
error or timeout, a result that does not match numpy, a failed benchmark); 2 usage error
(bad arguments, missing or malformed files, unknown entry point or example, wrong binding
count).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from hal.tools.cli_run import UsageError

if TYPE_CHECKING:
    from hal.runtime.device import Device

__all__ = ["COMPUTE_FEATURES", "KEY_LIMITS", "UsageError", "main"]

PROG = "python -m hal"
"""The program name when run as ``python -m hal`` (the ``hal`` script says ``hal``)."""

KEY_LIMITS = (
    "max-buffer-size",
    "max-storage-buffer-binding-size",
    "max-uniform-buffer-binding-size",
    "max-compute-workgroups-per-dimension",
    "max-compute-invocations-per-workgroup",
    "max-compute-workgroup-size-x",
    "max-compute-workgroup-storage-size",
    "max-storage-buffers-per-shader-stage",
    "max-immediate-size",
    "min-storage-buffer-offset-alignment",
)
"""Limits ``devices`` shows without ``--verbose``."""

COMPUTE_FEATURES = (
    "immediates",
    "timestamp-query",
    "timestamp-query-inside-passes",
    "shader-f16",
    "shader-f64",
    "shader-int64",
    "subgroup",
    "shader-float32-atomic",
    "mappable-primary-buffers",
)
"""Features ``devices`` shows without ``--verbose`` (those that matter for compute)."""


# -- devices ----------------------------------------------------------------------------------


def _size(value: int) -> str:
    """``value`` bytes, with the largest binary unit it reaches."""
    for unit, scale in (("GiB", 1 << 30), ("MiB", 1 << 20), ("KiB", 1 << 10)):
        if value >= scale:
            return f"{value} ({value / scale:.4g} {unit})"
    return str(value)


def _adapter_details() -> list[dict[str, Any]]:
    """Every adapter of every available implementation as a dict: info fields, its index
    within its implementation (what HAL_ADAPTER takes), limits, features, and whether hal
    picks it (for HAL_IMPLEMENTATION, default wgpu-native)."""
    from hal.runtime.adapters import list_implementations, pick_adapter

    try:
        env = os.environ.get("HAL_ADAPTER") or None
        chosen = pick_adapter(
            int(env) if env and env.isdigit() else env, os.environ.get("HAL_BACKEND") or None
        )
    except Exception:
        chosen = None
    return [
        {
            "name": adapter.name,
            "backend": adapter.backend,
            "type": adapter.adapter_type,
            "vendor": adapter.vendor,
            "implementation": adapter.implementation,
            "index": index,
            "driver": adapter.driver,
            "default": adapter is chosen,
            "limits": dict(sorted(adapter.limits.items())),
            "features": sorted(adapter.features),
        }
        for listing in list_implementations()
        for index, adapter in enumerate(listing.adapters)
    ]


def _devices(args: argparse.Namespace) -> int:
    from hal.runtime.adapters import list_implementations
    from hal.runtime.device import available_adapters

    if args.check:
        native = [a for a in available_adapters() if a.backend in ("vulkan", "metal", "d3d12")]
        return 0 if native else 1
    if args.brief:  # only the implementation hal opens is asked (Dawn's listing is chatty)
        from hal.runtime.adapters import describe, pick_adapter

        env = os.environ.get("HAL_ADAPTER") or None
        chosen = pick_adapter(
            int(env) if env and env.isdigit() else env,
            os.environ.get("HAL_BACKEND") or None,
            os.environ.get("HAL_IMPLEMENTATION") or None,
        )
        print(f"adapter: {describe(chosen)} [{chosen.implementation}]")
        return 0
    details = _adapter_details()
    if not details:
        print("no adapters found", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(details, indent=2))
        return 0
    for listing in list_implementations():
        if listing.unavailable is not None:
            print(f"{listing.implementation}: unavailable ({listing.unavailable})")
    for d in details:
        print(
            f"[{d['index']}] {d['name']}  implementation={d['implementation']} "
            f"backend={d['backend']} type={d['type']} "
            f"vendor={d['vendor'] or '-'}{'  (default)' if d['default'] else ''}"
        )
        if d["driver"]:
            print(f"    driver: {d['driver']}")
        limits = d["limits"]
        if not args.verbose:
            limits = {k: limits[k] for k in KEY_LIMITS if k in limits}
        print("    limits:")
        for name, value in limits.items():
            sized = name.endswith(("buffer-size", "binding-size", "storage-size"))
            print(f"      {name:<48} {_size(value) if sized else value}")
        features = set(d["features"])
        if args.verbose:
            text = ", ".join(d["features"]) or "none"
            print(f"    features ({len(features)}):")
        else:
            text = ", ".join(f"{f} {'yes' if f in features else 'no'}" for f in COMPUTE_FEATURES)
            print(f"    compute features ({len(features)} features in all; -v lists them):")
        print(
            textwrap.fill(
                text,
                width=96,
                initial_indent="      ",
                subsequent_indent="      ",
                break_on_hyphens=False,
            )
        )
    return 0


# -- device opening, examples, demo, run, bench --------------------------------------------------


@contextmanager
def _open_device(adapter: str | None) -> Iterator[Device]:
    """Open the device ``--adapter`` names (index or name substring; default: hal's pick).
    An adapter that does not exist is a usage error; no adapter at all a runtime failure."""
    from hal.errors import InvalidArgumentError, UnavailableError
    from hal.runtime.device import create_device

    choice: int | str | None = None
    if adapter is not None:
        choice = int(adapter) if adapter.isdigit() else adapter
    try:
        device = create_device(choice)
    except (InvalidArgumentError, UnavailableError) as error:
        if adapter is not None:
            raise UsageError(f"--adapter {adapter!r}: {error}") from None
        raise
    with device:
        yield device


def _example(args: argparse.Namespace) -> int:
    from hal.errors import InvalidArgumentError
    from hal.examples import EXAMPLES, example_size, missing_package, run_example

    if args.list or args.name is None:
        print(f"examples ({getattr(args, 'prog', PROG)} example NAME [--size SIZE]):")
        for name, info in EXAMPLES.items():
            default = "x".join(map(str, info.default_size))
            print(f"  {name:<11} {info.description}")
            print(f"  {'':<11} --size {info.size_help}; default {default}")
        return 0 if args.list else 2
    if args.name != "all" and args.name not in EXAMPLES:
        raise UsageError(f"unknown example {args.name!r} (examples: {', '.join(EXAMPLES)}, all)")
    if args.size is not None and args.name == "all":
        raise UsageError("--size needs a single example, not 'all'")
    if args.repeat < 1:
        raise UsageError(f"--repeat {args.repeat}: must be at least 1")
    names = list(EXAMPLES) if args.name == "all" else [args.name]
    if args.name == "all":
        for name in [n for n in names if missing_package(n)]:
            print(f"skipped {name}: needs {missing_package(name)} (pip install .[mpi])")
            names.remove(name)
    try:
        sizes = {name: example_size(name, args.size) for name in names}
    except InvalidArgumentError as error:
        raise UsageError(f"--size {args.size!r}: {error}") from None
    ok = True
    with _open_device(args.adapter) as device:
        # Flushed at once: under mpiexec, output still buffered when MPI finalises at exit
        # can be lost.
        print(f"device: {device.info}", flush=True)
        for name in names:
            result = run_example(name, device, sizes[name], args.repeat, args.seed)
            print(result.summary(), flush=True)
            ok = ok and result.ok
    return 0 if ok else 1


def _demo(args: argparse.Namespace) -> int:
    from hal.tools.demo import main as demo

    return demo(dispatches=args.dispatches)


def _run(args: argparse.Namespace) -> int:
    from hal.tools.cli_run import run_command

    return run_command(args, _open_device)


def _bench(args: argparse.Namespace) -> int:
    from hal.tools.cli_bench import run_bench

    return run_bench(
        args.dir, args.scripts, args.extra, args.timeout, args.list, args.out, args.fail_on_targets
    )


# -- the parser ---------------------------------------------------------------------------------

_DESCRIPTION = """\
hal: a Vulkan-like GPU HAL (after IREE's HAL) on wgpu. `python -m hal COMMAND --help` shows a
command's options.

exit status: 0 success; 1 runtime failure (no device, a kernel that does not compile, a GPU
error or timeout, a result that does not match numpy, a failed benchmark); 2 usage error (bad
arguments, missing or malformed files, unknown entry point or example, wrong binding count).
"""

_RUN_EPILOG = """\
examples:
  python -m hal run shaders/elementwise.wgsl --entry scale --workgroups 16 \\
      --input x.npy --output y.npy:float32:1024 --constants 1024,2.0,1.0 --repeat 10
  python -m hal run k.wgsl --entry main --workgroups 4,4,1 --input a.npy b.npy:f32 \\
      --output c.npy:f32:64x64 --constants u32:64,f32:0.5

Inputs bind to @binding(0..k-1) in order, outputs to the bindings after them; outputs start
zeroed. Constants fill the kernel's var<immediate> block, one 32-bit value each, typed from
its struct fields (u32/i32/f32) or by a prefix (u32:5, i32:-1, f32:2). With --repeat N the
inputs and outputs are restored before every run, so the outputs are those of one run.
exit status: 0 ok, 1 runtime failure (no device, the kernel does not compile, GPU error or
timeout), 2 usage error.
"""


def _add_devices(commands: Any) -> None:
    devices = commands.add_parser(
        "devices",
        help="list adapters: backend, type, key limits and features",
        description="List the adapters of every WebGPU implementation (wgpu-native, Dawn), "
        "with key limits and compute features; [i] is the index HAL_ADAPTER takes. "
        "HAL_ADAPTER (index or name substring) and HAL_BACKEND choose the default.",
    )
    devices.add_argument(
        "--check", action="store_true", help="exit 0 if a Vulkan/Metal/D3D12 adapter exists, else 1"
    )
    devices.add_argument(
        "-v", "--verbose", action="store_true", help="list every limit and feature"
    )
    devices.add_argument("--json", action="store_true", help="print the details as JSON")
    devices.add_argument(
        "--brief", action="store_true", help="print one line: the adapter hal picks"
    )
    devices.set_defaults(run=_devices)


def _add_run(commands: Any, prog: str) -> None:
    run = commands.add_parser(
        "run",
        help="run one WGSL entry point on .npy inputs, write .npy outputs, print timing",
        description="Run one entry point of a WGSL kernel (like IREE's iree-run-module).",
        epilog=_RUN_EPILOG.replace("python -m hal", prog),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("kernel", metavar="KERNEL.wgsl", help="the WGSL file")
    run.add_argument(
        "--entry", metavar="NAME", help="the @compute entry point (optional if it has one)"
    )
    run.add_argument(
        "--workgroups", metavar="X,Y,Z", required=True, help="workgroup counts (Y, Z default 1)"
    )
    run.add_argument(
        "--input",
        metavar="A.npy[:DTYPE]",
        nargs="+",
        action="extend",
        help="input arrays, bound in order from @binding(0); :DTYPE converts (e.g. a.npy:f32)",
    )
    run.add_argument(
        "--output",
        metavar="OUT.npy:DTYPE:SHAPE",
        nargs="+",
        action="extend",
        help="outputs, bound after the inputs, e.g. out.npy:float32:64x64",
    )
    run.add_argument(
        "--constants",
        metavar="V",
        nargs="+",
        action="extend",
        help="dispatch constants (comma or space separated; optional u32:/i32:/f32: prefix)",
    )
    run.add_argument(
        "--override",
        metavar="NAME=VALUE",
        action="append",
        help="set a WGSL `override` constant (repeatable)",
    )
    run.add_argument("--repeat", type=int, default=1, metavar="N", help="runs to time (default 1)")
    run.add_argument(
        "--timeout", type=float, default=60.0, metavar="S", help="seconds to wait per run (60)"
    )
    run.add_argument("--adapter", help="adapter index or name substring (default: hal's pick)")
    run.add_argument("-q", "--quiet", action="store_true", help="print only the timing line")
    run.set_defaults(run=_run)


class _Parser(argparse.ArgumentParser):
    """An ArgumentParser whose epilog may be computed when help is shown (``epilog_factory``),
    so that building the parser imports nothing heavy (``hal.examples`` loads only for
    ``example``)."""

    epilog_factory: Any = None

    def format_help(self) -> str:
        if self.epilog_factory is not None:
            self.epilog = self.epilog_factory()
        return super().format_help()


def _example_epilog(prog: str) -> str:
    from hal.examples import EXAMPLES

    return (
        "sizes:\n"
        + "".join(f"  {n}: {i.size_help}\n" for n, i in EXAMPLES.items())
        + f"example:\n  {prog} example matmul --size 512x256x128 --repeat 10"
    )


def _add_example(commands: Any, prog: str) -> None:
    example = commands.add_parser(
        "example",
        help="run a verified example workload (matmul, transformer, ..., all)",
        description="Run an example workload on the GPU, check it against numpy, print its "
        "timing. Exit 0 when it matches, 1 when not.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    example.epilog_factory = lambda: _example_epilog(prog)
    example.add_argument("name", nargs="?", metavar="NAME", help="an example (see --list), or all")
    example.add_argument("--size", help="problem size, e.g. 256 or 128x64x32 (see below)")
    example.add_argument("--repeat", type=int, default=5, metavar="N", help="timed runs (5)")
    example.add_argument("--seed", type=int, default=0, help="random seed of the inputs (0)")
    example.add_argument("--adapter", help="adapter index or name substring")
    example.add_argument("--list", action="store_true", help="list the examples and exit")
    example.set_defaults(run=_example)


def _add_bench(commands: Any, prog: str) -> None:
    bench = commands.add_parser(
        "bench",
        help="run the benchmark suite (from a source checkout) with a progress bar",
        description="Run benchmarks/run_all.py if present, else benchmarks/dispatch_overhead.py "
        "and benchmarks/queue_latency.py, with a progress bar (tqdm, from the bench extra, "
        "when installed). Result files go to --out or a temporary folder, never into the "
        "checkout. The scripts ship with the source checkout, not with an installed hal.",
        epilog="arguments after -- go to every script, e.g.\n"
        f"  {prog} bench queue_latency -- --reps 50",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench.add_argument(
        "scripts", nargs="*", metavar="SCRIPT", help="run only these scripts of benchmarks/"
    )
    bench.add_argument("--dir", help="the benchmarks folder (default: found next to hal)")
    bench.add_argument(
        "--timeout", type=float, default=None, metavar="S", help="kill a script after S seconds"
    )
    bench.add_argument(
        "--out",
        metavar="DIR",
        help="folder for the result files (default: a new temporary folder, printed)",
    )
    bench.add_argument(
        "--fail-on-targets",
        action="store_true",
        help="exit 1 when a performance target is not met (run_all.py's Targets table)",
    )
    bench.add_argument("--list", action="store_true", help="print the scripts and exit")
    bench.set_defaults(run=_bench, extra=[])


def _parser(prog: str = PROG) -> argparse.ArgumentParser:
    from hal import __version__

    parser = _Parser(
        prog=prog,
        description=_DESCRIPTION.replace("`python -m hal ", f"`{prog} "),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    commands = parser.add_subparsers(
        dest="command", required=True, metavar="COMMAND", parser_class=_Parser
    )
    _add_devices(commands)
    _add_run(commands, prog)
    _add_example(commands, prog)
    _add_bench(commands, prog)
    demo = commands.add_parser("demo", help="record, lower, run and verify a pipeline")
    demo.add_argument(
        "--dispatches",
        type=int,
        default=200,
        help="chain length for the dispatch-overhead comparison",
    )
    demo.set_defaults(run=_demo)
    return parser


def program_name(argv0: str | None = None) -> str:
    """How the user ran the command line, for usage lines and messages: ``hal`` for the
    installed script (``argv0``, default ``sys.argv[0]``, named ``hal``), else
    ``python -m hal``."""
    name = os.path.basename(sys.argv[0] if argv0 is None else argv0)
    return "hal" if name in ("hal", "hal.exe") else PROG


def main(argv: list[str] | None = None, prog: str | None = None) -> int:
    """Parse ``argv`` (default ``sys.argv[1:]``) and run the command; returns the exit code:
    0 ok, 1 runtime failure, 2 usage error. ``prog`` names the program in usage lines and
    messages (default :func:`program_name`). Never raises for hal errors, usage errors,
    ``--help`` or ``--version`` (argparse's exits become return values)."""
    from hal.errors import HalError
    from hal.tools.cli_bench import BenchmarkNotFoundError

    argv = list(sys.argv[1:] if argv is None else argv)
    extra: list[str] = []
    if argv[:1] == ["bench"] and "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1 :]
    prog = program_name() if prog is None else prog
    try:
        args = _parser(prog).parse_args(argv)
    except SystemExit as stop:
        return stop.code if isinstance(stop.code, int) else (0 if stop.code is None else 2)
    if extra:
        args.extra = extra
    where = f"{prog} {args.command}"
    args.prog = prog
    try:
        return int(args.run(args))
    except BrokenPipeError:  # e.g. `python -m hal devices | head`
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - keeps the exit-time flush quiet
        return 1
    except UsageError as error:
        print(f"{where}: error: {error}", file=sys.stderr)
        return 2
    except (HalError, OSError, BenchmarkNotFoundError) as error:
        print(f"{where}: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"{where}: interrupted", file=sys.stderr)
        return 130
