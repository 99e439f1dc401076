"""The ``python -m hal`` command line: ``devices``, ``demo``."""

from __future__ import annotations

import argparse
import sys

__all__ = ["main"]


def _devices(args: argparse.Namespace) -> int:
    from hal.device import available_adapters

    adapters = available_adapters()
    if args.check:
        native = [a for a in adapters if a.backend in ("vulkan", "metal", "d3d12")]
        return 0 if native else 1
    if not adapters:
        print("no adapters found", file=sys.stderr)
        return 1
    for i, info in enumerate(adapters):
        print(
            f"[{i}] {info.name}  backend={info.backend} type={info.adapter_type} "
            f"vendor={info.vendor or '-'}"
        )
    return 0


def _demo(args: argparse.Namespace) -> int:
    from hal.demo import main as demo

    return demo(dispatches=args.dispatches)


def main(argv: list[str] | None = None) -> int:
    """Parse ``argv`` and run the command; returns the exit code (0 ok, 1 failure,
    2 usage error)."""
    parser = argparse.ArgumentParser(prog="python -m hal", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    devices = commands.add_parser("devices", help="list the adapters wgpu can use")
    devices.add_argument(
        "--check", action="store_true", help="exit 0 if a Vulkan/Metal/D3D12 adapter exists, else 1"
    )
    devices.set_defaults(run=_devices)
    demo = commands.add_parser("demo", help="record, lower, run and verify a pipeline")
    demo.add_argument(
        "--dispatches",
        type=int,
        default=200,
        help="chain length for the dispatch-overhead comparison",
    )
    demo.set_defaults(run=_demo)
    args = parser.parse_args(argv)
    return int(args.run(args))
