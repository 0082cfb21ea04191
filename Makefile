# examkit — set-up, demo, tests. `make demo` and `make test` each install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
# Debian packages: libmagic for python-magic; TSK, ewf-tools and hashdeep are the
# independent oracles the tests compare against; ntfs-3g builds fresh NTFS images.
APT_RUNTIME = libmagic1
APT_TEST    = sleuthkit ewf-tools hashdeep ntfs-3g fuse3 faketime

.PHONY: demo test lint typecheck unit fixtures apt-runtime apt-test clean

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

apt-runtime:
	@./.ci/apt-ensure $(APT_RUNTIME)

apt-test: apt-runtime
	@./.ci/apt-ensure $(APT_TEST)

demo: apt-runtime $(STAMP)
	$(BIN)/examkit demo

lint: $(STAMP)
	$(BIN)/ruff format --check examkit plugins tests
	$(BIN)/ruff check examkit plugins tests

typecheck: $(STAMP)
	$(BIN)/mypy examkit

unit: apt-test $(STAMP)
	$(BIN)/pytest -q

test: lint typecheck unit

fixtures:
	tests/fixtures/build_images.sh

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
