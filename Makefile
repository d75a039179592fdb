# signs-pipeline: `make run` runs the pipeline, `make test` runs the tests, `make unit` the fast ones; all set up .venv first.

VENV    := .venv
PY      := $(VENV)/bin/python
UV      := $(VENV)/bin/uv
STAMP   := $(VENV)/.installed
UV_VERSION := 0.13.9
# tfx 1.16 needs Python 3.10: take it from PATH, pyenv or the usual prefixes.
PYTHON310 ?= $(shell for p in python3.10 $$HOME/.pyenv/versions/3.10*/bin/python3.10 /usr/local/bin/python3.10 /usr/bin/python3.10; do "$$p" -c 'import sys; assert sys.version_info[:2] == (3, 10)' 2>/dev/null && { echo "$$p"; break; }; done)
ARGS    ?=

.PHONY: setup run test unit lock clean help chromium

help:
	@echo "make run   ARGS='--epochs 8 ...'  run the whole pipeline locally (python pipeline/local_runner.py ARGS)"
	@echo "make test                         run the test suite"
	@echo "make unit                         run the fast tests: no whole-pipeline run (e2e), no slow test"
	@echo "make lock                         re-resolve requirements*.in into requirements*.lock"

setup: $(STAMP)

$(STAMP): requirements.lock setup.py
	@test -n "$(PYTHON310)" || { echo "error: Python 3.10 not found on PATH or in pyenv; tfx 1.16 needs it"; exit 1; }
	test -x $(PY) || $(PYTHON310) -m venv $(VENV)
	$(PY) -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	$(UV) pip install --python $(PY) -r requirements.lock
	$(UV) pip install --python $(PY) --no-deps -e .
	touch $@

run: setup
	$(PY) pipeline/local_runner.py $(ARGS)

# The suite runs on TEST_WORKERS processes (pytest-xdist), each test file whole on one of them, so a
# file's module fixtures (a pipeline run its tests share) are made once.
TEST_WORKERS ?= 2

test: setup chromium
	$(PY) -m pytest -n $(TEST_WORKERS) --dist loadfile $(ARGS)

# The unit tier: what pytest.ini marks e2e (a whole TFX pipeline) or slow (30 s or more) is left out.
unit: setup
	$(PY) -m pytest -m "not e2e and not slow" $(ARGS)

# The review report is checked in headless Chromium (Debian's package).
chromium:
	@command -v chromium >/dev/null || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } \
	  || { echo "error: could not install Debian's chromium package (needed by the report test); install it and re-run"; exit 1; }

lock: setup
	$(UV) pip compile --python-version 3.10 --python-platform x86_64-manylinux_2_28 requirements.in -o requirements.lock
	$(UV) pip compile --python-version 3.10 --python-platform x86_64-manylinux_2_28 requirements-gpu.in -c requirements.lock -o requirements-gpu.lock

clean:
	rm -rf $(VENV) pipeline_output
