"""The machine: its CPU, its cores, and one core's measured FP32 multiply-add peak.

The peak is *measured*, not computed: bench/fma_peak.c runs independent chains
of vector FMAs, compiled here at run time with the system's C compiler
(``cc -O2 -mavx2 -mfma`` for 8-wide AVX2 vectors; also ``-mavx512f`` for
16-wide ones where the CPU has AVX-512; plain ``cc -O2`` if the flags are
refused). The nominal figure clock x lanes x 2 flops x 2 FMA units is reported
beside it as a cross-check (/proc/cpuinfo's "cpu MHz" is usually the base
clock, so turbo makes the measured peak higher).

Whether the "cores" are real cores: lscpu's "Thread(s) per core", and a
measurement: the FMA loop run on every core at once. If the cores were
hyper-threads of one physical core the aggregate would stay near one core's.
"""
from __future__ import annotations

import os
import platform
import re
import shutil
import subprocess
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent

__all__ = ["machine_info", "measure_peaks"]


def _cpuinfo():
    try:
        return Path("/proc/cpuinfo").read_text()
    except OSError:
        return ""


def _lscpu():
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return {}
    return {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines()) if v}


def machine_info():
    """dict: CPU model, logical CPUs, cores, threads per core, nominal MHz, flags of interest."""
    info = _cpuinfo()
    lscpu = _lscpu()
    model = re.search(r"^model name\s*:\s*(.+)$", info, re.M)
    mhz = re.search(r"^cpu MHz\s*:\s*([\d.]+)$", info, re.M)
    flags = re.search(r"^flags\s*:\s*(.+)$", info, re.M)
    flags = set(flags.group(1).split()) if flags else set()
    cpus = os.cpu_count() or 1
    tpc = lscpu.get("Thread(s) per core")
    return {
        "cpu": model.group(1).strip() if model else (platform.processor() or platform.machine()),
        "logical_cpus": cpus,
        "usable_cpus": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else cpus,
        "threads_per_core": int(tpc) if tpc and tpc.isdigit() else None,
        "cores_per_socket": lscpu.get("Core(s) per socket"),
        "hypervisor": lscpu.get("Hypervisor vendor"),
        "mhz": float(mhz.group(1)) if mhz else None,
        "avx2": "avx2" in flags and "fma" in flags,
        "avx512": "avx512f" in flags,
        "machine": platform.machine(),
    }


def _compile(cc, flags, out):
    src = HERE / "fma_peak.c"
    try:
        r = subprocess.run([cc, "-O2", *flags, "-o", str(out), str(src)], capture_output=True, text=True, timeout=120)
    except (OSError, subprocess.SubprocessError) as e:
        return f"{cc} failed to run: {e}"
    return None if r.returncode == 0 else (r.stderr.strip().splitlines() or ["failed"])[-1]


def _run(exe, seconds, copies=1):
    """Best GFLOP/s of each of `copies` simultaneous runs of exe (a list)."""
    procs = [subprocess.Popen([str(exe), str(seconds)], stdout=subprocess.PIPE, text=True) for _ in range(copies)]
    out = []
    for p in procs:
        text, _ = p.communicate(timeout=60 + 10 * seconds)
        out.append(float(text.split()[0]))
    return out


def measure_peaks(seconds=0.5, repeats=3):
    """dict with the measured peaks in GFLOP/s (None where not measurable) and how they were had.

    avx2: one core, 8-wide FMA (the reference for "% of peak" in the table);
    avx512: one core, 16-wide FMA, if the CPU has AVX-512;
    all_cores_avx2: the sum over every usable core running the loop at once; all_cores_avx512 the
    same with the 16-wide loop, where the CPU has AVX-512.
    The best of `repeats` measurements is kept (other processes only ever slow it down).
    """
    info = machine_info()
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    res = {"method": "measured: bench/fma_peak.c, 12 independent chains of vector FMAs, best of "
                     f"{repeats} runs of {seconds} s", "compiler": cc, "notes": []}
    if cc is None:
        res["notes"].append("no C compiler found: peak not measured")
        res.update(avx2=None, avx512=None, all_cores_avx2=None, flags=None)
        return res
    with tempfile.TemporaryDirectory(prefix="vaecore-bench-") as tmp:
        exe = Path(tmp) / "fma8"
        err = _compile(cc, ["-mavx2", "-mfma"], exe)
        res["flags"] = "-O2 -mavx2 -mfma"
        if err:
            res["notes"].append(f"cc -mavx2 -mfma refused ({err}); plain -O2 instead: not an AVX2 figure")
            res["flags"] = "-O2"
            err = _compile(cc, [], exe)
        if err:
            res["notes"].append(f"fma_peak.c did not compile: {err}")
            res.update(avx2=None, avx512=None, all_cores_avx2=None)
            return res
        if not info["avx2"] and res["flags"] != "-O2":
            res["notes"].append("the CPU reports no AVX2/FMA: the 8-wide program may not run")
        try:
            res["avx2"] = max(max(_run(exe, seconds)) for _ in range(repeats))
            n = info["usable_cpus"]
            res["all_cores_avx2"] = max(sum(_run(exe, seconds, copies=n)) for _ in range(repeats)) if n > 1 else res["avx2"]
            res["all_cores"] = n
        except (OSError, subprocess.SubprocessError, ValueError, IndexError) as e:
            res["notes"].append(f"fma_peak failed to run: {e}")
            res.update(avx2=None, all_cores_avx2=None)
        res["avx512"] = None
        if info["avx512"]:
            exe16 = Path(tmp) / "fma16"
            if _compile(cc, ["-mavx512f", "-DVW=16"], exe16) is None:
                try:
                    res["avx512"] = max(max(_run(exe16, seconds)) for _ in range(repeats))
                    n = info["usable_cpus"]
                    # all cores at once: AVX-512 may run at a lower clock when every core uses it
                    res["all_cores_avx512"] = (max(sum(_run(exe16, seconds, copies=n)) for _ in range(repeats))
                                               if n > 1 else res["avx512"])
                except (OSError, subprocess.SubprocessError, ValueError, IndexError) as e:
                    res["notes"].append(f"the AVX-512 loop failed to run: {e}")
    if info["mhz"]:
        # clock x 8 lanes x 2 flops per FMA x 2 FMA units per core
        res["nominal_avx2"] = info["mhz"] * 1e-3 * 8 * 2 * 2
    return res


if __name__ == "__main__":
    import json

    print(json.dumps({"machine": machine_info(), "peak": measure_peaks()}, indent=1))
