# smc: build, test, demo, bench. Everything runs from a venv keyed on requirements/*.txt.
SHELL := /bin/bash
PYTHON ?= python3
CACHE_DIR ?= $(HOME)/.cache/smc
REQS_HASH := $(shell cat requirements/*.txt | sha256sum | cut -c1-12)
VENV ?= $(CACHE_DIR)/venv-$(REQS_HASH)
PY := $(VENV)/bin/python
SOURCES := $(shell find supervisor_app -name '*.py') spec/smc.spec requirements/build.txt

.PHONY: venv binary test demo bench clean help

help:
	@echo "make demo    build dist/smc and run the built-in example end to end"
	@echo "make test    build dist/smc and run the test suite against it"
	@echo "make binary  build the one-file binary dist/smc"
	@echo "make bench   print start-up and size numbers (bench/)"

$(VENV)/.ok: requirements/build.txt requirements/test.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r requirements/build.txt -r requirements/test.txt
	touch $@

venv: $(VENV)/.ok

dist/smc: $(VENV)/.ok $(SOURCES)
	@mkdir -p .pyi-work
	flock .pyi-work/.lock $(VENV)/bin/pyinstaller --noconfirm --log-level WARN \
	    --distpath dist --workpath .pyi-work spec/smc.spec
	@ls -l dist/smc

binary: dist/smc

test: dist/smc
	SMC_BINARY=$(CURDIR)/dist/smc $(PY) -m pytest $(PYTEST_ARGS)

demo: dist/smc
	$(PY) examples/demo.py --smc dist/smc

bench: dist/smc
	$(PY) bench/startup.py --smc dist/smc

clean:
	rm -rf dist .pyi-work
