"""Do the notebooks still print the numbers they were committed with?

tests/test_notebooks.py executes every notebook once; right after, it calls
:func:`assert_same_numbers` on the committed copy and the executed copy, so
the README's promise that every number in a notebook comes from the code
holds after the code changes. This file holds that logic and its own tests
(on small notebooks built here; it executes no notebook).

The rule, per code cell:

- The text compared is what the cell prints: its stdout stream and the
  ``text/plain`` of results that are not images. stderr is never committed
  (test_notebooks.py checks that), and figures are not compared.
- Timings are not compared: a number directly followed by a unit of time
  (``s``, ``sec``, ``seconds``, ``ms``, ``µs``, ``us``, ``min``, ``h``) or
  by ``it/s``, a rate ("30,621 images per second"), and a number after
  ``seconds=``, ``time=`` or ``elapsed=`` (or with ``:``), are cut out
  before the numbers are read. The unit must
  end the word, so "3 steps" and "32 mini-batches" are still compared.
  Only the timing itself goes, not its line: "K = 2: 1.3 s; test loss
  24.64" still compares 2 and 24.64.
- Every other number (integers, decimals, scientific notation) is read in
  order (thousands separators allowed: "9,094" is one number), and the
  two cells must print as many numbers. Two numbers agree if
  they differ by at most half a unit in the last printed digit of the
  coarser of the two (0.4353 against 0.43534 agrees; 0.4353 against 0.4354
  does not, and neither do 600 and 601). NumPy drops trailing zeros from
  arrays ("0.061" for 0.0610), hence the coarser of the two.

On a difference the test fails with every differing number (cell, position,
committed and new value, the line it is on) and says what to do: run
``make notebooks`` and commit.
"""
import re

import nbformat
import pytest

# a decimal number as Python and NumPy print it: -12, 0.4353, .5, 3.5e-03, 1e+06, 30,621 (f"{n:,}")
_NUM = r"[-+]?(?:\d{1,3}(?:,\d{3})+(?:\.\d*)?|\d+\.\d*|\.\d+|\d+)(?:[eE][-+]?\d+)?"
NUMBER = re.compile(_NUM)
TIMING = re.compile(
    rf"(?:\b(?:seconds|secs?|time|elapsed)\s*[=:]\s*{_NUM})"  # seconds=1.11, time: 3.2
    rf"|(?:{_NUM}\s*(?:it/s|ms|µs|us|sec|secs|seconds?|min|h|s)(?![A-Za-z0-9]))"  # 1.1 s, 12 it/s, 4 ms
    rf"|(?:{_NUM}\s+[A-Za-z]+\s+per\s+second\b)"  # rates: 30,621 images per second
)
FIX = "run make notebooks and commit"


def printed_text(cell):
    """The text a code cell printed: stdout and the text/plain of non-image results."""
    parts = []
    for out in cell.get("outputs", []):
        if out.get("output_type") == "stream" and out.get("name") == "stdout":
            parts.append(out.get("text", ""))
        elif out.get("output_type") in ("execute_result", "display_data"):
            data = out.get("data", {})
            if "text/plain" in data and not any(k.startswith("image/") for k in data):
                parts.append(data["text/plain"])
    return "".join(parts)


def numbers(text):
    """[(value, half a unit in its last digit, the line it is on)] of the non-timing numbers in text."""
    found = []
    for line in text.splitlines():
        for m in NUMBER.finditer(TIMING.sub(" ", line)):
            token = m.group()
            mantissa, _, exponent = token.lower().partition("e")
            decimals = len(mantissa.split(".")[1]) if "." in mantissa else 0
            half_unit = 0.5 * 10.0 ** (int(exponent or 0) - decimals)
            found.append((float(token.replace(",", "")), half_unit, line.strip()))
    return found


def differences(committed, executed):
    """Human-readable differences between the printed numbers of two versions of one notebook."""
    code_a = [c for c in committed.cells if c.cell_type == "code"]
    code_b = [c for c in executed.cells if c.cell_type == "code"]
    if len(code_a) != len(code_b):
        return [f"the notebook has {len(code_b)} code cells, the committed outputs {len(code_a)}"]
    out = []
    for i, (a, b) in enumerate(zip(code_a, code_b, strict=True)):
        na, nb = numbers(printed_text(a)), numbers(printed_text(b))
        if len(na) != len(nb):
            out.append(f"code cell {i + 1}: prints {len(nb)} numbers, the committed output {len(na)}")
            continue
        for j, ((va, ha, la), (vb, hb, lb)) in enumerate(zip(na, nb, strict=True)):
            if abs(va - vb) > max(ha, hb):
                out.append(f"code cell {i + 1}, number {j + 1}: committed {va:g}, now {vb:g}  ({la!r} -> {lb!r})")
    return out


