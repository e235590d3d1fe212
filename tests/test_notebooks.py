"""Every notebook runs top to bottom in a fresh kernel, without an error.

Each notebook in notebooks/ is read and executed *in memory* with nbclient,
with a temporary folder as its working directory, so the committed files are
never rewritten and nothing is written next to them. A notebook fails when:

- a cell raises (nbclient's CellExecutionError names the cell and shows the
  traceback) or runs longer than CELL_TIMEOUT seconds;
- a cell writes to stderr: warnings raised inside the kernel land there, and
  would end up in the committed outputs;
- it prints numbers other than its committed outputs show, to the printed
  precision, timings aside (the rule is in tests/test_notebook_outputs.py,
  which this test calls on the same execution: no notebook runs twice). The
  message lists the numbers and says to run ``make notebooks`` and commit.
  The numbers are compared only on a machine whose kernels are those the
  notebook was saved with (its ``vaecore.platform`` metadata, written by
  notebooks/_run.py): other kernels sum in another order, and hundreds of
  training steps turn those last bits into visible digits. On other kernels
  the notebook still runs top to bottom, and the test is then skipped, naming
  both sets of kernels.

The committed files are also checked: they are saved with their outputs (every
code cell executed, in order) and stay under 3 MB, so that they read well on a
code-hosting site. ``make notebooks`` (notebooks/_run.py) re-executes and saves
them.

04_fashion_mnist needs the Fashion-MNIST files; it is skipped, with the reason,
only when vaecore.datasets.fashion_mnist cannot find them.
"""
import copy
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import nbclient
import nbformat
import pytest
from test_notebook_outputs import assert_same_numbers

NOTEBOOKS_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = (
    "01_spirals_step_by_step.ipynb",
    "02_ae_vs_vae.ipynb",
    "03_digits_generation.ipynb",
    "04_fashion_mnist.ipynb",
    "05_beta_vae_disentanglement.ipynb",
    "06_theory_checks.ipynb",
    "07_vae_vs_gan.ipynb",
    "08_vq_vae.ipynb",
)

_spec = importlib.util.spec_from_file_location("notebooks_run", NOTEBOOKS_DIR / "_run.py")
notebooks_run = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(notebooks_run)

CELL_TIMEOUT = 600    # seconds; each notebook is meant to run in well under 3 minutes in all
MAX_BYTES = 3_000_000


def test_every_notebook_is_tested():
    found = sorted(p.name for p in NOTEBOOKS_DIR.glob("*.ipynb"))
    assert found == sorted(NOTEBOOKS), "add new notebooks to NOTEBOOKS in this file"


@pytest.mark.parametrize("name", NOTEBOOKS)
def test_committed_with_outputs(name):
    path = NOTEBOOKS_DIR / name
    assert path.stat().st_size < MAX_BYTES, f"{name} is {path.stat().st_size / 1e6:.1f} MB"
    nb = nbformat.read(path, as_version=4)
    nbformat.validate(nb)
    counts = [c.execution_count for c in nb.cells if c.cell_type == "code"]
    assert counts == list(range(1, len(counts) + 1)), f"{name} is not saved executed top to bottom: {counts}"
    assert any(o.get("data", {}).get("image/png") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            assert out.output_type != "error", f"{name} was saved with an error: {out.get('evalue')}"
            assert out.get("name") != "stderr", f"{name} was saved with stderr output: {out.get('text')!r}"
    assert nb.metadata.get("vaecore", {}).get("platform"), f"{name} was not saved by make notebooks (no platform)"


def _require_data(name):
    if name in ("04_fashion_mnist.ipynb", "08_vq_vae.ipynb"):
        from vaecore import datasets

        try:
            datasets.fashion_mnist("test")
            datasets.fashion_mnist("train")
        except FileNotFoundError as e:
            pytest.skip(f"Fashion-MNIST not found: {e}")


@pytest.mark.slow
@pytest.mark.parametrize("name", NOTEBOOKS)
def test_runs_top_to_bottom(name, tmp_path):
    _require_data(name)
    nb = nbformat.read(NOTEBOOKS_DIR / name, as_version=4)   # a copy in memory: the file is never written
    committed = copy.deepcopy(nb)   # execution replaces the outputs of nb
    client = nbclient.NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    client.execute()   # raises CellExecutionError (naming the cell) on the first error
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            assert out.get("name") != "stderr", f"{name}, cell {i} wrote to stderr:\n{out.get('text')}"
    saved_on, here = committed.metadata.get("vaecore", {}).get("platform"), notebooks_run.platform()
    if not notebooks_run.same_platform(saved_on, here):
        pytest.skip(f"{name} ran top to bottom; its numbers were not compared: they were saved with the kernels "
                    f"'{saved_on}', this machine runs '{here}' (make notebooks here saves them with these)")
    assert_same_numbers(name, committed, nb)


def test_make_lab_installs_the_notebooks_extra_and_opens_jupyterlab():
    import shutil
    import subprocess

    tomllib = pytest.importorskip("tomllib", reason="tomllib is Python >= 3.11")
    root = NOTEBOOKS_DIR.parent
    extras = tomllib.loads((root / "pyproject.toml").read_text())["project"]["optional-dependencies"]
    assert any(dep.startswith("jupyterlab") for dep in extras["notebooks"])
    if shutil.which("make") is None:
        pytest.skip("make is not installed")
    # -n: print the commands without running them; -B: as if nothing were installed yet
    # --no-print-directory: under `make test` the outer make's flags would add "make[1]: Entering ..." lines
    plan = subprocess.run(["make", "--no-print-directory", "-n", "-B", "lab"], cwd=root, capture_output=True,
                          text=True, check=True).stdout
    assert "install --quiet -e '.[test,notebooks]'" in plan
    assert plan.rstrip().splitlines()[-1] == ".venv/bin/jupyter lab notebooks/"


def test_numbers_are_compared_only_on_the_kernels_they_were_saved_with():
    here = notebooks_run.platform()
    assert set(here) == {"vaecore", "numpy", "blas"} and all(isinstance(v, str) and v for v in here.values())
    import vaecore
    assert here["vaecore"] == vaecore._core.get_isa()
    assert notebooks_run.same_platform(dict(here), here)
    assert notebooks_run.same_platform({"vaecore": here["vaecore"]}, here)   # saved before numpy/blas were recorded
    assert not notebooks_run.same_platform({**here, "vaecore": "another isa"}, here)
    assert not notebooks_run.same_platform({**here, "blas": "openblas another"}, here)
    for nothing in (None, {}, "avx2+fma"):
        assert not notebooks_run.same_platform(nothing, here)


def test_the_platform_does_not_depend_on_what_else_is_imported():
    # make notebooks computes it in a bare process; this test process has imported SciPy (through
    # scikit-learn), whose second copy of OpenBLAS must not make the BLAS part differ
    pytest.importorskip("sklearn")
    import sklearn.decomposition  # noqa: F401  (loads SciPy's BLAS here too)
    code = ("import importlib.util, json, sys; s = importlib.util.spec_from_file_location('r', sys.argv[1]); "
            "m = importlib.util.module_from_spec(s); s.loader.exec_module(m); print(json.dumps(m.platform()))")
    bare = json.loads(subprocess.run([sys.executable, "-c", code, str(NOTEBOOKS_DIR / "_run.py")],
                                     capture_output=True, text=True, check=True).stdout)
    assert bare == notebooks_run.platform()
