"""WGSL source of the register-tiled matrix multiply, generated for one tile configuration.

The kernel computes ``c[M, N] = epilogue(a[M, K] @ b[K, N])`` (row-major) for any M, K, N:

* a workgroup of ``(BN / TN) x (BM / TM)`` invocations owns a ``BM x BN`` tile of c, each
  invocation a ``TM x TN`` block of it held in ``vec4`` registers (rows ``g * 4 * TY + ty * 4
  + i``, column quads ``g * TX + tx``, so neighbouring invocations read neighbouring quads of
  workgroup memory and their stores coalesce);
* K is walked in steps of ``BK``: the ``BM x BK`` slice of a is staged transposed and the
  ``BK x BN`` slice of b as is, both as ``vec4`` in workgroup memory, double-buffered: the next
  step's global loads are issued into registers before the current step's multiply-adds and
  stored into the other buffer after them, so one barrier per step suffices;
* every multiply-add is written out (no loop over the register block, no dynamically indexed
  private arrays): drivers keep the accumulators in registers only when the indices are
  constants, which naga does not guarantee for loops;
* loads outside a, b read as zero and stores outside c are skipped (any M, K, N); the
  ``aligned`` variant (N a multiple of 4) loads b and stores c as ``vec4``;
* the epilogue adds an optional ``bias[N]`` row vector, applies an optional tanh-GELU and adds
  an optional ``residual[M, N]`` (another buffer than c: WebGPU forbids a writable binding
  that overlaps another binding).

Elements are ``f32`` or ``f16`` (``enable f16;``); with f16 elements the accumulators are f16
(packed half math) or f32 (``accumulate="f32"``, products converted as they are staged).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hal.errors import InvalidArgumentError
from hal.examples.matmul_pairs_wgsl import pairs_entry, pairs_problems, pairs_source_parts

__all__ = ["MatmulConfig", "matmul_source"]

_GELU_C = "0.7978845608028654"  # sqrt(2 / pi)


@dataclass(frozen=True, slots=True)
class MatmulConfig:
    """One variant of the kernel: the tile shape ``bm x bn`` per workgroup, the k-step
    ``bk``, the register block ``tm x tn`` per invocation, the element and accumulator types,
    whether N is a multiple of 4 (``aligned``), the epilogue (``bias``, ``gelu``,
    ``residual``) and whether the multiply-adds are written as ``fma`` (``fused``) or as a
    product and a sum that the driver may contract; ``pairs`` selects the packed k-pair f16
    kernel (:mod:`hal.examples.matmul_pairs_wgsl`)."""

    bm: int = 128
    bn: int = 128
    bk: int = 8
    tm: int = 8
    tn: int = 8
    dtype: str = "f32"
    accumulate: str = "f32"
    aligned: bool = True
    bias: bool = False
    gelu: bool = False
    residual: bool = False
    fused: bool = True
    pairs: bool = False

    @property
    def threads(self) -> int:
        """Invocations per workgroup."""
        return (self.bm // self.tm) * (self.bn // self.tn)

    @property
    def workgroup_bytes(self) -> int:
        """Workgroup memory the two staging buffers take."""
        return 2 * self.bk * (self.bm + self.bn) * (2 if self.accumulate == "f16" else 4)

    def with_epilogue(
        self, *, aligned: bool, bias: bool, gelu: bool, residual: bool
    ) -> MatmulConfig:
        """This tile shape with another alignment and epilogue."""
        return replace(self, aligned=aligned, bias=bias, gelu=gelu, residual=residual)

    def check(self) -> None:
        """Raise InvalidArgumentError unless the shape tiles evenly: ``tm``, ``tn`` multiples
        of 4 dividing ``bm``, ``bn``; every load step covering whole slices; types known."""
        threads = self.threads
        problems = []
        if self.tm % 4 or self.tn % 4 or self.bm % self.tm or self.bn % self.tn:
            problems.append("tm, tn must be multiples of 4 dividing bm, bn")
        if not 32 <= threads <= 1024:
            problems.append(f"{threads} invocations per workgroup (32..1024)")
        elif (self.bm * self.bk) % (4 * threads) or (self.bk * self.bn) % (4 * threads):
            problems.append("bm * bk and bk * bn must be multiples of 4 * invocations")
        if self.dtype not in ("f32", "f16") or self.accumulate not in ("f32", "f16"):
            problems.append("dtype and accumulate are 'f32' or 'f16'")
        elif self.dtype == "f32" and self.accumulate == "f16":
            problems.append("f32 elements accumulate in f32")
        if self.pairs:
            problems += pairs_problems(self)
        if problems:
            raise InvalidArgumentError(f"MatmulConfig {self}: {'; '.join(problems)}")


def matmul_source(config: MatmulConfig) -> str:
    """The WGSL module (entry point ``matmul``) of ``config``.

    Raises InvalidArgumentError for a configuration that does not tile (MatmulConfig.check)."""
    config.check()
    if config.pairs:
        parts = [*pairs_source_parts(config), *_finish(config), *pairs_entry(config), "}", ""]
        return "\n".join(parts)
    return "\n".join(
        [
            *_header(config),
            *_load_a(config),
            *_load_b(config),
            *_finish(config),
            *_entry(config),
            *_epilogue(config),
            "}",
            "",
        ]
    )


def _header(cfg: MatmulConfig) -> list[str]:
    t, acc = cfg.dtype, cfg.accumulate
    lines = ["enable f16;"] if "f16" in (t, acc) else []
    vec_b = f"vec4<{t}>" if cfg.aligned else t
    lines += [
        f"// generated by hal.examples.matmul_wgsl: {cfg}",
        "struct Params { m: u32, k: u32, n: u32 }",
        "var<immediate> params: Params;",
        f"@group(0) @binding(0) var<storage, read> a: array<{t}>;",
        f"@group(0) @binding(1) var<storage, read> b: array<{vec_b}>;",
        f"@group(0) @binding(2) var<storage, read_write> c: array<{vec_b}>;",
    ]
    binding = 3
    if cfg.bias:
        lines.append(f"@group(0) @binding({binding}) var<storage, read> bias: array<{t}>;")
        binding += 1
    if cfg.residual:
        lines.append(f"@group(0) @binding({binding}) var<storage, read> residual: array<{vec_b}>;")
    half = cfg.bk * (cfg.bm + cfg.bn) // 4
    lines += [
        f"const BM: u32 = {cfg.bm}u;",
        f"const BN: u32 = {cfg.bn}u;",
        f"const BK: u32 = {cfg.bk}u;",
        f"const TX: u32 = {cfg.bn // cfg.tn}u;",
        f"const TY: u32 = {cfg.bm // cfg.tm}u;",
        f"const HALF: u32 = {half}u;  // vec4s per staging buffer: A^T [BK][BM/4], B [BK][BN/4]",
        f"const BOFF: u32 = {cfg.bk * cfg.bm // 4}u;",
        f"var<workgroup> tiles: array<vec4<{acc}>, {2 * half}>;",
    ]
    return lines


def _load_a(cfg: MatmulConfig) -> list[str]:
    """``load_a(j, ...)``: chunk j of this invocation's share of the a slice: 4 rows at one k
    (32-byte row segments across a subgroup), stored transposed as one vec4."""
    acc = cfg.accumulate
    return [
        f"fn load_a(lin: u32, row0: u32, k0: u32) -> vec4<{acc}> {{",
        "  let kk = lin % BK;",
        "  let r = row0 + (lin / BK) * 4u;",
        "  let kc = k0 + kk;",
        f"  var v = vec4<{acc}>();",
        "  if (kc < params.k) {",
        *[
            f"    if (r + {e}u < params.m) {{ v[{e}] = {acc}(a[(r + {e}u) * params.k + kc]); }}"
            for e in range(4)
        ],
        "  }",
        "  return v;",
        "}",
        "fn store_a(lin: u32, base: u32, v: vec4<" + acc + ">) {",
        "  tiles[base + (lin % BK) * (BM / 4u) + lin / BK] = v;",
        "}",
    ]


def _load_b(cfg: MatmulConfig) -> list[str]:
    """``load_b(lin, ...)``: a quad of 4 columns at one k of the b slice."""
    acc = cfg.accumulate
    lines = [
        f"fn load_b(lin: u32, col0: u32, k0: u32) -> vec4<{acc}> {{",
        "  let kr = k0 + lin / (BN / 4u);",
        "  let col = col0 + (lin % (BN / 4u)) * 4u;",
        f"  var v = vec4<{acc}>();",
    ]
    if cfg.aligned:
        lines += [
            "  if (kr < params.k && col < params.n) {",
            f"    v = vec4<{acc}>(b[(kr * params.n + col) / 4u]);",
            "  }",
        ]
    else:
        lines += [
            "  if (kr < params.k) {",
            *[
                f"    if (col + {e}u < params.n) {{ v[{e}] = {acc}(b[kr * params.n + col + {e}u]); }}"  # noqa: E501
                for e in range(4)
            ],
            "  }",
        ]
    return [
        *lines,
        "  return v;",
        "}",
        f"fn store_b(lin: u32, base: u32, v: vec4<{acc}>) {{",
        "  tiles[base + BOFF + lin] = v;",
        "}",
    ]


def _entry(cfg: MatmulConfig) -> list[str]:
    acc = cfg.accumulate
    ga, gb = cfg.tm // 4, cfg.tn // 4
    chunks_a = cfg.bm * cfg.bk // (4 * cfg.threads)
    chunks_b = cfg.bk * cfg.bn // (4 * cfg.threads)
    lines = [
        f"@compute @workgroup_size({cfg.bn // cfg.tn}, {cfg.bm // cfg.tm}, 1)",
        "fn matmul(@builtin(workgroup_id) wid: vec3<u32>,",
        "          @builtin(local_invocation_id) lid: vec3<u32>,",
        "          @builtin(local_invocation_index) flat: u32) {",
        "  let tx = lid.x;",
        "  let ty = lid.y;",
        "  let row0 = wid.y * BM;",
        "  let col0 = wid.x * BN;",
        "  let steps = (params.k + BK - 1u) / BK;",
        *[f"  var acc{r}_{g} = vec4<{acc}>();" for r in range(cfg.tm) for g in range(gb)],
        f"  const T: u32 = {cfg.threads}u;",
    ]
    stage = [
        f"  store_a(flat + T * {j}u, 0u, load_a(flat + T * {j}u, row0, 0u));"
        for j in range(chunks_a)
    ]
    stage += [
        f"  store_b(flat + T * {j}u, 0u, load_b(flat + T * {j}u, col0, 0u));"
        for j in range(chunks_b)
    ]
    lines += [*stage, "  workgroupBarrier();", "  for (var t = 0u; t < steps; t = t + 1u) {"]
    lines += [
        "    let cur = (t % 2u) * HALF;",
        "    let nxt = HALF - cur;",
        "    let more = t + 1u < steps;",
        "    let k1 = (t + 1u) * BK;",
        *[f"    var pa{j} = vec4<{acc}>();" for j in range(chunks_a)],
        *[f"    var pb{j} = vec4<{acc}>();" for j in range(chunks_b)],
        "    if (more) {",
        *[f"      pa{j} = load_a(flat + T * {j}u, row0, k1);" for j in range(chunks_a)],
        *[f"      pb{j} = load_b(flat + T * {j}u, col0, k1);" for j in range(chunks_b)],
        "    }",
        "    for (var kk = 0u; kk < BK; kk = kk + 1u) {",
        *[f"      let a{g} = tiles[cur + kk * (BM / 4u) + {g}u * TY + ty];" for g in range(ga)],
        *[
            f"      let b{g} = tiles[cur + BOFF + kk * (BN / 4u) + {g}u * TX + tx];"
            for g in range(gb)
        ],
    ]
    for r in range(cfg.tm):
        a = f"a{r // 4}[{r % 4}]"
        for g in range(gb):
            if cfg.fused:
                lines.append(f"      acc{r}_{g} = fma(vec4<{acc}>({a}), b{g}, acc{r}_{g});")
            else:
                lines.append(f"      acc{r}_{g} = acc{r}_{g} + {a} * b{g};")
    lines += [
        "    }",
        "    if (more) {",
        *[f"      store_a(flat + T * {j}u, nxt, pa{j});" for j in range(chunks_a)],
        *[f"      store_b(flat + T * {j}u, nxt, pb{j});" for j in range(chunks_b)],
        "    }",
        "    workgroupBarrier();",
        "  }",
    ]
    return lines


def _epilogue(cfg: MatmulConfig) -> list[str]:
    t = cfg.dtype
    gb = cfg.tn // 4
    lines = []
    for r in range(cfg.tm):
        row = f"row0 + {r // 4}u * 4u * TY + ty * 4u + {r % 4}u"
        for g in range(gb):
            lines += [
                "  {",
                f"    let row = {row};",
                f"    let col = col0 + ({g}u * TX + tx) * 4u;",
                f"    let v = vec4<{t}>(acc{r}_{g});",
                "    if (row < params.m) { finish(row, col, v); }",
                "  }",
            ]
    return lines


def _finish(cfg: MatmulConfig) -> list[str]:
    """``finish(row, col, v)``: the epilogue and the store of one quad of c."""
    t = cfg.dtype
    body = ["  var x = v;"]
    if cfg.bias:
        body += [
            f"  var bq = vec4<{t}>();",
            *[f"  if (col + {e}u < params.n) {{ bq[{e}] = bias[col + {e}u]; }}" for e in range(4)],
            "  x = x + bq;",
        ]
    if cfg.gelu:
        body += [
            "  let xf = vec4<f32>(x);",
            # clamped: some drivers' tanh returns NaN for large arguments
            f"  let inner = clamp({_GELU_C} * (xf + 0.044715 * xf * xf * xf),",
            "                    vec4(-15.0), vec4(15.0));",
            f"  x = vec4<{t}>(0.5 * xf * (1.0 + tanh(inner)));",
        ]
    if cfg.aligned:
        if cfg.residual:
            body.append("  if (col < params.n) { x = x + residual[(row * params.n + col) / 4u]; }")
        body.append("  if (col < params.n) { c[(row * params.n + col) / 4u] = x; }")
    else:
        for e in range(4):
            add = f" + residual[row * params.n + col + {e}u]" if cfg.residual else ""
            body.append(
                f"  if (col + {e}u < params.n) {{ c[row * params.n + col + {e}u] = x[{e}]{add}; }}"
            )
    return [f"fn finish(row: u32, col: u32, v: vec4<{t}>) {{", *body, "}"]
