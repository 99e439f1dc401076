"""The subgroup-matrix f16 matmul on a device with cooperative matrices (Dawn), self-contained.

    python3 benchmarks/subgroup_matrix_probe.py OUT.json      (from the repository root or anywhere)

(a) runs tests/test_kernels_subgroup_matrix.py with HAL_IMPLEMENTATION=dawn in a subprocess
    (log: OUT.json with suffix ``.pytest.log``);
(b) on one hal Dawn device times hal's default f32 and f16 kernels, every CONFIGS shape of the
    subgroup-matrix kernel (f16 and f32 accumulation) and torch f16/f32 (when torch imports
    with CUDA) at 4096^3 through benchmarks/workloads.py's bench_matmul / bench_torch_matmul
    (each result checked against a float64 sample of rows: max_abs_error, and ``ok`` against
    the additive part of hal's f16 bound, F16_ATOL_PER_K * K = 16.4 at K = 4096, 1e-2 for f32);
(c) writes JSON to OUT.json after every step (partial results survive a kill).
Steps stop being started once BUDGET_S has passed (whole run: about 120 s).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import traceback
from dataclasses import asdict
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "benchmarks")]

N = int(os.environ.get("SGMAT2_N", "4096"))  # smaller only for a smoke run on a CPU adapter
REPLAYS = 10
PYTEST_TIMEOUT_S = 60
BUDGET_S = 110
START = time.monotonic()

# (bm, bn, bk, pad, direct); each with f16 and with f32 accumulation, most promising first
SHAPES = [
    (64, 64, 32, 8, True),
    (32, 64, 32, 8, True),
    (64, 32, 32, 8, True),
    (32, 32, 32, 8, True),
    (128, 64, 32, 8, True),
    (64, 128, 32, 8, True),
    (64, 64, 64, 8, True),
    (64, 64, 16, 8, True),
    (64, 64, 32, 0, True),
    (64, 64, 32, 8, False),  # every result through workgroup memory (the small-c variant)
]


def elapsed() -> float:
    return time.monotonic() - START


def run_tests(log: Path) -> dict[str, Any]:
    cmd = [
        sys.executable,
        "-m",
        "pytest",
        "-o",
        "addopts=",
        "-q",
        "-p",
        "no:cacheprovider",
        "tests/test_kernels_subgroup_matrix.py",
    ]
    env = {**os.environ, "HAL_IMPLEMENTATION": "dawn"}
    t0 = time.monotonic()
    with log.open("w") as out:
        try:
            rc: int | str = subprocess.run(
                cmd,
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
                timeout=PYTEST_TIMEOUT_S,
            ).returncode
        except subprocess.TimeoutExpired:
            rc = f"timeout after {PYTEST_TIMEOUT_S} s"
    lines = [x for x in log.read_text(errors="replace").splitlines() if x.strip()]
    counts = ("passed", "failed", "error", "skipped")
    tail = next((x for x in reversed(lines) if " in " in x and any(c in x for c in counts)), None)
    summary = tail or (lines[-1] if lines else "")
    failed = [x for x in lines if x.startswith(("FAILED", "ERROR"))]
    return {
        "command": " ".join(cmd),
        "rc": rc,
        "seconds": round(time.monotonic() - t0, 1),
        "summary": summary,
        "failed": failed[:40],
        "log": log.name,
    }


def judge(rows: list[dict[str, Any]], dtype: str) -> list[dict[str, Any]]:
    from hal.examples import matmul

    bound = matmul.F16_ATOL_PER_K * N if dtype == "f16" else 1e-2
    for row in rows:
        if "max_abs_error" in row:
            row["error_bound"] = bound
            row["ok"] = row["max_abs_error"] <= bound
    return rows


def main() -> None:
    out = Path(sys.argv[1]).resolve()
    out.parent.mkdir(parents=True, exist_ok=True)
    result: dict[str, Any] = {"n": N, "replays": REPLAYS, "steps": []}

    def save() -> None:
        result["elapsed_s"] = round(elapsed(), 1)
        out.write_text(json.dumps(result, indent=1, default=str))

    result["tests"] = run_tests(out.with_suffix(".pytest.log"))
    save()

    import workloads

    import hal
    from hal.examples import matmul
    from hal.examples.matmul_subgroup_matrix import SubgroupMatrixConfig

    device = hal.create_device(implementation="dawn")
    result["device"] = str(device.info)
    result["features"] = sorted(device.features)
    save()

    def step(name: str, fn: Any) -> None:
        if elapsed() > BUDGET_S:
            result["steps"].append({"name": name, "skipped": f"budget {BUDGET_S} s spent"})
            save()
            return
        t0 = time.monotonic()
        try:
            rows = fn()
        except Exception as error:  # a probe records every failure and goes on
            rows = [
                {
                    "name": name,
                    "error": f"{type(error).__name__}: {str(error)[:600]}",
                    "traceback": traceback.format_exc()[-1500:],
                }
            ]
        result["steps"].append({"name": name, "seconds": round(time.monotonic() - t0, 1)})
        result.setdefault("rows", []).extend(rows)
        print(name, json.dumps(rows, default=str)[:400], flush=True)
        save()

    step(
        "hal f32 default",
        lambda: judge(workloads.bench_matmul(device, N, "f32", REPLAYS, False), "f32"),
    )
    step(
        "hal f16 default",
        lambda: judge(workloads.bench_matmul(device, N, "f16", REPLAYS, False), "f16"),
    )
    torch = workloads._torch()
    if torch is not None:
        step("torch", lambda: workloads.bench_torch_matmul(torch, N, REPLAYS))
    has = matmul.SUBGROUP_MATRIX_FEATURE in device.features
    result["has_subgroup_matrix"] = has
    for bm, bn, bk, pad, direct in SHAPES:
        for acc in ("f16", "f32"):
            cfg = SubgroupMatrixConfig(bm=bm, bn=bn, bk=bk, pad=pad, accumulate=acc, direct=direct)
            if not has or (not direct and acc == "f32"):
                continue  # f32 accumulation always goes through workgroup memory

            def one(cfg: SubgroupMatrixConfig = cfg) -> list[dict[str, Any]]:
                workloads.SWEEP_SUBGROUP_MATRIX = [cfg]
                rows = workloads.bench_matmul(device, N, "f16", REPLAYS, True, "subgroup-matrix")
                for row in rows:
                    row["probe_config"] = asdict(cfg)
                return judge(rows, "f16")

            step(f"subgroup-matrix {bm}x{bn}x{bk} pad {pad} acc {acc} direct {direct}", one)
    rows = result.get("rows", [])
    f32 = next((r for r in rows if r.get("kind") == "matmul_f32" and "hal_tflops" in r), None)
    sg = [r for r in rows if "probe_config" in r and r.get("ok")]
    if f32 and sg:
        best = max(sg, key=lambda r: r["hal_tflops"])
        result["best_subgroup_matrix"] = best["name"]
        result["best_over_hal_f32"] = best["hal_tflops"] / f32["hal_tflops"]  # target >= 1.5
    save()


if __name__ == "__main__":
    main()
