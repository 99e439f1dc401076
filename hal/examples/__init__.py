"""Real workloads on hal, each verified against numpy and timed.

* :mod:`hal.examples.matmul` — register-tiled matrix multiply (f32 / f16, tiles per adapter);
* :mod:`hal.examples.prefix_sum` — multi-level parallel prefix sum of any length;
* :mod:`hal.examples.softmax` — row-wise, numerically stable softmax (max/sum reductions);
* :mod:`hal.examples.mlp` — a two-layer perceptron forward pass chaining the above through
  one command buffer;
* :mod:`hal.examples.layernorm`, :mod:`hal.examples.gelu` — row-wise layer norm, elementwise GELU;
* :mod:`hal.examples.transformer` — a pre-norm GPT-2 block (causal attention + MLP) replayed
  from one command buffer.
* :mod:`hal.examples.mlp_data_parallel` — data-parallel training of that MLP over MPI ranks.

Each module has ``load(device)``, ``record_*`` functions that append its dispatches to a
command buffer, a numpy-in/numpy-out convenience function, ``reference`` (numpy) and
``run(device, size, repeats)`` returning an :class:`ExampleResult`. Run them from the shell
with ``python -m hal example NAME [--size ...]``.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hal.errors import InvalidArgumentError
from hal.examples.common import ExampleResult, Timing, parse_size

if TYPE_CHECKING:
    from hal.runtime.device import Device

__all__ = ["EXAMPLES", "ExampleInfo", "ExampleResult", "Timing", "example_size", "run_example"]


@dataclass(frozen=True, slots=True)
class ExampleInfo:
    """One example: its module, what it does, the meaning and default of ``--size``, and
    the optional package it needs (``example all`` skips it, saying so, when that is absent)."""

    module: str
    description: str
    size_help: str
    default_size: tuple[int, ...]
    needs: str | None = None


EXAMPLES: dict[str, ExampleInfo] = {
    "matmul": ExampleInfo(
        "hal.examples.matmul",
        "register-tiled matrix multiply: tiles per adapter, double-buffered vec4 staging",
        "N (square) or MxKxN",
        (256, 256, 256),
    ),
    "prefix_sum": ExampleInfo(
        "hal.examples.prefix_sum",
        "inclusive prefix sum of any length: block scans, recursive totals, offsets",
        "LENGTH",
        (1_000_000,),
    ),
    "softmax": ExampleInfo(
        "hal.examples.softmax",
        "row-wise numerically stable softmax (max and sum reductions)",
        "ROWSxCOLS (or N for square)",
        (1024, 1000),
    ),
    "mlp": ExampleInfo(
        "hal.examples.mlp",
        "MLP forward pass: matmul, bias+relu, matmul, bias, softmax in one command buffer",
        "BATCHxINPUTSxHIDDENxOUTPUTS (a single number sets the batch)",
        (256, 784, 512, 10),
    ),
    "layernorm": ExampleInfo(
        "hal.examples.layernorm",
        "row-wise layer norm (one read per row, subgroup or workgroup reductions)",
        "ROWSxCOLS (or N for square)",
        (1024, 1000),
    ),
    "gelu": ExampleInfo("hal.examples.gelu", "elementwise tanh-GELU, vec4", "COUNT", (1_000_000,)),
    "transformer": ExampleInfo(
        "hal.examples.transformer",
        "pre-norm transformer block (causal MHSA + GELU MLP), one reusable command buffer; "
        "small shapes on a CPU adapter",
        "BATCHxSEQxWIDTHxHEADS",
        (8, 1024, 768, 12),
    ),
    "mlp_data_parallel": ExampleInfo(
        "hal.examples.mlp_data_parallel",
        "data-parallel MLP training: per-rank gradients, ALL_REDUCE AVERAGE in the command "
        "buffer (needs mpi4py; launch under mpiexec -n N)",
        "BATCHxINPUTSxHIDDENxOUTPUTS (the global batch splits over the ranks)",
        (64, 32, 64, 10),
        needs="mpi4py",
    ),
}
"""The examples by name, in the order ``python -m hal example all`` runs them."""


def example_size(name: str, text: str | None) -> tuple[int, ...]:
    """The size tuple of example ``name`` from command-line text (None: the default). For
    ``mlp`` a single number is the batch size (the layer widths keep their defaults); for
    the others it sets every dimension.

    Raises InvalidArgumentError for an unknown name or a malformed size."""
    info = EXAMPLES.get(name)
    if info is None:
        raise InvalidArgumentError(f"unknown example {name!r} (examples: {', '.join(EXAMPLES)})")
    if name == "mlp" and text is not None and text.strip().isdigit():
        widths = "x".join(map(str, info.default_size[1:]))
        return parse_size(f"{text.strip()}x{widths}", info.default_size, name)
    return parse_size(text, info.default_size, name)


def run_example(
    name: str,
    device: Device,
    size: str | tuple[int, ...] | None = None,
    repeats: int = 5,
    seed: int = 0,
) -> ExampleResult:
    """Run example ``name`` on ``device`` with ``size`` (a tuple, text as on the command
    line, or None for the default) and return its result.

    Raises InvalidArgumentError for an unknown name or a malformed size, and whatever the
    example raises (e.g. DeadlineExceededError on a GPU hang)."""
    dims = size if isinstance(size, tuple) else example_size(name, size)
    module = importlib.import_module(EXAMPLES[name].module)
    result: ExampleResult = module.run(device, dims, repeats=repeats, seed=seed)
    return result


def missing_package(name: str) -> str | None:
    """The optional package example ``name`` needs that is not installed, or None."""
    import importlib.util

    needs = EXAMPLES[name].needs
    return needs if needs is not None and importlib.util.find_spec(needs) is None else None
