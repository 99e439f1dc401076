"""WGSL reflection against a corpus of small shaders (tests/wgsl_corpus/), the defects of
issue 12 item 10, and a fuzzer: malformed WGSL raises InvalidArgumentError and nothing else.

Every corpus shader's reflection is asserted field by field, and every one also compiles
through ``device.create_executable`` on the session device (f16 only where the adapter has
``shader-f16``), so the reflector and the real compiler agree on what is valid.
"""

from __future__ import annotations

import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import hal
from hal.core.layout import entry_point_layouts
from hal.core.wgsl import ModuleInfo, reflect, reflect_uncached, rewrite_immediates
from tests.conftest import require_layout, submit_and_wait

CORPUS = Path(__file__).parent / "wgsl_corpus"
SOURCES = {p.name: p.read_text() for p in sorted(CORPUS.glob("*.wgsl"))}

S, RO, U = "storage", "read-only-storage", "uniform"
R, RW = "read", "read_write"

# name -> bindings (group, binding, name, kind, access, min_size), entry points
# {name: (workgroup size, used globals)}, immediate (size, [(field, offset, type)]) or None.
EXPECTED: dict[str, dict[str, Any]] = {
    "alias_nested.wgsl": {
        # Inner{a@0, v@16}=32 (align 16); Outer{head@0, inner@16, items@48 (2x32),
        # m@112 (mat3x3: 3 columns of 16), tail@160 (vec2u)} = 168 -> 176.
        "bindings": [(0, 0, "outer", S, RW, 176), (0, 1, "basis", U, R, 32)],
        "entry_points": {"main": ((1, 1, 1), {"outer", "basis"})},
    },
    "atomics.wgsl": {
        "bindings": [
            (0, 0, "counters", S, RW, 16),
            (0, 1, "hist", S, RW, 8),  # total + one runtime element
            (0, 2, "values", RO, R, 4),
        ],
        "entry_points": {"count": ((64, 1, 1), {"counters", "hist", "values", "local_count"})},
    },
    "const_exprs.wgsl": {
        "bindings": [(0, 0, "a", S, RW, 32), (0, 1, "b", S, RW, 20), (0, 2, "c", S, RW, 24)],
        "entry_points": {"main": ((8, 4, 1), {"a", "b", "c"})},
    },
    "diagnostics_requires.wgsl": {
        "bindings": [(0, 0, "data", S, RW, 64)],
        "entry_points": {"main": ((16, 1, 1), {"data"})},
    },
    "f16_structs.wgsl": {
        # Half{a@0 (2), b@8 (vec3<f16>: 6, align 8), c@16} = 20 -> 24.
        "bindings": [(0, 0, "halves", S, RW, 24), (0, 1, "plain", S, RW, 4)],
        "entry_points": {"widen": ((16, 1, 1), {"halves", "plain"})},
        "enables": {"f16"},
    },
    "immediate_const_array.wgsl": {
        "bindings": [(0, 0, "out", S, RW, 4)],
        "entry_points": {"copy_words": ((8, 1, 1), {"out", "words"})},
        "immediate": (32, [(f"words[{i}]", 4 * i, "u32") for i in range(8)]),
        "immediate_kind": RO,
    },
    "immediate_mixed.wgsl": {
        "bindings": [(0, 0, "out", S, RW, 12)],
        "entry_points": {"dump": ((1, 1, 1), {"out", "params"})},
        "immediate": (
            12,
            [("params.n", 0, "u32"), ("params.a", 4, "f32"), ("params.b", 8, "f32")],
        ),
    },
    "immediate_padded.wgsl": {
        "bindings": [(0, 0, "out", S, RW, 36)],
        "entry_points": {"dump": ((1, 1, 1), {"out", "push"})},
        "immediate": (
            48,
            [
                ("push.i", 0, "i32"),
                ("push.v[0]", 16, "f32"),
                ("push.v[1]", 20, "f32"),
                ("push.v[2]", 24, "f32"),
                ("push.u", 28, "u32"),
                ("push.m[0][0]", 32, "f32"),
                ("push.m[0][1]", 36, "f32"),
                ("push.m[1][0]", 40, "f32"),
                ("push.m[1][1]", 44, "f32"),
            ],
        ),
    },
    "immediate_suffix_array.wgsl": {
        "bindings": [(0, 0, "out", S, RW, 16)],
        "entry_points": {"main": ((4, 1, 1), {"out", "w"})},
        "immediate": (16, [(f"w[{i}]", 4 * i, "u32") for i in range(4)]),
        "immediate_kind": RO,
    },
    "multi_entry.wgsl": {
        "bindings": [(0, 0, "a", RO, R, 4), (0, 1, "b", S, RW, 4), (0, 2, "c", S, RW, 4)],
        "entry_points": {
            "double_into_b": ((64, 1, 1), {"a", "b"}),  # a through twice() -> load_a()
            "clear_c": ((32, 2, 1), {"c"}),
        },
        "graphics": ("vs_main", "fs_main"),
    },
    "nested_comments.wgsl": {
        "bindings": [(0, 0, "out", S, RW, 4)],
        "entry_points": {"main": ((64, 1, 1), {"out"})},
    },
    "overrides.wgsl": {
        "bindings": [(0, 0, "out", S, RW, 4)],
        "entry_points": {"main": ((64, 1, 1), {"out", "tile"})},  # WG's default
        "overrides": [
            ("WG", "u32", None, 64, True),
            ("SCALE", "f32", 7, 2.0, True),
            ("ENABLED", "bool", None, True, True),
            ("OFFSET", "i32", None, 3, True),
            ("COUNT", "i32", None, None, False),
        ],
        "constants": {"COUNT": 1},
    },
    "runtime_struct.wgsl": {
        "bindings": [(0, 0, "buf", S, RW, 16), (0, 1, "table", U, R, 64)],
        "entry_points": {"main": ((64, 1, 1), {"buf", "table"})},
    },
    "size_align.wgsl": {
        # count@0 (@size 16), scale@16 (@align 16), tail@24 (8) -> 32, align 16.
        "bindings": [(0, 0, "header", S, RW, 32)],
        "entry_points": {"bump": ((1, 1, 1), {"header"})},
    },
    "suffixed_attributes.wgsl": {
        "bindings": [(0, 0, "src", RO, R, 4), (0, 1, "dst", S, RW, 4), (0, 2, "scale", U, R, 16)],
        "entry_points": {"main": ((4, 2, 1), {"src", "dst", "scale"})},
    },
    "textures_unused.wgsl": {
        "bindings": [(0, 0, "out", S, RW, 4)],
        "entry_points": {"fill": ((64, 1, 1), {"out"})},
        "resources": [
            (0, 1, "tex", "texture_2d<f32>"),
            (0, 2, "samp", "sampler"),
            (1, 0, "storage_tex", "texture_storage_2d<rgba8unorm, write>"),
        ],
    },
    "tinygrad_style.wgsl": {
        "bindings": [
            (0, 0, "data0", S, RW, 4),
            (0, 1, "data1", S, RW, 4),
            (0, 2, "data2", S, RW, 4),
        ],
        "entry_points": {"r_4_32": ((32, 1, 1), {"data0", "data1", "data2", "temp0"})},
    },
    "uniform_storage_mix.wgsl": {
        "bindings": [
            (0, 0, "params", U, R, 16),
            (0, 1, "transforms", RO, R, 64),
            (0, 2, "points", RO, R, 16),
            (0, 3, "result", S, RW, 16),
        ],
        "entry_points": {"transform": ((8, 8, 1), {"params", "transforms", "points", "result"})},
    },
    "vec3_padding.wgsl": {
        # Particle{pos@0, mass@12, vel@16} = 28 -> 32; Push{n@0, v@16, k@28} = 32.
        "bindings": [(0, 0, "particles", S, RW, 32)],
        "entry_points": {"step": ((32, 1, 1), {"particles", "push"})},
        "immediate": (
            32,
            [
                ("push.n", 0, "u32"),
                ("push.v[0]", 16, "f32"),
                ("push.v[1]", 20, "f32"),
                ("push.v[2]", 24, "f32"),
                ("push.k", 28, "i32"),
            ],
        ),
    },
    "workgroup_tiles.wgsl": {
        "bindings": [(0, 0, "input", RO, R, 4), (0, 1, "output", S, RW, 4)],
        "entry_points": {"transpose": ((16, 16, 1), {"input", "output", "tile", "seed"})},
    },
}


