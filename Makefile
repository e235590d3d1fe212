# The two quick-start commands: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
OUT    ?= out/spirals

.PHONY: demo test install notebooks bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet --upgrade pip

# Editable install with the test extras; rebuilds the C extension when csrc/ changes.
$(VENV)/.installed: $(PY) pyproject.toml setup.py $(wildcard csrc/*.c csrc/*.h csrc/*.inc)
	$(PIP) install --quiet -e '.[test]'
	touch $@

install: $(VENV)/.installed

demo: install
	$(PY) -m vaecore spirals --out $(OUT)

# Fashion-MNIST comes from Debian's dataset-fashion-mnist; tests that need it skip (with the reason) without it.
test: install
	bash .ci/fashion-mnist.sh || true
	$(VENV)/bin/pytest tests

notebooks: install
	$(PY) -m vaecore.notebooks notebooks

bench: install
	$(PIP) install --quiet torch==2.13.0 || echo "PyTorch not installed: benchmarking without it"
	$(PY) bench/run.py

clean:
	rm -rf build $(VENV) *.egg-info vaecore/*.so out
