# Two entry points that work on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" -eq 0 ] || echo sudo)
PYTEST_WORKERS ?= 2

.PHONY: install system-deps demo test lint

install:
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -e '.[test]'

# plink2, plink 1.9 and dcm2niix are the references the tests compare against (Debian packages).
system-deps:
	@if ! command -v plink2 >/dev/null || ! command -v plink1.9 >/dev/null || ! command -v dcm2niix >/dev/null; then \
		$(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq plink2 plink1.9 dcm2niix >/dev/null; \
	fi

demo: install
	contig demo --out demo-out

test: system-deps install
	$(PYTHON) -m pytest -n $(PYTEST_WORKERS) -q

lint:
	ruff check . && ruff format --check .