def summary(info: ModuleInfo) -> dict[str, Any]:
    """The reflected facts EXPECTED describes, in its shape."""
    out: dict[str, Any] = {
        "bindings": [
            (b.group, b.binding, b.name, b.kind, b.access, b.min_size) for b in info.bindings
        ],
        "entry_points": {e.name: (e.workgroup_size, set(e.uses)) for e in info.entry_points},
    }
    if info.immediate_name is not None:
        out["immediate"] = (
            info.immediate_size,
            [(f.name, f.offset, f.scalar) for f in info.immediate_fields],
        )
        if info.immediate_kind != U:
            out["immediate_kind"] = info.immediate_kind
    if info.overrides:
        out["overrides"] = [
            (o.name, o.type, o.id, o.default, o.has_default) for o in info.overrides
        ]
    if info.resources:
        out["resources"] = [(r.group, r.binding, r.name, r.type) for r in info.resources]
    if info.graphics_entry_points:
        out["graphics"] = info.graphics_entry_points
    if info.enables:
        out["enables"] = set(info.enables)
    return out


def test_the_corpus_is_covered() -> None:
    assert 15 <= len(SOURCES) <= 25
    assert set(SOURCES) == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_reflection(name: str) -> None:
    expected = {k: v for k, v in EXPECTED[name].items() if k != "constants"}
    assert summary(reflect(SOURCES[name])) == expected


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_corpus_compiles_and_layouts_agree(
    name: str, device: hal.Device, device_no_immediates: hal.Device
) -> None:
    """The real compiler accepts every corpus shader (on both devices: the second compiles
    the rewritten module), and the executable's layouts are the reflected ones."""
    info = reflect(SOURCES[name])
    if "f16" in info.enables and "shader-f16" not in device.features:
        pytest.skip("the adapter lacks shader-f16")  # reflection is still asserted above
    constants = EXPECTED[name].get("constants")
    for dev in (device, device_no_immediates):
        executable = dev.create_executable(SOURCES[name], constants=constants, label=name)
        assert executable.entry_points == tuple(EXPECTED[name]["entry_points"])
        for ep, layout in entry_point_layouts(info).items():
            assert executable.layout(ep) == layout


