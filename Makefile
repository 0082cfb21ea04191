# examkit — set-up, demo, tests. `make demo` and `make test` each install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN     = $(VENV)/bin
STAMP   = $(VENV)/.installed
# Debian packages: libmagic for python-magic, g++ to build pdqhash (Meta's PDQ) and gcc for examkit's
# hash-set helpers (examkit/_hashset_native.c); TSK (fls, icat, hfind, fiwalk), ewf-tools and
# hashdeep are the independent oracles the tests compare against; ntfs-3g builds fresh NTFS
# images; chromium renders the HTML report and poppler-utils' pdftotext reads the PDF one.
APT_RUNTIME = libmagic1 gcc g++
APT_TEST    = sleuthkit ewf-tools hashdeep ntfs-3g fuse3 faketime chromium poppler-utils qemu-utils

.PHONY: bytecode demo test lint typecheck unit fixtures samples bench bench-scan bench-scan-lognormal bench-scan-e01 bench-large bench-photos bench-hashsets bench-hashsets-large bench-memory bench-perceptual fuzz apt-runtime apt-test clean

$(STAMP): pyproject.toml $(wildcard examkit/*.c)
	@./.ci/apt-ensure $(APT_RUNTIME)
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

# Bytecode of examkit and its plugins, as a wheel install writes it: with
# PYTHONDONTWRITEBYTECODE set, an editable install would compile every module again in
# every process (the test suite's subprocesses took 16% longer). Only changed files.
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q examkit plugins hashsets > /dev/null

apt-runtime:
	@./.ci/apt-ensure $(APT_RUNTIME)

apt-test: apt-runtime
	@./.ci/apt-ensure $(APT_TEST)

demo: apt-runtime bytecode
	$(BIN)/examkit demo

lint: $(STAMP)
	$(BIN)/ruff format --check examkit plugins tests benchmarks
	$(BIN)/ruff check examkit plugins tests benchmarks

typecheck: $(STAMP)
	$(BIN)/mypy examkit

unit: apt-test bytecode
	$(BIN)/pytest -q

test: lint typecheck unit

fixtures:
	tests/fixtures/build_images.sh
	$(BIN)/python tests/fixtures/build_perceptual_image.py
	python3 tests/fixtures/build_xfs_image.py        # needs xfsprogs
	python3 tests/fixtures/build_layered_images.py   # needs root, cryptsetup, lvm2, loop devices
	python3 tests/fixtures/build_ewf_formats.py      # needs ewf-tools
	$(BIN)/python tests/fixtures/hashsets/make_known_bad_sets.py
	$(BIN)/python tests/fixtures/hashsets/make_nsrl_sets.py

samples: $(STAMP)
	$(BIN)/python hashsets/make_samples.py

# Benchmarks print figures and ratios against the peer tools (docs/benchmarks.md).
bench: bench-hashsets bench-scan bench-scan-lognormal bench-scan-e01 bench-large bench-photos bench-memory bench-perceptual

bench-scan: apt-test $(STAMP)
	$(BIN)/python benchmarks/scan_vs_fiwalk.py

bench-scan-lognormal: apt-test $(STAMP)
	$(BIN)/python benchmarks/scan_vs_fiwalk.py --shape lognormal

bench-scan-e01: apt-test $(STAMP)
	$(BIN)/python benchmarks/scan_vs_fiwalk.py --shape lognormal --e01

bench-large: apt-test $(STAMP)
	$(BIN)/python benchmarks/large_files.py

bench-photos: apt-test $(STAMP)
	$(BIN)/python benchmarks/photos.py

bench-perceptual: apt-test $(STAMP)
	$(BIN)/python benchmarks/perceptual.py

bench-memory: apt-test $(STAMP)
	$(BIN)/python benchmarks/scan_memory.py

bench-hashsets: apt-test $(STAMP)
	$(BIN)/python benchmarks/hashsets.py

bench-hashsets-large: apt-test $(STAMP)
	$(BIN)/python benchmarks/hashsets.py --large 50000000

# Scan hundreds of mutated fixture images: no hang, no crash, nothing lost (tests/fuzz.py).
fuzz: apt-test $(STAMP)
	$(BIN)/python -m tests.fuzz --count 200

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache *.egg-info
