# smc: build, test, demo, bench. Two venvs, each keyed on its requirements file: the build venv
# holds only what goes into the binary (anything else installed there could be swept into it by
# PyInstaller's import analysis); the test venv holds the test tools.
# The build venv runs on smc's own CPython (build/python/build.sh: glibc 2.17 at most, cached under
# $(CACHE_DIR)/python-<key>), so it is keyed on build/python/ too; the test venv on the machine's.
SHELL := /bin/bash
PYTHON ?= python3
CACHE_DIR ?= $(HOME)/.cache/smc
PYTHON_BUILD_FILES := $(wildcard build/python/*)
BUILD_VENV ?= $(CACHE_DIR)/build-$(shell cat requirements/build.txt requirements/runtime.txt $(PYTHON_BUILD_FILES) | sha256sum | cut -c1-12)
# The same spec on the machine's own Python: how dist/smc was built before build/python/. Built only
# for bench/portable.py, which compares the two side by side.
HOSTPY_VENV ?= $(CACHE_DIR)/build-$(shell cat requirements/build.txt requirements/runtime.txt | sha256sum | cut -c1-12)
TEST_VENV ?= $(CACHE_DIR)/test-$(shell cat requirements/test.txt requirements/runtime.txt | sha256sum | cut -c1-12)
PY := $(TEST_VENV)/bin/python
# The worker bundle's fallback libraries (requirements/worker.txt), resolved for CPython 3.9.
WORKER_LIBS ?= $(CACHE_DIR)/worker-libs-$(shell cat requirements/worker.txt | sha256sum | cut -c1-12)
WORKER_BUNDLE := .pyi-work/smc-worker.zip
SOURCES := $(shell find supervisor_app -name '*.py') spec/smc.spec requirements/build.txt requirements/runtime.txt $(PYTHON_BUILD_FILES) $(WORKER_BUNDLE)

# ARCH=aarch64: `make binary` builds dist/smc-aarch64 instead (build/arm64/: cross-compiled CPython,
# PyInstaller run in an arm64 root under qemu-user emulation).
ARCH ?= x86_64
ARM64_BUILD_FILES := $(wildcard build/arm64/*)
ARCH_BINARY := $(if $(filter aarch64,$(ARCH)),dist/smc-aarch64,dist/smc)

.PHONY: venvs binary test demo bench images clean help

help:
	@echo "make demo    build dist/smc, train the example model, serve it and invoke it"
	@echo "make test    build dist/smc and run the test suite against it"
	@echo "make binary  build the one-file binary dist/smc (ARCH=aarch64: dist/smc-aarch64, under emulation)"
	@echo "make bench   print size and start-up numbers (bench/)"
	@echo "make images  build smc-base and the example images smc-example-*:test (scratch: staticx dist/smc-static; ARCH=aarch64: the arm64 ones)"

$(BUILD_VENV)/.ok: requirements/build.txt requirements/runtime.txt $(PYTHON_BUILD_FILES)
	bash build/system-deps.sh binary
	embedded=$$(PYTHON=$(PYTHON) bash build/python/build.sh) && $$embedded/bin/python3 -m venv $(BUILD_VENV)
	$(BUILD_VENV)/bin/pip install -q --disable-pip-version-check -r requirements/build.txt
	touch $@

$(TEST_VENV)/.ok: requirements/test.txt requirements/runtime.txt
	$(PYTHON) -m venv $(TEST_VENV)
	$(TEST_VENV)/bin/pip install -q --disable-pip-version-check -r requirements/test.txt
	touch $@

$(HOSTPY_VENV)/.ok: requirements/build.txt requirements/runtime.txt
	$(PYTHON) -m venv $(HOSTPY_VENV)
	$(HOSTPY_VENV)/bin/pip install -q --disable-pip-version-check -r requirements/build.txt
	touch $@

venvs: $(BUILD_VENV)/.ok $(TEST_VENV)/.ok

$(WORKER_LIBS)/.ok: requirements/worker.txt $(BUILD_VENV)/.ok
	rm -rf $(WORKER_LIBS) && $(BUILD_VENV)/bin/pip install -q --disable-pip-version-check --no-deps \
		--only-binary=:all: --python-version 3.9 --implementation py --target $(WORKER_LIBS) -r requirements/worker.txt
	touch $@

# What smc serve hands to the image's own Python (build/worker_bundle.py); the spec bundles it.
$(WORKER_BUNDLE): $(WORKER_LIBS)/.ok $(BUILD_VENV)/.ok build/worker_bundle.py $(shell find supervisor_app -name '*.py')
	@mkdir -p .pyi-work
	$(BUILD_VENV)/bin/python build/worker_bundle.py $@ $$($(BUILD_VENV)/bin/python -c 'import gunicorn, os; print(os.path.dirname(os.path.dirname(gunicorn.__file__)))') $(WORKER_LIBS)

dist/smc: $(BUILD_VENV)/.ok $(SOURCES)
	@mkdir -p .pyi-work
	SMC_WORKER_BUNDLE=$(CURDIR)/$(WORKER_BUNDLE) SETUPTOOLS_USE_DISTUTILS=stdlib flock .pyi-work/.lock $(BUILD_VENV)/bin/pyinstaller --noconfirm --log-level WARN \
		--distpath dist --workpath .pyi-work spec/smc.spec
	@ls -l dist/smc

ifeq ($(ARCH),aarch64)
binary: dist/smc-aarch64
else ifeq ($(ARCH),x86_64)
binary: dist/smc
else
binary:
	@echo "make binary: ARCH=$(ARCH) is not built (x86_64 or aarch64)" >&2; exit 2
endif

# After the first full build under emulation, a change to smc's own code alone is re-packed into
# it from dist/smc in seconds (build/arm64/binary.sh says when); anything else builds it in full.
dist/smc-aarch64: dist/smc $(SOURCES) $(ARM64_BUILD_FILES)
	bash build/system-deps.sh arm64
	flock .pyi-work/.lock-aarch64 bash build/arm64/binary.sh $(WORKER_BUNDLE) dist/smc $(BUILD_VENV)/bin/python

dist/smc-hostpy: $(HOSTPY_VENV)/.ok $(SOURCES)
	@mkdir -p .pyi-work-hostpy
	SMC_WORKER_BUNDLE=$(CURDIR)/$(WORKER_BUNDLE) SETUPTOOLS_USE_DISTUTILS=stdlib flock .pyi-work-hostpy/.lock $(HOSTPY_VENV)/bin/pyinstaller --noconfirm --log-level ERROR \
		--distpath .pyi-work-hostpy/dist --workpath .pyi-work-hostpy spec/smc.spec
	cp .pyi-work-hostpy/dist/smc $@

test: dist/smc $(TEST_VENV)/.ok
	bash build/system-deps.sh test
	SMC_BINARY=$(CURDIR)/dist/smc $(PY) -m pytest $(PYTEST_ARGS)

demo: dist/smc $(TEST_VENV)/.ok
	bash build/system-deps.sh demo
	$(PY) examples/demo.py --smc dist/smc

# bench/suite.py runs every bench to its end: misses are reported, a crash fails the target.
bench: dist/smc dist/smc-hostpy $(TEST_VENV)/.ok
	bash build/system-deps.sh bench
	$(PY) bench/suite.py --smc dist/smc --baseline dist/smc-hostpy $(if $(shell command -v java),,--skip-mms)

# ARCH=aarch64: the examples for linux/arm64 with dist/smc-aarch64 (build/images.sh says which).
images: $(ARCH_BINARY)
	bash build/system-deps.sh images
	SMC_ARCH=$(ARCH) SMC_BINARY=$(CURDIR)/$(ARCH_BINARY) bash build/images.sh

clean:
	rm -rf dist .pyi-work .pyi-work-hostpy .pyi-work-aarch64