# -- the defects, one by one ------------------------------------------------------------------


def one_binding(declarations: str, body: str = "_ = &x;") -> ModuleInfo:
    return reflect(declarations + f"\n@compute @workgroup_size(1) fn main() {{ {body} }}\n")


@pytest.mark.parametrize(
    ("declarations", "group", "binding"),
    [
        ("@group(0) @binding(0u) var<storage, read_write> x: array<u32>;", 0, 0),
        ("@group(0i) @binding(2) var<storage, read_write> x: array<u32>;", 0, 2),
        ("const B = 1;\n@group(0) @binding(B) var<storage, read_write> x: array<u32>;", 0, 1),
        ("const B: u32 = 3u;\n@group(0) @binding(B) var<storage, read_write> x: u32;", 0, 3),
        ("@group(0) @binding(0x10) var<storage, read_write> x: u32;", 0, 16),
        ("const G = 1;\n@group(G - 1) @binding((G + 1) * 2) var<uniform> x: u32;", 0, 4),
    ],
)
def test_attribute_constant_expressions(declarations: str, group: int, binding: int) -> None:
    info = one_binding(declarations)
    assert [(b.group, b.binding, b.name) for b in info.bindings] == [(group, binding, "x")]


def test_workgroup_size_constant_expressions() -> None:
    info = reflect(
        "const W = 8;\n@compute @workgroup_size(min(4, W), max(1, 2), abs(-3)) fn a() {}\n"
        "@compute @workgroup_size(u32(W) >> 1u, i32(2.5)) fn b() {}\n"
    )
    assert [(e.name, e.workgroup_size) for e in info.entry_points] == [
        ("a", (4, 2, 3)),
        ("b", (4, 2, 1)),
    ]


