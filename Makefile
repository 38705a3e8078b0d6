# The two commands of the README: `make run` (install + the main job) and `make test`.
PY ?= python3.11
VENV ?= .venv
BIN := $(VENV)/bin
SHARED ?= ../shared

.PHONY: install run test lint demo

$(BIN)/openlipsync: pyproject.toml
	@command -v $(PY) >/dev/null 2>&1 || { echo "needs $(PY)"; exit 1; }
	$(PY) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	@touch $@

install: $(BIN)/openlipsync

run: install
	$(BIN)/openlipsync serve

demo: install
	$(BIN)/openlipsync generate --video $(SHARED)/media/video/grid_bbaf2n.mpg \
		--audio $(SHARED)/media/speech/jfk_inaugural.flac -o out/demo.mp4

lint: install
	$(BIN)/ruff check openlipsync tests bench
	$(BIN)/ruff format --check openlipsync tests bench

test: install
	bash scripts/install_chromium.sh
	$(BIN)/ruff check openlipsync tests bench
	$(BIN)/pytest -q --durations=25
