"""Declares the C extension vaecore._core; everything else is in pyproject.toml."""
import numpy as np
from setuptools import Extension, setup

core = Extension(
    "vaecore._core",
    sources=["csrc/_core.c", "csrc/vae.c", "csrc/rng.c", "csrc/vae_f32.c", "csrc/vae_f64.c"],
    include_dirs=[np.get_include(), "csrc"],
    # numpy>=1.25 is the runtime floor, so hide every API deprecated before 1.25.
    define_macros=[("NPY_NO_DEPRECATED_API", "NPY_1_25_API_VERSION")],
    extra_compile_args=["-std=c11", "-O3", "-Wall", "-Wextra", "-fno-math-errno"],
)

setup(ext_modules=[core])