def test_workgroup_size_from_an_override_without_default_is_unknown() -> None:
    info = reflect("override W: u32;\n@compute @workgroup_size(W) fn a() {}\n")
    assert info.entry_points[0].workgroup_size is None


def test_size_and_align_member_attributes() -> None:
    info = one_binding(
        "struct S { a: u32, @align(32) b: u32, @size(20) c: vec2<f32>, d: u32 }\n"
        "@group(0) @binding(0) var<storage, read_write> x: S;"
    )
    # a@0, b@32, c@40 (size 20 -> 60), d@60 -> 64, struct align 32 -> 64
    assert info.bindings[0].min_size == 64


def test_too_short_binding_for_a_sized_member_fails_at_record(device: hal.Device) -> None:
    """@size/@align grow the header to 32 bytes: a 16-byte binding is rejected at record
    time, before anything reaches wgpu."""
    executable = device.create_executable(SOURCES["size_align.wgsl"])
    short = device.allocate_buffer(16)
    cb = device.create_command_buffer()
    cb.begin()
    with pytest.raises(hal.OutOfRangeError, match=r"bindings\[0\] is 16 bytes.*at least 32"):
        cb.dispatch(executable, "bump", (1, 1, 1), bindings=[short])
    assert cb.segments == ()
    require_layout(device, "explicit-member-offsets")
    initial = np.array([5, 0, 0, 0, 0, 0, 0, 0], dtype=np.uint32)
    initial[4:].view(np.float32)[:] = [2.0, 0.0, 1.5, 3.0]  # scale@16, tail@24
    ok = device.buffer_from_numpy(initial)
    cb.dispatch(executable, "bump", (1, 1, 1), bindings=[ok])
    cb.end()
    submit_and_wait(device, cb)
    words = ok.to_numpy(np.uint32)
    assert words[0] == 6
    np.testing.assert_array_equal(words[6:].view(np.float32), [3.0, 6.0])


def test_nested_block_comments_hide_their_declarations() -> None:
    info = reflect(SOURCES["nested_comments.wgsl"])
    assert [b.name for b in info.bindings] == ["out"]
    phantom = reflect(
        "/* a /* b */ @group(0) @binding(3) var<storage> x: u32; */\n"
        "@compute @workgroup_size(1) fn main() {}\n"
    )
    assert phantom.bindings == ()


def test_immediate_array_with_suffixed_count_is_typed() -> None:
    info = reflect(SOURCES["immediate_suffix_array.wgsl"])
    layout = entry_point_layouts(info)["main"]
    assert layout.constants_size == 16
    assert [(f.offset, f.scalar) for f in layout.constants_fields] == [
        (0, "u32"),
        (4, "u32"),
        (8, "u32"),
        (12, "u32"),
    ]


def test_alias_and_f16_need_enable() -> None:
    info = one_binding(
        "enable f16;\nalias H = vec4<f16>;\n@group(0) @binding(0) var<storage, read_write> x: H;"
    )
    assert info.bindings[0].min_size == 8
    with pytest.raises(hal.InvalidArgumentError, match="without `enable f16;`"):
        one_binding("@group(0) @binding(0) var<storage, read_write> x: vec4<f16>;")