def assert_same_numbers(name, committed, executed):
    """Fail, listing every difference, unless the executed notebook prints the committed numbers."""
    diff = differences(committed, executed)
    if diff:
        pytest.fail(
            f"{name} prints numbers that differ from its committed outputs ({len(diff)}); "
            f"{FIX}:\n  " + "\n  ".join(diff),
            pytrace=False,
        )


# ---------------------------------------------------------------------------
# tests of the rule above, on notebooks built here


def _nb(*cells):
    """A notebook of code cells, each given as the text it printed (or a list of outputs)."""
    nb = nbformat.v4.new_notebook()
    for cell in cells:
        outs = cell if isinstance(cell, list) else [nbformat.v4.new_output("stream", name="stdout", text=cell)]
        nb.cells.append(nbformat.v4.new_code_cell("pass", outputs=outs))
    return nb


@pytest.mark.parametrize(
    "committed, now",
    [
        ("loss 0.4353", "loss 0.43534"),  # within half a unit of the coarser one
        ("loss 0.4353", "loss 0.43526"),
        ("[[ 0.061  -0.2402]]", "[[ 0.0612 -0.2402]]"),  # NumPy dropped a trailing zero
        ("se 3.5e-03", "se 3.54e-03"),
        ("x 0.5", "x 5e-1"),
        ("600 epochs in 1.1 s", "600 epochs in 9.8 s"),  # timings
        ("notebook ran in 6 s", "notebook ran in 44 s"),
        ("History(loss=0.156, seconds=1.11)", "History(loss=0.156, seconds=7)"),
        ("K =  2: 1.3 s; test loss 24.64", "K =  2: 0.2 s; test loss 24.64"),
        ("3000 it/s, 4 ms per step, time: 2.5", "12 it/s, 40 ms per step, time: 9"),
        ("4.2 ms per step: 30,621 images per second", "13.1 ms per step: 9,766 images per second"),
        ("parameters: 9,094", "parameters: 9094"),
    ],
)
def test_equal_to_the_printed_precision(committed, now):
    assert differences(_nb(committed), _nb(now)) == []


@pytest.mark.parametrize(
    "committed, now, what",
    [
        ("loss 0.4353", "loss 0.4354", "committed 0.4353, now 0.4354"),  # one unit
        ("600 epochs", "601 epochs", "committed 600, now 601"),
        ("se 3.5e-03", "se 3.6e-03", "committed 0.0035, now 0.0036"),
        ("3 steps, 32 mini-batches", "4 steps, 32 mini-batches", "committed 3, now 4"),  # not timings
        ("K =  2: 1.3 s; test loss 24.64", "K =  2: 1.3 s; test loss 24.70", "committed 24.64, now 24.7"),
        ("a 1 b 2", "a 1", "prints 1 numbers, the committed output 2"),
        ("parameters: 9,094", "parameters: 9,095", "committed 9094, now 9095"),
        ("(2000, 2) float64", "(2000, 3) float64", "committed 2, now 3"),  # a tuple is two numbers
    ],
)
def test_differences_are_reported(committed, now, what):
    diff = differences(_nb(committed), _nb(now))
    assert len(diff) == 1 and what in diff[0], diff


def test_only_printed_text_counts():
    image = nbformat.v4.new_output("display_data", data={"image/png": "AAAA", "text/plain": "<Figure 640x480>"})
    result = nbformat.v4.new_output("execute_result", data={"text/plain": "0.25"}, execution_count=1)
    stderr = nbformat.v4.new_output("stream", name="stderr", text="warning 123")
    a = _nb([image, result, stderr])
    b = _nb([nbformat.v4.new_output("display_data", data={"image/png": "BB", "text/plain": "<Figure 320x240>"}),
             nbformat.v4.new_output("execute_result", data={"text/plain": "0.25"}, execution_count=1)])
    assert differences(a, b) == []
    b.cells[0].outputs[1]["data"]["text/plain"] = "0.26"
    assert len(differences(a, b)) == 1


def test_cell_count_and_the_failure_message():
    assert "3 code cells, the committed outputs 2" in differences(_nb("1", "2"), _nb("1", "2", "3"))[0]
    assert_same_numbers("same.ipynb", _nb("x 1.5"), _nb("x 1.5"))
    with pytest.raises(pytest.fail.Exception) as info:
        assert_same_numbers("demo.ipynb", _nb("ok 1", "loss 0.4353"), _nb("ok 1", "loss 0.4360"))
    msg = str(info.value)
    assert "demo.ipynb" in msg and FIX in msg and "code cell 2, number 1: committed 0.4353, now 0.436" in msg
