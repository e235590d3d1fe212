"""The benchmark suite (bench/run.py) runs, writes its outputs and its correctness guard passes.

No timing is asserted anywhere: speed depends on the machine and on what else
runs on it. These tests check that the benchmark works (a --quick run on the
smallest workload, with and without PyTorch) and that its guard is able to
fail (a trajectory that differs by 1% is rejected).
"""
from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parent.parent
RUN = ROOT / "bench" / "run.py"
HAVE_TORCH = importlib.util.find_spec("torch") is not None

# bench/ is part of the repository, not of the package: a copy of tests/ without it has nothing to test
pytestmark = pytest.mark.skipif(not RUN.exists(), reason=f"no benchmark suite at {RUN.parent}")


def run_bench(out, *extra):
    cmd = [sys.executable, str(RUN), "--quick", "--workloads", "spirals", "--threads", "1", "--out", str(out), *extra]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert r.returncode == 0, f"bench/run.py failed ({r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return r


def check_outputs(out, r):
    md = (out / "latest.md").read_text()
    assert md in r.stdout                                       # the table is printed too
    results = json.loads((out / "latest.json").read_text())
    png = (out / "latest.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 5000
    # the guard ran on the workload and passed, with every peer's loss trajectory recorded
    g = results["guard"]["spirals"]
    assert g["passed"] is True, g["summary"]
    assert "| spirals | 20 |" in md and "✓" in md and "✗" not in md
    assert set(g["losses"]) >= {"vaecore", "numpy"}
    assert all(len(v) == 20 for v in g["losses"].values())
    # one timed measurement per peer, each a positive rate
    runs = {r["peer"]: r for r in results["runs"]}
    assert runs["vaecore"]["ok"] and runs["numpy"]["ok"]
    for r_ in runs.values():
        if r_["ok"]:
            assert r_["steps_per_s"] > 0 and r_["gflops"] > 0 and r_["peak_rss_mb"] > 0
    assert "### Training steps per second" in md and "| spirals | 1 |" in md
    return md, results


@pytest.mark.slow
def test_quick_run_writes_table_json_png_and_guard_passes(tmp_path):
    out = tmp_path / "results"
    r = run_bench(out, "--peers", "vaecore,numpy,torch")       # torch.compile is too slow to compile here
    md, results = check_outputs(out, r)
    if HAVE_TORCH:
        assert set(results["guard"]["spirals"]["losses"]) == {"vaecore", "numpy", "torch"}
        assert any(r["peer"] == "torch" and r["ok"] for r in results["runs"])
        assert "× torch" in md
    else:
        assert "PyTorch peers skipped: PyTorch is not installed" in md
    assert results["workloads"]["spirals"]["flops_per_step"] > 0


@pytest.mark.slow
def test_quick_run_without_torch(tmp_path):
    out = tmp_path / "results"
    r = run_bench(out, "--no-torch", "--no-gemm")
    md, results = check_outputs(out, r)
    assert "PyTorch peers skipped" in md
    assert {r["peer"] for r in results["runs"]} == {"vaecore", "numpy"}
    assert "numpy" in results["settings"]["peers"] and "torch" not in results["settings"]["peers"]


def test_guard_rejects_a_different_loss():
    sys.path.insert(0, str(ROOT / "bench"))
    try:
        from report import GUARD_END_TOL, GUARD_FIRST_TOL, guard_verdict
    finally:
        sys.path.remove(str(ROOT / "bench"))
    ref = list(np.linspace(10.0, 5.0, 100))
    near = [x * (1 + 1e-5) for x in ref]
    assert guard_verdict({"ok": True, "losses": {"vaecore": ref, "numpy": near}})["passed"]
    # 1% off at the end: wrong math somewhere in training
    late = ref[:90] + [x * 1.01 for x in ref[90:]]
    assert 0.01 > GUARD_END_TOL
    assert not guard_verdict({"ok": True, "losses": {"vaecore": ref, "numpy": late}})["passed"]
    # a different first loss: a wrong forward pass
    first = [ref[0] * (1 + 10 * GUARD_FIRST_TOL)] + ref[1:]
    assert not guard_verdict({"ok": True, "losses": {"vaecore": ref, "numpy": first}})["passed"]
    # nobody trained: equal, but the loss did not fall
    flat = [10.0] * 100
    assert not guard_verdict({"ok": True, "losses": {"vaecore": flat, "numpy": flat}})["passed"]
    # a peer that failed, or no peer at all
    assert not guard_verdict({"ok": True, "losses": {"vaecore": ref, "torch": "RuntimeError: x"}})["passed"]
    assert not guard_verdict({"ok": True, "losses": {"vaecore": ref}})["passed"]
    assert not guard_verdict({"ok": False, "error": "boom"})["passed"]
