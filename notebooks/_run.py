"""Re-execute the notebooks in place and save them with their outputs (``make notebooks``).

    python notebooks/_run.py                 # every notebooks/[0-9][0-9]_*.ipynb
    python notebooks/_run.py 03_digits_generation.ipynb ...

Each notebook runs top to bottom in a fresh kernel (nbclient), with
``notebooks/`` as its working directory, and is written back with its outputs
(figures as PNG), so that it reads well on a code-hosting site. The run time
of each notebook is printed. The first PNG output of the cell tagged
``thumbnail`` is also written, 600 pixels wide, to ``docs/notebooks/<name>.png``
for the README.

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