def test_graphics_entry_points_are_ignored() -> None:
    info = reflect(SOURCES["multi_entry.wgsl"])
    assert [e.name for e in info.entry_points] == ["double_into_b", "clear_c"]
    only_graphics = reflect("@vertex fn vs() -> @builtin(position) vec4f { return vec4f(); }\n")
    assert only_graphics.entry_points == () and only_graphics.graphics_entry_points == ("vs",)


def test_rewrite_ignores_declarations_in_comments() -> None:
    source = (
        "// var<immediate> p: P;  (the old declaration)\n"
        "struct P { n: u32 }\nvar<immediate> p: P;\n"
        "@group(0) @binding(0) var<storage, read_write> out: array<u32>;\n"
        "@compute @workgroup_size(1) fn main() { out[0] = p.n; }\n"
    )
    rewritten = rewrite_immediates(source, reflect(source), 1)
    assert rewritten.splitlines()[0] == "// var<immediate> p: P;  (the old declaration)"
    assert "@group(1) @binding(0) var<uniform> p: P;" in rewritten


# -- invalid modules: InvalidArgumentError naming create_executable ---------------------------


def test_recursive_struct(device: hal.Device) -> None:
    source = (
        "struct A { a: A }\n@group(0) @binding(0) var<storage, read_write> x: A;\n"
        "@compute @workgroup_size(1) fn main() { _ = &x; }\n"
    )
    with pytest.raises(hal.InvalidArgumentError, match="struct 'A' contains itself"):
        reflect(source)
    with pytest.raises(
        hal.InvalidArgumentError, match=r"^create_executable: source: .*'A' contains itself"
    ):
        device.create_executable(source)
    mutual = "struct A { b: B }\nstruct B { a: array<A, 2> }\nvar<immediate> p: A;\n"
    with pytest.raises(hal.InvalidArgumentError, match="contains itself"):
        reflect(mutual + "@compute @workgroup_size(1) fn main() { _ = p; }\n")


def test_non_utf8_file(device: hal.Device, tmp_path: Path) -> None:
    path = tmp_path / "latin1.wgsl"
    path.write_bytes(b"// caf\xe9\n@compute @workgroup_size(1) fn main() {}\n")
    with pytest.raises(hal.InvalidArgumentError) as info:
        device.create_executable(path)
    message = str(info.value)
    assert message.startswith("create_executable: source ") and "not UTF-8" in message
    assert str(path) in message


def test_used_texture_is_rejected_unused_is_ignored(device: hal.Device) -> None:
    executable = device.create_executable(SOURCES["textures_unused.wgsl"])
    assert executable.layout("fill").binding_count == 1
    used = (
        "@group(0) @binding(0) var<storage, read_write> out: array<f32>;\n"
        "@group(0) @binding(1) var tex: texture_2d<f32>;\n"
        "@compute @workgroup_size(1) fn main() { out[0] = textureLoad(tex, vec2i(0), 0).x; }\n"
    )
    with pytest.raises(
        hal.InvalidArgumentError,
        match=r"create_executable: entry point 'main' uses 'tex' .*texture_2d<f32>.*buffers",
    ):
        device.create_executable(used)


@pytest.mark.parametrize(
    ("source", "rule"),
    [
        ("@group(0) @binding(-1) var<storage> x: u32;", "must be a non-negative integer"),
        ("@group(0) @binding(1.5) var<storage> x: u32;", "must be a non-negative integer"),
        ("@group(0) @binding(N) var<storage> x: u32;", "not a constant expression"),
        ("@group(0) @binding(0) var<storage, write> x: u32;", "access mode"),
        ("struct S { @size(2) a: u32 }\nvar<immediate> p: S;", "smaller than its type"),
        ("struct S { @align(3) a: u32 }\nvar<immediate> p: S;", "not a power of two"),
        ("var<immediate> p: u32;\nvar<immediate> q: u32;", "a second var<immediate>"),
        ("var<immediate> p: array<u32, 0>;", "must be positive"),
        ("alias A = B;\nalias B = A;\nvar<immediate> p: A;", "alias cycle"),
        ("fn f() { let a = 1;", "unterminated function body"),
        ("/* open", "unterminated block comment"),
        ("let x = 1;", "expected a module-scope declaration"),
        ("@group(0) @binding(0) var<storage> x: u32 $", r"unexpected character '\$'"),
        ("@compute @workgroup_size(0) fn main() {}", "positive integer"),
    ],
)
def test_malformed_modules_raise_invalid_argument(source: str, rule: str) -> None:
    with pytest.raises(hal.InvalidArgumentError, match=rule):
        reflect_uncached(source + "\n@compute @workgroup_size(1) fn zz() {}\n")


