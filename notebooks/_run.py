"""Re-execute the notebooks in place and save them with their outputs (``make notebooks``).

    python notebooks/_run.py                 # every notebooks/[0-9][0-9]_*.ipynb
    python notebooks/_run.py 03_digits_generation.ipynb ...

Each notebook runs top to bottom in a fresh kernel (nbclient), with
``notebooks/`` as its working directory, and is written back with its outputs
(figures as PNG), so that it reads well on a code-hosting site. The run time
of each notebook is printed. The first PNG output of the cell tagged
``thumbnail`` is also written, 600 pixels wide, to ``docs/notebooks/<name>.png``
for the README.

Each notebook's metadata also records, under ``vaecore.platform``, the kernels
its numbers came from (:func:`platform`): vaecore's instruction set, NumPy's
SIMD level and the CPU family of the BLAS's kernels. Float sums differ in their last bits
from one set of kernels to another, and hundreds of training steps make those
bits visible, so tests/test_notebooks.py compares the printed numbers only on
a machine that picks the same kernels.

A notebook that fails is left untouched on disk and the script exits with
status 1 after trying the others.
"""
from __future__ import annotations

import base64
import io
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

HERE = Path(__file__).resolve().parent
THUMBNAILS = HERE.parent / "docs" / "notebooks"
THUMBNAIL_WIDTH = 600   # pixels
CELL_TIMEOUT = 600      # seconds per cell


def execute(nb, cwd):
    """Run every cell of ``nb`` (in place) in a fresh python3 kernel; raises CellExecutionError."""
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3", record_timing=False,
                            resources={"metadata": {"path": str(cwd)}})
    client.execute()
    return nb


def platform():
    """The kernels this machine runs: what a notebook's numbers depend on besides the code.

    A dict such as ``{"vaecore": "avx2+fma", "numpy": "X86_V3", "blas": "openblas
    Haswell"}``: the instruction set of vaecore's kernels
    (``vaecore._core.get_isa()``), the highest SIMD target NumPy dispatches to
    on this CPU, and the BLAS behind ``numpy.matmul`` with the CPU family its
    kernels were chosen for.
    """
    import vaecore

    try:
        from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
        simd = [t for t in __cpu_dispatch__ if __cpu_features__.get(t)]
        numpy_level = simd[-1] if simd else "baseline"
    except ImportError:   # NumPy < 2 keeps them in numpy.core
        numpy_level = "unknown"
    try:
        from threadpoolctl import threadpool_info
        libs = [i for i in threadpool_info() if i["user_api"] == "blas"]
        # NumPy's own, when SciPy (imported by scikit-learn, say) has loaded a second copy
        libs = [i for i in libs if "numpy" in i.get("filepath", "")] or libs
        blas = ", ".join(sorted({f"{i['internal_api']} {i.get('architecture', '?')}" for i in libs})) or "unknown"
    except ImportError:
        blas = "unknown"
    return {"vaecore": vaecore._core.get_isa(), "numpy": numpy_level, "blas": blas}


def same_platform(saved, here):
    """True when every kernel a notebook's metadata records (``saved``) is the one ``here`` runs.

    A kind of kernel that ``saved`` does not name is not compared: the notebooks
    saved before the platform was recorded name only vaecore's instruction set.
    """
    return isinstance(saved, dict) and bool(saved) and all(here.get(k) == v for k, v in saved.items())


def thumbnail_png(nb):
    """The PNG bytes of the first image output of the cell tagged ``thumbnail``, or None."""
    for cell in nb.cells:
        if cell.cell_type == "code" and "thumbnail" in cell.metadata.get("tags", []):
            for out in cell.get("outputs", []):
                data = out.get("data", {})
                if "image/png" in data:
                    return base64.b64decode(data["image/png"])
    return None


def write_thumbnail(png, path):
    """Scale the PNG to THUMBNAIL_WIDTH pixels wide (never up) and save it with a 256-colour palette."""
    from PIL import Image

    img = Image.open(io.BytesIO(png)).convert("RGB")
    if img.width > THUMBNAIL_WIDTH:
        height = round(img.height * THUMBNAIL_WIDTH / img.width)
        img = img.resize((THUMBNAIL_WIDTH, height), Image.LANCZOS)
    path.parent.mkdir(parents=True, exist_ok=True)
    img.quantize(colors=256).save(path, optimize=True)   # a palette keeps the file small


def main(argv):
    paths = [Path(a) if Path(a).exists() else HERE / a for a in argv]
    if not paths:
        paths = sorted(HERE.glob("[0-9][0-9]_*.ipynb"))
    failed = []
    here = platform()
    print(f"kernels: {here}", flush=True)
    for path in paths:
        nb = nbformat.read(path, as_version=4)
        start = time.perf_counter()
        try:
            execute(nb, path.parent)
        except CellExecutionError as e:
            print(f"{path.name}: FAILED after {time.perf_counter() - start:.0f} s\n{e}", file=sys.stderr)
            failed.append(path.name)
            continue
        seconds = time.perf_counter() - start
        nb.metadata.setdefault("vaecore", {})["platform"] = here
        nbformat.write(nb, path)
        png = thumbnail_png(nb)
        note = ""
        if png is not None:
            thumb = THUMBNAILS / (path.stem + ".png")
            write_thumbnail(png, thumb)
            note = f", thumbnail {thumb.relative_to(HERE.parent)}"
        size = path.stat().st_size / 1e6
        print(f"{path.name}: {seconds:.0f} s, {size:.1f} MB{note}", flush=True)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
