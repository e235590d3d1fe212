"""Declares the C extension vaecore._core; everything else is in pyproject.toml.

The kernels are compiled once per float type and instruction set (baseline,
AVX2+FMA, AVX-512F+FMA on x86-64; the choice is made at run time), so the
same wheel runs on any CPU. OpenMP is used when the compiler has it.
"""
import os
import subprocess
import sys
import tempfile

import numpy as np
from setuptools import Extension, setup


def has_openmp():
    """Whether the C compiler builds and links a tiny OpenMP program."""
    if os.environ.get("VAECORE_NO_OPENMP"):
        return False
    cc = os.environ.get("CC", "cc")
    with tempfile.TemporaryDirectory() as d:
        src = os.path.join(d, "t.c")
        with open(src, "w") as f:
            f.write("#include <omp.h>\nint main(void) { return omp_get_max_threads() < 1; }\n")
        try:
            r = subprocess.run([cc, "-fopenmp", src, "-o", os.path.join(d, "t")], capture_output=True)
        except OSError:
            return False
        return r.returncode == 0


openmp = has_openmp()
if not openmp:
    print("vaecore: building without OpenMP (one thread)", file=sys.stderr)

core = Extension(
    "vaecore._core",
    sources=["csrc/_core.c", "csrc/vae.c", "csrc/model.c", "csrc/hooks.c", "csrc/rng.c", "csrc/gan.c", "csrc/vq.c",
             "csrc/stack.c",
             "csrc/vae_f32.c", "csrc/vae_f64.c",
             "csrc/vae_f32_avx2.c", "csrc/vae_f64_avx2.c",
             "csrc/vae_f32_avx512.c", "csrc/vae_f64_avx512.c"],
    depends=["csrc/vae.h", "csrc/rng.h", "csrc/conv.h", "csrc/kernels.inc", "csrc/gemm.inc", "csrc/conv.inc",
             "csrc/layers.inc",
             "csrc/vae.inc", "csrc/optim.inc", "csrc/gan.h", "csrc/gan.inc",
             "csrc/stack.h", "csrc/stack.inc", "csrc/vq.h", "csrc/vq.inc"],
    include_dirs=[np.get_include(), "csrc"],
    # numpy>=1.25 is the runtime floor, so hide every API deprecated before 1.25.
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_25_API_VERSION")],
    # -ffp-contract=fast lets a*b+c become one FMA where the instruction set has it
    extra_compile_args=["-std=c11", "-O3", "-Wall", "-Wextra", "-fno-math-errno", "-fno-trapping-math",
                        "-ffp-contract=fast"]
    + (["-fopenmp"] if openmp else ["-Wno-unknown-pragmas"]),
    extra_link_args=["-fopenmp"] if openmp else [],
)

setup(ext_modules=[core])
