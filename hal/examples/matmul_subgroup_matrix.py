"""WGSL source of the f16 matrix multiply on subgroup matrices (tensor cores), generated for
one tile configuration.

The kernel computes ``c[M, N] = epilogue(a[M, K] @ b[K, N])`` (row-major, f16 elements) with
``enable chromium_experimental_subgroup_matrix;`` (Dawn's feature
``chromium-experimental-subgroup-matrix``; VK_KHR_cooperative_matrix on Vulkan):

* a workgroup is one subgroup of ``SG`` invocations and owns a ``BM x BN`` tile of c, held as
  ``(BM / SM) x (BN / SN)`` result matrices of the adapter's ``SM x SN x SK`` shape
  (unrolled: one variable per matrix). One subgroup per workgroup because the matrix
  builtins need uniform arguments: every offset then derives from ``workgroup_id`` and
  constants alone (with several subgroups, the subgroup's block offset comes from
  ``local_invocation_index``, which Tint's uniformity analysis rejects);
* K is walked in steps of ``BK``: the ``BM x BK`` slice of a and the ``BK x BN`` slice of b are
  staged in workgroup memory as f16, rows padded by ``pad`` elements (fewer bank conflicts on
  the fragment loads), loaded as ``vec4<f16>`` when K and N are multiples of 4 (``aligned``),
  else element by element; loads outside a and b read as zero (any M, K, N);
* the result matrices go straight to c (``subgroupMatrixStore``) when the tile lies inside c,
  the accumulator type is f16 with no epilogue and the variant is ``direct``; otherwise each
  matrix is stored into a workgroup scratch tile and written out element by element, guarded,
  converted to f16, with the optional ``bias[N]`` / tanh-GELU / ``residual[M, N]`` epilogue.

Binding sizes: Dawn derives a minimum binding size from every ``subgroupMatrixLoad`` /
``subgroupMatrixStore`` on a storage array (the size of the largest matrix used with that
binding: 512 bytes for a 16x16 f16 result), a size the WGSL declarations do not show, so
hal's reflection does not know it and a dispatch with a smaller binding would be rejected by
Dawn. a and b are only read element-wise (staged through workgroup memory), so they have no
such minimum; c has one only in a ``direct`` variant (:attr:`SubgroupMatrixConfig.c_min_bytes`),
which the caller picks only where c's binding is at least that large (the matmul example's
``record_matmul`` does: by the bound range and the shape).

The configuration's subgroup size must be the adapter's only one for the matrix shape
(its subgroup matrix configuration has min = max subgroup size), so that the workgroup is
exactly one subgroup.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

from hal.errors import InvalidArgumentError

__all__ = ["FEATURE", "SubgroupMatrixConfig", "subgroup_matrix_source"]

FEATURE = "chromium-experimental-subgroup-matrix"
"""The device feature the kernel needs (its WGSL extension: ``ENABLE``)."""

ENABLE = "chromium_experimental_subgroup_matrix"
"""The WGSL ``enable`` extension of the kernel."""

_GELU_C = "0.7978845608028654"  # sqrt(2 / pi)


@dataclass(frozen=True, slots=True)
class SubgroupMatrixConfig:
    """One variant: workgroup (= subgroup) tile ``bm x bn``, k-step ``bk``, the adapter's
    matrix shape ``sm x sn x sk`` and subgroup size ``sg``, the accumulator
    type (``"f32"`` or ``"f16"``), workgroup row padding ``pad`` (elements), whether K and N
    are multiples of 4 (``aligned``), the epilogue (``bias``, ``gelu``, ``residual``) and
    whether full tiles may store their matrices straight into c (``direct``: f16 results
    without epilogue only; see :attr:`c_min_bytes`)."""

    bm: int = 64
    bn: int = 64
    bk: int = 32
    sm: int = 16
    sn: int = 16
    sk: int = 16
    sg: int = 32
    accumulate: str = "f32"
    pad: int = 8
    aligned: bool = True
    bias: bool = False
    gelu: bool = False
    residual: bool = False
    direct: bool = True

    @property
    def stores_direct(self) -> bool:
        """Whether the kernel stores result matrices straight into c (``direct``, f16
        accumulation, no epilogue); else every result goes through workgroup memory."""
        return (
            self.direct
            and self.accumulate == "f16"
            and not (self.bias or self.gelu or self.residual)
        )

    @property
    def c_min_bytes(self) -> int:
        """The smallest c binding (bytes) the compiled variant accepts beyond one element:
        the size of one ``sm x sn`` f16 result matrix where it stores straight into c (Dawn
        derives that minimum from the ``subgroupMatrixStore``), else 0 (element-wise
        stores only)."""
        return self.sm * self.sn * 2 if self.stores_direct else 0

    @property
    def dtype(self) -> str:
        """The element type of a, b and c (always f16)."""
        return "f16"

    @property
    def threads(self) -> int:
        """Invocations per workgroup: one subgroup."""
        return self.sg

    @property
    def workgroup_bytes(self) -> int:
        """Workgroup memory: the two staging tiles plus the scratch tile."""
        staged = 2 * (self.bm * (self.bk + self.pad) + self.bk * (self.bn + self.pad))
        scratch = self.sm * self.sn * (4 if self.accumulate == "f32" else 2)
        return staged + scratch

    def with_epilogue(
        self,
        *,
        aligned: bool,
        bias: bool,
        gelu: bool,
        residual: bool,
        direct: bool | None = None,
    ) -> SubgroupMatrixConfig:
        """This tile shape with another alignment, epilogue and (unless None) ``direct``."""
        return replace(
            self,
            aligned=aligned,
            bias=bias,
            gelu=gelu,
            residual=residual,
            direct=self.direct if direct is None else direct,
        )

    def check(self) -> None:
        """Raise InvalidArgumentError unless the shape tiles evenly: ``bm``/``bn`` positive
        multiples of ``sm``/``sn``, ``bk`` a multiple of ``sk`` and of 4, every staging step
        covering whole vec4 slices, ``pad`` a multiple of 4, a known type."""
        problems = []
        if min(self.bm, self.bn, self.sm, self.sn, self.sk) <= 0:
            problems.append("sizes must be positive")
        elif self.bm % self.sm or self.bn % self.sn:
            problems.append("bm, bn must be multiples of sm, sn")
        if self.bk % self.sk or self.bk % 4 or self.pad % 4 or self.pad < 0:
            problems.append("bk must be a multiple of sk and 4, pad a multiple of 4")
        threads = self.threads
        if not 1 <= threads <= 1024:
            problems.append(f"subgroup size {threads} (1..1024)")
        elif (self.bm * self.bk) % (4 * threads) or (self.bk * self.bn) % (4 * threads):
            problems.append("bm * bk and bk * bn must be multiples of 4 * invocations")
        if self.accumulate not in ("f32", "f16"):
            problems.append("accumulate is 'f32' or 'f16'")
        if problems:
            raise InvalidArgumentError(f"SubgroupMatrixConfig {self}: {'; '.join(problems)}")


def subgroup_matrix_source(config: SubgroupMatrixConfig) -> str:
    """The WGSL module (entry point ``matmul``) of ``config``.

    Raises InvalidArgumentError for a configuration that does not tile
    (SubgroupMatrixConfig.check)."""
    config.check()
    return "\n".join([*_header(config), *_stage(config), *_entry(config), *_store(config), "}", ""])


def _header(cfg: SubgroupMatrixConfig) -> list[str]:
    vec = "vec4<f16>" if cfg.aligned else "f16"
    lines = [
        "enable f16;",
        f"enable {ENABLE};",
        f"// generated by hal.examples.matmul_subgroup_matrix: {cfg}",
        "struct Params { m: u32, k: u32, n: u32 }",
        "var<immediate> params: Params;",
        f"@group(0) @binding(0) var<storage, read> a: array<{vec}>;",
        f"@group(0) @binding(1) var<storage, read> b: array<{vec}>;",
        "@group(0) @binding(2) var<storage, read_write> c: array<f16>;",
    ]
    binding = 3
    if cfg.bias:
        lines.append(f"@group(0) @binding({binding}) var<storage, read> bias: array<f16>;")
        binding += 1
    if cfg.residual:
        lines.append(f"@group(0) @binding({binding}) var<storage, read> residual: array<f16>;")
    lda, ldb = cfg.bk + cfg.pad, cfg.bn + cfg.pad
    lines += [
        f"const BM: u32 = {cfg.bm}u;",
        f"const BN: u32 = {cfg.bn}u;",
        f"const BK: u32 = {cfg.bk}u;",
        f"const SG: u32 = {cfg.sg}u;",
        f"const THREADS: u32 = {cfg.threads}u;",
        f"const LDA: u32 = {lda}u;  // a tile [BM][BK + pad]",
        f"const LDB: u32 = {ldb}u;  // b tile [BK][BN + pad]",
        f"const STILE: u32 = {cfg.sm * cfg.sn}u;",
        f"var<workgroup> ta: array<f16, {cfg.bm * lda}>;",
        f"var<workgroup> tb: array<f16, {cfg.bk * ldb}>;",
        f"var<workgroup> scratch: array<{cfg.accumulate}, {cfg.sm * cfg.sn}>;",
    ]
    return lines


def _stage(cfg: SubgroupMatrixConfig) -> list[str]:
    """``stage(m0, n0, k0, lidx)``: the a and b slices of step k0 into workgroup memory."""
    a_steps = cfg.bm * cfg.bk // (4 * cfg.threads)
    b_steps = cfg.bk * cfg.bn // (4 * cfg.threads)
    lines = ["fn stage(m0: u32, n0: u32, k0: u32, lidx: u32) {"]
    for s in range(a_steps):
        lines += [
            f"  let ia{s} = lidx + {s}u * THREADS;",
            f"  let ra{s} = ia{s} / (BK / 4u);",
            f"  let ka{s} = (ia{s} % (BK / 4u)) * 4u;",
            f"  let va{s} = load_a(m0 + ra{s}, k0 + ka{s});",
            *[f"  ta[ra{s} * LDA + ka{s} + {e}u] = va{s}[{e}];" for e in range(4)],
        ]
    for s in range(b_steps):
        lines += [
            f"  let ib{s} = lidx + {s}u * THREADS;",
            f"  let kb{s} = ib{s} / (BN / 4u);",
            f"  let cb{s} = (ib{s} % (BN / 4u)) * 4u;",
            f"  let vb{s} = load_b(k0 + kb{s}, n0 + cb{s});",
            *[f"  tb[kb{s} * LDB + cb{s} + {e}u] = vb{s}[{e}];" for e in range(4)],
        ]
    lines.append("}")
    return [*_loads(cfg), *lines]


def _loads(cfg: SubgroupMatrixConfig) -> list[str]:
    """``load_a(row, k)`` / ``load_b(k, col)``: four consecutive elements, zero outside."""
    if cfg.aligned:
        # K and N are multiples of 4: a vec4 lies wholly inside or wholly outside its row.
        return [
            "fn load_a(r: u32, kc: u32) -> vec4<f16> {",
            "  if (r < params.m && kc < params.k) { return a[(r * params.k + kc) / 4u]; }",
            "  return vec4<f16>();",
            "}",
            "fn load_b(kr: u32, col: u32) -> vec4<f16> {",
            "  if (kr < params.k && col < params.n) { return b[(kr * params.n + col) / 4u]; }",
            "  return vec4<f16>();",
            "}",
        ]
    return [
        "fn load_a(r: u32, kc: u32) -> vec4<f16> {",
        "  var v = vec4<f16>();",
        "  if (r < params.m) {",
        *[
            f"    if (kc + {e}u < params.k) {{ v[{e}] = a[r * params.k + kc + {e}u]; }}"
            for e in range(4)
        ],
        "  }",
        "  return v;",
        "}",
        "fn load_b(kr: u32, col: u32) -> vec4<f16> {",
        "  var v = vec4<f16>();",
        "  if (kr < params.k) {",
        *[
            f"    if (col + {e}u < params.n) {{ v[{e}] = b[kr * params.n + col + {e}u]; }}"
            for e in range(4)
        ],
        "  }",
        "  return v;",
        "}",
    ]


def _types(cfg: SubgroupMatrixConfig) -> tuple[str, str, str]:
    # Subgroup matrix types take (columns, rows): left is M x K, right K x N, result M x N.
    left = f"subgroup_matrix_left<f16, {cfg.sk}, {cfg.sm}>"
    right = f"subgroup_matrix_right<f16, {cfg.sn}, {cfg.sk}>"
    result = f"subgroup_matrix_result<{cfg.accumulate}, {cfg.sn}, {cfg.sm}>"
    return left, right, result


def _entry(cfg: SubgroupMatrixConfig) -> list[str]:
    left, right, result = _types(cfg)
    ti, tj = cfg.bm // cfg.sm, cfg.bn // cfg.sn
    lines = [
        f"@compute @workgroup_size({cfg.threads})",
        "fn matmul(@builtin(workgroup_id) wg: vec3<u32>,",
        "          @builtin(local_invocation_index) lidx: u32) {",
        "  let m0 = wg.y * BM;",
        "  let n0 = wg.x * BN;",
        *[f"  var acc{i}_{j} = {result}();" for i in range(ti) for j in range(tj)],
        "  for (var k0 = 0u; k0 < params.k; k0 += BK) {",
        "    workgroupBarrier();",
        "    stage(m0, n0, k0, lidx);",
        "    workgroupBarrier();",
        f"    for (var kk = 0u; kk < BK; kk += {cfg.sk}u) {{",
    ]
    for i in range(ti):
        lines.append(
            f"      let l{i} = subgroupMatrixLoad<{left}>("
            f"&ta, {i * cfg.sm}u * LDA + kk, false, LDA);"
        )
    for j in range(tj):
        lines.append(
            f"      let r{j} = subgroupMatrixLoad<{right}>("
            f"&tb, kk * LDB + {j * cfg.sn}u, false, LDB);"
        )
    for i in range(ti):
        for j in range(tj):
            lines.append(
                f"      acc{i}_{j} = subgroupMatrixMultiplyAccumulate(l{i}, r{j}, acc{i}_{j});"
            )
    lines += ["    }", "  }"]
    return lines


def _store(cfg: SubgroupMatrixConfig) -> list[str]:
    """Write the result matrices: straight into c for full tiles where allowed, else through
    the subgroup's scratch tile, element by element (guarded, converted, epilogue)."""
    ti, tj = cfg.bm // cfg.sm, cfg.bn // cfg.sn
    tiles = [(i, j) for i in range(ti) for j in range(tj)]
    lines: list[str] = []
    indent = "  "
    if cfg.stores_direct:
        lines += ["  if (m0 + BM <= params.m && n0 + BN <= params.n) {"]
        lines += [
            f"    subgroupMatrixStore(&c, (m0 + {i * cfg.sm}u) * params.n + n0 + {j * cfg.sn}u, "
            f"acc{i}_{j}, false, params.n);"
            for i, j in tiles
        ]
        lines += ["    return;", "  }"]
    for i, j in tiles:
        lines += [
            f"{indent}workgroupBarrier();",
            f"{indent}subgroupMatrixStore(&scratch, 0u, acc{i}_{j}, false, {cfg.sn}u);",
            f"{indent}workgroupBarrier();",
            f"{indent}put(m0 + {i * cfg.sm}u, n0 + {j * cfg.sn}u, lidx);",
        ]
    return [*lines, *_put(cfg)]


def _put(cfg: SubgroupMatrixConfig) -> list[str]:
    """Close ``matmul`` and define ``put``: the subgroup's lanes write the scratch tile."""
    value = "  var v = f32(scratch[e]);"
    epilogue = []
    if cfg.bias:
        epilogue.append("  v += f32(bias[col]);")
    if cfg.gelu:
        epilogue.append(f"  v = 0.5 * v * (1.0 + tanh({_GELU_C} * (v + 0.044715 * v * v * v)));")
    if cfg.residual:
        epilogue.append("  v += f32(residual[row * params.n + col]);")
    return [
        "}",
        "fn put(row0: u32, col0: u32, lane: u32) {",
        "  for (var e = lane; e < STILE; e += SG) {",
        f"    let row = row0 + e / {cfg.sn}u;",
        f"    let col = col0 + e % {cfg.sn}u;",
        "    if (row < params.m && col < params.n) {",
        "    " + value,
        *["    " + line for line in epilogue],
        "      c[row * params.n + col] = f16(v);",
        "    }",
        "  }",
    ]
