"""The ``python -m hal`` command line: in-process through ``hal.tools.cli.main`` and a few
times as a subprocess. Exit codes: 0 ok, 1 runtime failure, 2 usage error."""

from __future__ import annotations

import json
import os
import shutil
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from hal.core.builtins import shader_path
from hal.tools.cli import main
from hal.tools.cli_run import (
    KernelInterface,
    UsageError,
    load_input,
    pack_constants,
    parse_dtype,
    parse_output,
    parse_shape,
    parse_workgroups,
)

REPO = Path(__file__).resolve().parent.parent
KERNELS = Path(__file__).resolve().parent / "kernels"
ELEMENTWISE = shader_path("elementwise.wgsl")
SUBPROCESS_TIMEOUT = 120


def run_cli(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """``main(argv)`` with captured output: (exit code, stdout, stderr)."""
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def x_npy(tmp_path: Path) -> Path:
    path = tmp_path / "x.npy"
    np.save(path, np.linspace(-2, 2, 1000, dtype=np.float32))
    return path


# -- top level ---------------------------------------------------------------------------------


def test_help_and_usage(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "--help")
    assert code == 0
    for command in ("devices", "run", "example", "bench", "demo", "exit status"):
        assert command in out
    code, out, _ = run_cli(capsys, "run", "--help")
    assert code == 0 and "--workgroups" in out and "OUT.npy:DTYPE:SHAPE" in out
    assert run_cli(capsys)[0] == 2
    assert run_cli(capsys, "frobnicate")[0] == 2
    assert run_cli(capsys, "run", "k.wgsl")[0] == 2  # --workgroups is required


# -- devices -----------------------------------------------------------------------------------


def test_devices(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "devices")
    assert code == 0
    assert "[0] " in out and "backend=" in out and "type=" in out
    assert "max-storage-buffer-binding-size" in out and "immediates" in out
    assert "(default)" in out
    code, verbose, _ = run_cli(capsys, "devices", "-v")
    assert code == 0 and "max-bind-groups" in verbose and "features (" in verbose


def test_devices_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "devices", "--json")
    assert code == 0
    adapters = json.loads(out)
    assert adapters and {"name", "backend", "type", "limits", "features", "default"} <= set(
        adapters[0]
    )
    assert sum(a["default"] for a in adapters) == 1


def test_devices_check(capsys: pytest.CaptureFixture[str]) -> None:
    from hal.runtime.device import available_adapters

    native = any(a.backend in ("vulkan", "metal", "d3d12") for a in available_adapters())
    code, out, _ = run_cli(capsys, "devices", "--check")
    assert code == (0 if native else 1) and out == ""


# -- run: parsing (no GPU) ---------------------------------------------------------------------


def test_parse_helpers(tmp_path: Path) -> None:
    assert parse_workgroups("4") == (4, 1, 1)
    assert parse_workgroups("4,2") == (4, 2, 1)
    assert parse_workgroups("4x2x3") == (4, 2, 3)
    assert parse_shape("64x32") == (64, 32) and parse_shape("7") == (7,)
    assert parse_shape("4,5") == (4, 5) and parse_shape("()") == () and parse_shape("0") == (0,)
    assert parse_dtype("f32", "t") == np.float32 and parse_dtype("uint8", "t") == np.uint8
    spec = parse_output(f"{tmp_path}/o.npy:i32:2x3")
    assert spec.dtype == np.int32 and spec.shape == (2, 3) and spec.nbytes == 24
    for bad in ("", "1,2,3,4", "-1", "a"):
        with pytest.raises(UsageError):
            parse_workgroups(bad)
    for bad_shape in ("4xq", "-3"):
        with pytest.raises(UsageError):
            parse_shape(bad_shape)
    for bad_dtype in ("f33", "object", "U4"):
        with pytest.raises(UsageError):
            parse_dtype(bad_dtype, "t")
    with pytest.raises(UsageError, match="PATH:DTYPE:SHAPE"):
        parse_output("o.npy:f32")
    with pytest.raises(UsageError, match="does not exist"):
        parse_output(f"{tmp_path}/missing/o.npy:f32:4")


