# The two quick-start commands: `make demo` and `make test`. Each sets itself up.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(PY) -m pip
OUT    ?= out/spirals

.PHONY: demo test install notebooks lab bench clean sanitize

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

# The test suite under AddressSanitizer and UndefinedBehaviorSanitizer. A copy of the package is
# built with the sanitizers in .asan-build/ (the in-place vaecore/_core*.so and .venv are left as they
# are: .venv's interpreter and packages are only used) and the tests run there with the sanitizer
# runtimes preloaded (CPython itself is not instrumented). Left out: the notebooks (they run in Jupyter
# kernel processes, take minutes, and call the same API the other tests cover). Everything else runs,
# the 600-epoch spiral experiment included.
# detect_leaks=0: CPython's own allocations, never freed at exit, would swamp LeakSanitizer; the leak
# check is tests/test_leaks.py, run on its own afterwards, which under ASan counts the sanitizer's live
# heap bytes. allocator_may_return_null=1: a request for terabytes must be a MemoryError, as without the
# sanitizer, not an abort.
ASAN_DIR  := .asan-build
SAN_FLAGS := -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined -g
SAN_ENV    = LD_PRELOAD="$$(gcc -print-file-name=libasan.so) $$(gcc -print-file-name=libubsan.so)" \
             ASAN_OPTIONS=detect_leaks=0:allocator_may_return_null=1 \
             UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 PYTHONDONTWRITEBYTECODE=1

sanitize: $(if $(wildcard $(VENV)/.installed),,install)
	rm -rf $(ASAN_DIR) && mkdir -p $(ASAN_DIR)
	cp -r setup.py pyproject.toml README.md csrc vaecore tests docs $(wildcard bench) $(ASAN_DIR)/
	rm -f $(ASAN_DIR)/vaecore/*.so && find $(ASAN_DIR) -name __pycache__ -prune -exec rm -rf {} +
	cd $(ASAN_DIR) && CFLAGS="$(SAN_FLAGS)" LDFLAGS="-fsanitize=address,undefined" \
		$(CURDIR)/$(PY) setup.py --quiet build_ext --inplace
	cd $(ASAN_DIR) && $(SAN_ENV) $(CURDIR)/$(PY) -c "import vaecore._core as c; \
		assert '/$(ASAN_DIR)/' in c.__file__, c.__file__; print('sanitized core:', c.__file__)"
	cd $(ASAN_DIR) && $(SAN_ENV) $(CURDIR)/$(PY) -m pytest -p no:cacheprovider -q tests \
		--ignore=tests/test_notebooks.py --ignore=tests/test_leaks.py
	cd $(ASAN_DIR) && $(SAN_ENV) $(CURDIR)/$(PY) -m pytest -p no:cacheprovider -q tests/test_leaks.py

notebooks: install
	$(PY) notebooks/_run.py

# JupyterLab on notebooks/, from the venv (the `notebooks` extra installs it once).
$(VENV)/.lab: $(VENV)/.installed
	$(PIP) install --quiet -e '.[test,notebooks]'
	touch $@

lab: $(VENV)/.lab
	$(VENV)/bin/jupyter lab notebooks/

# Benchmark (issue 5): writes bench/results/latest.{md,json,png}; `make bench BENCH_ARGS=--quick` for a smoke run.
bench: install
	$(PIP) install --quiet torch==2.13.0 || echo "PyTorch not installed: benchmarking without it"
	$(PY) bench/run.py $(BENCH_ARGS)

clean:
	rm -rf build $(VENV) $(ASAN_DIR) *.egg-info vaecore/*.so out