def test_deep_nesting_is_invalid_argument_not_recursion_error() -> None:
    deep_expr = "@group(0) @binding(" + "(" * 3000 + "0" + ")" * 3000 + ") var<storage> x: u32;"
    deep_type = "var<private> x: " + "array<" * 3000 + "u32" + ", 1>" * 3000 + ";"
    aliases = "".join(f"alias A{i} = array<A{i + 1}, 1>;\n" for i in range(3000))
    deep_alias = aliases + "alias A3000 = u32;\n@group(0) @binding(0) var<storage> x: A0;"
    for source in (deep_expr, deep_type, deep_alias):
        with pytest.raises(hal.InvalidArgumentError):
            reflect_uncached(source + "\n@compute @workgroup_size(1) fn main() { _ = &x; }\n")


# -- fuzzing: random mutations of the corpus --------------------------------------------------

_PIECES = [
    "/*",
    "*/",
    "//",
    "\n",
    "@",
    "(",
    ")",
    "<",
    ">",
    "{",
    "}",
    ",",
    ";",
    ":",
    "=",
    "0u",
    "-1",
    "1e40",
    "0x",
    "array<",
    "struct A { a: A }",
    "var<immediate>",
    "@binding(",
    "alias",
    "const",
    "override",
    "fn",
    "@compute",
    "@workgroup_size(",
    "\xe9",
    "\x00",
    "f16",
    "'",
]


def mutate(source: str, seed: int, edits: int) -> str:
    rng = random.Random(seed)
    text = source
    for _ in range(edits):
        at = rng.randrange(len(text) + 1)
        choice = rng.randrange(4)
        if choice == 0:  # delete a slice
            text = text[:at] + text[at + rng.randrange(1, 12) :]
        elif choice == 1:  # insert a piece of WGSL syntax
            text = text[:at] + rng.choice(_PIECES) + text[at:]
        elif choice == 2:  # duplicate a slice elsewhere
            start = rng.randrange(len(text) + 1)
            text = text[:at] + text[start : start + rng.randrange(1, 40)] + text[at:]
        else:  # replace one character
            text = text[:at] + chr(rng.randrange(32, 127)) + text[at + 1 :]
    return text


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    name=st.sampled_from(sorted(SOURCES)),
    seed=st.integers(0, 2**32 - 1),
    edits=st.integers(1, 8),
)
def test_mutated_corpus_raises_only_invalid_argument(name: str, seed: int, edits: int) -> None:
    source = mutate(SOURCES[name], seed, edits)
    try:
        info = reflect_uncached(source)
    except hal.InvalidArgumentError:
        return
    # What reflects must also lay out and rewrite without error.
    entry_point_layouts(info)
    rewrite_immediates(source, info, 1)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.sampled_from([*_PIECES, " ", "x", "1", "u32", "vec3<f32>"]), max_size=40))
def test_random_token_soup_raises_only_invalid_argument(pieces: list[str]) -> None:
    source = "".join(pieces)
    try:
        info = reflect_uncached(source)
    except hal.InvalidArgumentError as error:
        assert str(error)  # the rule it broke, never an empty message
        return
    assert isinstance(info, ModuleInfo)
    assert rewrite_immediates(source, info, 1).count("var<immediate>") <= source.count(
        "var<immediate>"
    )