def test_load_input(tmp_path: Path) -> None:
    np.save(tmp_path / "s.npy", np.float64(3.5))
    np.save(tmp_path / "m.npy", np.arange(6, dtype=np.int64).reshape(2, 3).T)
    _, scalar = load_input(str(tmp_path / "s.npy"))
    assert scalar.shape == () and scalar.dtype == np.float64
    _, converted = load_input(f"{tmp_path / 'm.npy'}:i32")
    assert converted.dtype == np.int32 and converted.shape == (3, 2)
    assert converted.flags.c_contiguous
    with pytest.raises(UsageError, match="unknown dtype"):
        load_input(f"{tmp_path / 'm.npy'}:q7")


def test_pack_constants_uses_field_types() -> None:
    kernel = KernelInterface("k", (), 0, 16, ("u32", "f32", "i32", "u32"))
    data = pack_constants(["7", "2", "-3", "0x10"], kernel)
    assert data == struct.pack("<Ifii", 7, 2.0, -3, 16)
    assert pack_constants(["f32:1.5", "i32:4"], kernel) == struct.pack("<fi", 1.5, 4)
    untyped = KernelInterface("k", (), 0, 12, ())
    assert pack_constants(["5", "-5", "2.5"], untyped) == struct.pack("<Iif", 5, -5, 2.5)
    for values, message in (
        (["1", "2", "3", "4", "5"], "5 values given"),
        (["1.5"], "not a valid u32"),
        (["-1"], "does not fit in u32"),
        (["q32:1"], "type must be"),
        (["u32:4294967296"], "does not fit"),
    ):
        with pytest.raises(UsageError, match=message):
            pack_constants(values, kernel)


# -- run: on the GPU ---------------------------------------------------------------------------


def test_run_scale(capsys: pytest.CaptureFixture[str], tmp_path: Path, x_npy: Path) -> None:
    out_path = tmp_path / "y.out"  # no .npy suffix: written exactly there
    code, out, err = run_cli(
        capsys,
        "run",
        ELEMENTWISE,
        "--entry",
        "scale",
        "--workgroups",
        "16,1,1",
        "--input",
        x_npy,
        "--output",
        f"{out_path}:float32:1000",
        "--constants",
        "1000,2.0,1",
        "--repeat",
        "3",
    )
    assert code == 0, err
    x = np.load(x_npy)
    np.testing.assert_array_equal(np.load(out_path), x * np.float32(2) + np.float32(1))
    assert "timing: first run" in out and "over 2 run(s)" in out
    assert "@binding(0) <- " in out and "-> " in out


def test_run_repeat_restores_state(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, x_npy: Path
) -> None:
    # accumulate adds into its output: without the reset between runs, 3 runs would give 3x.
    out_path = tmp_path / "acc.npy"
    code, out, err = run_cli(
        capsys,
        "run",
        ELEMENTWISE,
        "--entry",
        "accumulate",
        "--workgroups",
        "16",
        "--input",
        x_npy,
        "--output",
        f"{out_path}:f32:40x25",
        "--constants",
        "1000",
        "--repeat",
        "3",
        "-q",
    )
    assert code == 0, err
    np.testing.assert_array_equal(np.load(out_path), np.load(x_npy).reshape(40, 25))
    assert out.startswith("timing:")


@pytest.mark.parametrize("no_immediates", [False, True])
def test_run_typed_constants(
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    no_immediates: bool,
) -> None:
    if no_immediates:
        monkeypatch.setenv("HAL_DISABLE_FEATURES", "immediates")
    out_path = tmp_path / "mixed.npy"
    # Mixed is {a: i32, b: f32, c: u32, d: f32, e: i32}: "2" packs as f32 for b, "-3" as i32.
    code, _, err = run_cli(
        capsys,
        "run",
        KERNELS / "constants.wgsl",
        "--entry",
        "dump_mixed",
        "--workgroups",
        "1",
        "--output",
        f"{out_path}:u32:7",
        "--constants",
        "-3",
        "2",
        "7,f32:0.5",
        "i32:5",
    )
    assert code == 0, err
    got = np.load(out_path)
    want = struct.unpack("<7I", struct.pack("<ifIfiif", -3, 2.0, 7, 0.5, 5, 2, 1.0))
    assert tuple(int(v) for v in got) == want


def test_run_matmul_kernel(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    a = rng.uniform(-1, 1, (70, 33))
    b = rng.uniform(-1, 1, (33, 90)).astype(np.float32)
    np.save(tmp_path / "a.npy", a)  # float64 on disk, converted by :f32
    np.save(tmp_path / "b.npy", b)
    c_path = tmp_path / "c.npy"
    code, _, err = run_cli(
        capsys,
        "run",
        shader_path("matmul.wgsl"),
        "--workgroups",
        "2,2",
        "--input",
        f"{tmp_path / 'a.npy'}:f32",
        tmp_path / "b.npy",
        "--output",
        f"{c_path}:f32:70x90",
        "--constants",
        "70,33,90",
    )
    assert code == 0, err
    want = a.astype(np.float32).astype(np.float64) @ b.astype(np.float64)
    np.testing.assert_allclose(np.load(c_path), want, rtol=1e-4, atol=1e-5)


def test_run_override(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    kernel = tmp_path / "fill.wgsl"
    kernel.write_text(
        "override VALUE: f32 = 1.0;\n"
        "@group(0) @binding(0) var<storage, read_write> out: array<f32>;\n"
        "@compute @workgroup_size(4) fn main(@builtin(global_invocation_id) g: vec3<u32>) {\n"
        "  out[g.x] = VALUE;\n}\n"
    )
    out_path = tmp_path / "o.npy"
    args = ["run", kernel, "--workgroups", "1", "--output", f"{out_path}:f32:4"]
    code, _, err = run_cli(capsys, *args, "--override", "VALUE=2.5")
    assert code == 0, err
    np.testing.assert_array_equal(np.load(out_path), np.full(4, 2.5, np.float32))
    assert run_cli(capsys, *args, "--override", "VALUE")[0] == 2


def test_run_usage_errors(capsys: pytest.CaptureFixture[str], tmp_path: Path, x_npy: Path) -> None:
    (tmp_path / "bad.npy").write_text("not an array")
    np.save(tmp_path / "words.npy", np.array(["a", "b"]))
    out = f"{tmp_path / 'y.npy'}:f32:1000"
    base = ["run", ELEMENTWISE, "--entry", "scale", "--workgroups", "16"]
    cases = [
        (["run", tmp_path / "none.wgsl", "--workgroups", "1"], "no such file"),
        ([*base, "--input", tmp_path / "none.npy", "--output", out], "no such file"),
        ([*base, "--input", tmp_path / "bad.npy", "--output", out], "not a readable .npy"),
        ([*base, "--input", tmp_path / "words.npy", "--output", out], "not numeric"),
        ([*base, "--input", x_npy, "--output", f"{tmp_path}/y.npy:f32:4xq"], "shape"),
        ([*base, "--input", x_npy, "--output", f"{tmp_path}/y.npy:f33:4"], "unknown dtype"),
        ([*base, "--input", x_npy, "--output", f"{tmp_path}/no/y.npy:f32:4"], "does not exist"),
        ([*base, "--input", x_npy], "takes 2 bindings"),
        ([*base, "--input", x_npy, x_npy, "--output", out], "takes 2 bindings"),
        ([*base, "--input", x_npy, "--output", out, "--constants", "1,2,3,4"], "4 values"),
        ([*base, "--input", x_npy, "--output", out, "--repeat", "0"], "--repeat"),
        (
            ["run", ELEMENTWISE, "--entry", "nope", "--workgroups", "1", "--input", x_npy],
            "no such @compute entry point",
        ),
        (["run", ELEMENTWISE, "--workgroups", "1"], "several entry points"),
        (
            ["run", ELEMENTWISE, "--entry", "scale", "--workgroups", "1,2,3,4"],
            "--workgroups",
        ),
    ]
    for argv, message in cases:
        code, _, err = run_cli(capsys, *argv)
        assert code == 2, ([str(a) for a in argv], err)
        assert message in err, (argv, err)
        assert err.startswith("python -m hal run: error: ")


def test_run_limits_and_adapter_are_usage_errors(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, x_npy: Path
) -> None:
    out = f"{tmp_path / 'y.npy'}:f32:1000"
    argv = ["run", ELEMENTWISE, "--entry", "scale", "--input", x_npy, "--output", out]
    code, _, err = run_cli(capsys, *argv, "--workgroups", "70000000")
    assert code == 2 and "per dimension" in err
    code, _, err = run_cli(capsys, *argv, "--workgroups", "1", "--adapter", "99")
    assert code == 2 and "--adapter" in err


def test_run_compile_error_is_a_runtime_failure(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    kernel = tmp_path / "broken.wgsl"
    kernel.write_text("@compute @workgroup_size(1) fn main() { let x: u32 = 1.5; }\n")
    code, _, err = run_cli(capsys, "run", kernel, "--workgroups", "1")
    assert code == 1 and "does not compile" in err


# -- example -----------------------------------------------------------------------------------


def test_example(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run_cli(capsys, "example", "matmul", "--size", "40x30x20", "--repeat", "2")
    assert code == 0, err
    assert "matmul: [40x30] @ [30x20]" in out and "ms median of 2" in out and out.endswith("OK\n")
    code, out, _ = run_cli(capsys, "example", "--list")
    assert code == 0 and all(name in out for name in ("matmul", "prefix_sum", "softmax", "mlp"))


def test_example_mismatch_is_a_runtime_failure(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from hal.examples import matmul

    monkeypatch.setattr(matmul, "RTOL", 0.0)
    monkeypatch.setattr(matmul, "ATOL_PER_K", 0.0)
    code, out, _ = run_cli(capsys, "example", "matmul", "--size", "8x300x8", "--repeat", "1")
    assert code == 1 and out.endswith("MISMATCH\n")


def test_example_usage_errors(capsys: pytest.CaptureFixture[str]) -> None:
    for argv, message in (
        (["example", "nope"], "unknown example"),
        (["example", "softmax", "--size", "0x4"], "<= 0"),
        (["example", "softmax", "--size", "2x3x4"], "at most 2"),
        (["example", "all", "--size", "4"], "single example"),
        (["example", "mlp", "--repeat", "0"], "--repeat"),
    ):
        code, _, err = run_cli(capsys, *argv)
        assert code == 2 and message in err, (argv, err)
    assert run_cli(capsys, "example")[0] == 2  # lists the examples, but a name is needed


# -- bench -------------------------------------------------------------------------------------


def _fake_benchmarks(root: Path, *names: str, body: str = "print('ran', sys.argv[1:])") -> Path:
    folder = root / "benchmarks"
    folder.mkdir(exist_ok=True)
    for name in names:
        (folder / name).write_text(f"import sys\n{body}\n")
    return folder


def test_bench_runs_default_scripts(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = _fake_benchmarks(tmp_path, "dispatch_overhead.py", "queue_latency.py")
    code, out, err = run_cli(capsys, "bench", "--dir", folder, "--", "--reps", "3")
    assert code == 0, err
    assert out.count("ran ['--reps', '3']") == 2
    assert "dispatch_overhead.py" in out and "queue_latency.py" in out
    assert "2/2" in err and "[" in err  # the progress bar


def test_bench_prefers_run_all(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    folder = _fake_benchmarks(tmp_path, "dispatch_overhead.py", "run_all.py")
    code, out, _ = run_cli(capsys, "bench", "--dir", folder)
    assert code == 0 and "run_all.py" in out and "dispatch_overhead.py" not in out


def test_bench_failures(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    folder = _fake_benchmarks(tmp_path, "queue_latency.py", body="sys.exit(3)")
    code, out, _ = run_cli(capsys, "bench", "--dir", folder)
    assert code == 1 and "exit 3" in out
    code, _, err = run_cli(capsys, "bench", "--dir", folder, "nope")
    assert code == 2 and "no benchmark nope.py" in err and "queue_latency" in err
    code, _, err = run_cli(capsys, "bench", "--dir", tmp_path / "missing")
    assert code == 1 and "no benchmark scripts found" in err and "source checkout" in err
    monkeypatch.setenv("HAL_BENCHMARKS_DIR", str(folder))
    code, out, _ = run_cli(capsys, "bench", "--list")
    assert code == 0 and out.strip() == str(folder / "queue_latency.py")


def test_bench_finds_the_checkout(capsys: pytest.CaptureFixture[str]) -> None:
    if not (REPO / "benchmarks").is_dir():
        pytest.skip("no benchmarks/ in this checkout")
    code, out, _ = run_cli(capsys, "bench", "--list")
    assert code == 0 and str(REPO / "benchmarks") in out


# -- as a subprocess ---------------------------------------------------------------------------


def _python_m_hal(*argv: object, cwd: Path) -> subprocess.CompletedProcess[str]:
    path = os.pathsep.join(p for p in (str(REPO), os.environ.get("PYTHONPATH")) if p)
    env = {**os.environ, "PYTHONPATH": path}
    return subprocess.run(
        [sys.executable, "-m", "hal", *map(str, argv)],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=SUBPROCESS_TIMEOUT,
    )


def test_subprocess_run_and_errors(tmp_path: Path, x_npy: Path) -> None:
    done = _python_m_hal(
        "run",
        ELEMENTWISE,
        "--entry",
        "square",
        "--workgroups",
        "16",
        "--input",
        "x.npy",
        "--output",
        "sq.npy:f32:1000",
        "--constants",
        "1000",
        cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    x = np.load(x_npy)
    np.testing.assert_array_equal(np.load(tmp_path / "sq.npy"), x * x)
    assert "timing:" in done.stdout
    bad = _python_m_hal("run", ELEMENTWISE, "--entry", "nope", "--workgroups", "1", cwd=tmp_path)
    assert bad.returncode == 2 and "no such @compute entry point" in bad.stderr


def test_subprocess_example_and_devices(tmp_path: Path) -> None:
    done = _python_m_hal("example", "softmax", "--size", "8x100", "--repeat", "1", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "softmax: [8x100]" in done.stdout and "OK" in done.stdout
    check = _python_m_hal("devices", "--check", cwd=tmp_path)
    assert check.returncode in (0, 1) and check.stdout == ""


def test_subprocess_demo_still_works(tmp_path: Path) -> None:
    done = _python_m_hal("demo", "--dispatches", "10", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "result matches numpy: True" in done.stdout
    assert done.stdout.rstrip().splitlines()[-1].startswith("next: try ")


# -- packaging-facing rough edges ----------------------------------------------------------------


def test_version_and_program_name(capsys: pytest.CaptureFixture[str]) -> None:
    import hal
    from hal.tools.cli import program_name

    code, out, _ = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"python -m hal {hal.__version__}"
    assert main(["--version"], prog="hal") == 0
    assert capsys.readouterr().out.strip() == f"hal {hal.__version__}"
    assert main(["run", "--help"], prog="hal") == 0
    out = capsys.readouterr().out
    assert out.startswith("usage: hal run ") and "python -m hal" not in out
    assert main(["nope"], prog="hal") == 2
    assert capsys.readouterr().err.startswith("usage: hal ")
    assert program_name("/venv/bin/hal") == "hal"
    assert program_name("/src/hal/__main__.py") == "python -m hal"


def test_building_the_parser_does_not_import_the_examples() -> None:
    code = (
        "import sys; from hal.tools.cli import main; main(['--help']); main(['bench', '--help']);"
        "print('hal.examples' in sys.modules)"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().endswith("False")


def test_example_help_still_lists_the_sizes(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run_cli(capsys, "example", "--help")
    assert code == 0 and "matmul: " in out and "prefix_sum: " in out


def test_misspelt_backend_lists_the_valid_names(monkeypatch: pytest.MonkeyPatch) -> None:
    import hal

    monkeypatch.setenv("HAL_BACKEND", "vulkna")
    with pytest.raises(hal.UnavailableError) as caught:
        hal.create_device()
    message = str(caught.value)
    assert "'vulkna'" in message and "vulkan, metal, d3d12, gl" in message


def test_bench_writes_results_outside_the_checkout(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    body = (
        "import json, argparse\n"
        "p = argparse.ArgumentParser(); p.add_argument('--json', required=True)\n"
        "a = p.parse_args()\n"
        "open(a.json, 'w').write(json.dumps({'targets': [{'target': 'speed', 'met': False},"
        " {'target': 'size', 'met': True}]}))\n"
    )
    folder = _fake_benchmarks(tmp_path, "run_all.py", body=body)
    out_dir = tmp_path / "results"
    code, out, err = run_cli(capsys, "bench", "--dir", folder, "--out", out_dir)
    assert code == 0, err
    assert json.loads((out_dir / "run_all.json").read_text())["targets"][0]["met"] is False
    assert f"results: {out_dir}" in out and "targets not met: speed" in out
    assert "--fail-on-targets" in out
    assert sorted(p.name for p in folder.iterdir()) == ["run_all.py"]  # nothing beside it
    code, out, _ = run_cli(capsys, "bench", "--dir", folder, "--out", out_dir, "--fail-on-targets")
    assert code == 1 and "targets not met: speed" in out
    code, out, _ = run_cli(capsys, "bench", "--dir", folder)  # default: a temp folder
    line = next(x for x in out.splitlines() if x.startswith("results: "))
    default = Path(line.removeprefix("results: "))
    assert code == 0 and (default / "run_all.json").is_file()
    assert not default.is_relative_to(REPO) and not default.is_relative_to(folder.parent)
    shutil.rmtree(default)


def test_bench_progress_without_tqdm(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "tqdm", None)  # import tqdm → ImportError
    folder = _fake_benchmarks(tmp_path, "dispatch_overhead.py", "queue_latency.py")
    code, _, err = run_cli(capsys, "bench", "--dir", folder, "--out", tmp_path / "r")
    assert code == 0
    assert "[0/2] running dispatch_overhead.py" in err and "[2/2] queue_latency.py ok" in err


def test_devices_brief_is_one_line(capsys: pytest.CaptureFixture[str]) -> None:
    import hal

    code, out, _ = run_cli(capsys, "devices", "--brief")
    assert code == 0 and out.count("\n") == 1 and out.startswith("adapter: ")
    with hal.create_device() as device:
        assert str(device.info) in out


def test_prefix_sum_scans_int32_exactly_and_rejects_int64() -> None:
    import hal
    from hal.examples import prefix_sum

    with hal.create_device() as device:
        with pytest.raises(hal.InvalidArgumentError) as caught:
            prefix_sum.prefix_sum(device, np.arange(10, dtype=np.int64))
        assert "dtype int64" in str(caught.value) and "float32" in str(caught.value)
        ints = prefix_sum.prefix_sum(device, np.arange(10, dtype=np.int32))
        assert ints.dtype == np.int32
        np.testing.assert_array_equal(ints, np.cumsum(np.arange(10, dtype=np.int32)))
        got = prefix_sum.prefix_sum(device, np.arange(10, dtype=np.float32))
        np.testing.assert_array_equal(got, np.cumsum(np.arange(10)).astype(np.float32))


def test_example_all_skips_an_example_whose_package_is_missing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`example all` without mpi4py skips the data-parallel example, saying why."""
    import importlib.util

    from hal.examples import missing_package

    real = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name, *a: None if name == "mpi4py" else real(name, *a)
    )
    assert missing_package("mlp_data_parallel") == "mpi4py"
    assert missing_package("matmul") is None


def test_example_listing_names_the_program_it_was_run_as(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["example"], prog="hal") == 2
    assert capsys.readouterr().out.startswith("examples (hal example NAME [--size SIZE]):")
    assert main(["example", "--list"], prog="python -m hal") == 0
    assert capsys.readouterr().out.startswith("examples (python -m hal example NAME")
