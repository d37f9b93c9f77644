# Ledger: two commands do all set-up on a fresh machine (Python 3.11, make, a C/C++ compiler).
#   make run    build the environment if needed, migrate, start the app on http://localhost:8501
#   make test   build the environment if needed, then ruff, mypy and the whole pytest suite
SHELL := /bin/bash
.DEFAULT_GOAL := help

PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
PORT ?= 8501
STAMP := $(VENV)/.installed

# llama-cpp-python compiles from source. A default build targets the build machine's CPU and can
# crash elsewhere, so it is built portable (GGML_NATIVE=OFF) once into this wheelhouse and reused.
# The build needs a C and a C++ compiler (rule `compilers`); CMake need not be installed: when
# none (or too old a one) is on PATH, the build backend (scikit-build-core) takes CMake from PyPI.
LLAMA_VERSION := 0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF
WHEELHOUSE ?= $(HOME)/.cache/ledger/llama-$(LLAMA_VERSION)-portable

# The compilers CMake looks for (CC / CXX when set: make passes them on). Installed when missing
# and possible (root with apt-get, as for the browser below); otherwise one line says what to
# install, before anything is built.
BUILD_CC := $(if $(filter default,$(origin CC)),cc gcc clang,$(CC))
BUILD_CXX := $(if $(filter default,$(origin CXX)),c++ g++ clang++,$(CXX))
FIND_COMPILERS := have() { for c in "$$@"; do command -v "$$c" >/dev/null 2>&1 && return 0; done; return 1; }; \
	missing=""; have $(BUILD_CC) || missing="a C compiler ($(firstword $(BUILD_CC)))"; \
	have $(BUILD_CXX) || missing="$${missing:+$$missing and }a C++ compiler ($(firstword $(BUILD_CXX)))"
CHECK_COMPILERS := $(FIND_COMPILERS); \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing build-essential: llama-cpp-python is compiled once and needs $$missing"; \
	  apt-get install -y -q --no-install-recommends build-essential >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends build-essential >/dev/null; }; \
	  $(FIND_COMPILERS); \
	fi; \
	if [ -n "$$missing" ]; then \
	  echo "error: building llama-cpp-python needs $$missing (Debian/Ubuntu: apt-get install build-essential; Fedora: dnf install gcc gcc-c++; macOS: xcode-select --install), then run make again" >&2; \
	  exit 1; \
	fi

# The machine's own servers, for `make test-services` (CI runs it when they answer).
TEST_DATABASE_URL ?= postgresql://postgres@127.0.0.1:5432/postgres
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: help install run test test-fast lint typecheck pytest test-services migrate lock clean browser balancer screenshots compilers notebook

help:
	@echo "make run    start the app on http://localhost:$(PORT) (embedded PostgreSQL, Redis, LLM)"
	@echo "make run WORKERS=3   three app processes behind HAProxy on the same port"
	@echo "make test   ruff + mypy + the whole test suite"
	@echo "make test-fast       unit and AppTest tests only (the edit loop, about 30 s)"
	@echo "make test-services   integration tests against TEST_DATABASE_URL / TEST_REDIS_URL"
	@echo "make screenshots     regenerate docs/screenshots/*.png (demo data, headless Chromium)"
	@echo "make notebook        JupyterLab on notebooks/, with the app's data (installs it once)"

$(STAMP): pyproject.toml requirements.lock
	@test -x $(BIN)/python || { \
	  $(if $(PYTHON),$(PYTHON),false) -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null || { \
	    echo "error: Ledger needs Python 3.11 or newer (found: $(if $(PYTHON),$$($(PYTHON) --version 2>/dev/null || echo "nothing runnable") at $(PYTHON),no python3)). Install it, or run: make PYTHON=/path/to/python3.11 $(MAKECMDGOALS)" >&2; \
	    exit 1; }; \
	  $(PYTHON) -m venv $(VENV); }
	$(BIN)/python -m pip install -q --upgrade pip
	@if ! ls $(WHEELHOUSE)/llama_cpp_python-$(LLAMA_VERSION)-*.whl >/dev/null 2>&1; then \
	  $(CHECK_COMPILERS); \
	  echo "building llama-cpp-python $(LLAMA_VERSION) (portable, about 3 minutes, once per machine)"; \
	  mkdir -p $(WHEELHOUSE); \
	  CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(BIN)/python -m pip wheel -q --no-cache-dir --no-deps \
	    llama-cpp-python==$(LLAMA_VERSION) -w $(WHEELHOUSE); \
	fi
	$(BIN)/python -m pip install -q --find-links $(WHEELHOUSE) -c requirements.lock -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)

# `make compilers`: the same check alone.
compilers:
	@$(CHECK_COMPILERS)

migrate: install
	$(BIN)/python -m core migrate

# Listens on this machine only; `make run HOST=0.0.0.0` opens it to the network (the container
# image sets STREAMLIT_SERVER_ADDRESS=0.0.0.0 itself).
HOST ?= 127.0.0.1

# `make run WORKERS=3`: three app processes behind HAProxy on the same port (core/cli/serve.py),
# sharing PostgreSQL and Redis; HAProxy is installed when missing and possible (rule balancer).
WORKERS ?= 1

run: install
	@$(BIN)/python -m core prepare
	@if [ "$(WORKERS)" = 1 ]; then \
	  exec $(BIN)/streamlit run app/main.py --server.port $(PORT) --server.address $(HOST); \
	fi; \
	$(call FIND_HAPROXY,error,); \
	exec $(BIN)/python -m core serve --workers $(WORKERS) --port $(PORT) --host $(HOST)

# `make notebook`: JupyterLab (the optional extra "notebook", installed once into .venv) on
# notebooks/, reading the app's data: the embedded servers under DATA_DIR or the configured URLs.
NOTEBOOK_STAMP := $(VENV)/.notebook
$(NOTEBOOK_STAMP): $(STAMP)
	$(BIN)/python -m pip install -q -c requirements.lock -e '.[dev,notebook]'
	@touch $@

notebook: $(NOTEBOOK_STAMP)
	@$(BIN)/python -m core prepare
	$(BIN)/jupyter lab --ServerApp.ip=$(HOST) --ServerApp.root_dir=notebooks \
	  $(if $(filter 0,$(shell id -u)),--allow-root,)

lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: install
	$(BIN)/mypy

# The suite runs on every core plus one (pytest-xdist; each worker has its own databases): a
# third of its time is spent waiting on subprocesses and browsers. A file stays on one worker
# (loadfile), since the browser tests share an app process per module. Files are handed out in
# the order tests/conftest.py sorts them (slowest kinds first); xdist's default reorder by
# number of tests would start the few long browser files last and leave one worker finishing.
TEST_WORKERS ?= $(shell echo $$(( $$(nproc 2>/dev/null || echo 1) + 1 )))
XDIST := -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder
# Compiled modules are kept (__pycache__, ignored by git) even where the environment says not
# to write them: otherwise each worker rewrites every test module's asserts again, and each of
# the hundreds of app and CLI processes the suite starts compiles core anew.
test test-fast pytest test-services: export PYTHONDONTWRITEBYTECODE :=

# The slowest tests are listed at the end: where the suite's time goes (issue 15's target).
PYTEST_ALL := $(BIN)/pytest $(XDIST) --durations=15 $(PYTEST_ARGS)
pytest: install browser balancer
	$(PYTEST_ALL)

test-fast: install
	$(BIN)/pytest $(XDIST) -m "unit or app" $(PYTEST_ARGS)

# The browser tests drive Debian's Chromium (never Playwright's download). Installed here when
# missing and possible (root with apt-get); otherwise the suite skips them and its summary ends
# with a banner saying so. fonts-noto-color-emoji: page icons are emoji (boxes without it).
CHROMIUM ?= /usr/bin/chromium
EMOJI_FONT := /usr/share/fonts/truetype/noto/NotoColorEmoji.ttf
browser:
	@missing=""; test -x $(CHROMIUM) || missing="chromium"; \
	test -f $(EMOJI_FONT) || missing="$$missing fonts-noto-color-emoji"; \
	if [ -z "$$missing" ]; then exit 0; fi; \
	if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "installing Debian packages for the browser tests:$$missing"; \
	  apt-get install -y -q --no-install-recommends $$missing >/dev/null 2>&1 || \
	  { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends $$missing >/dev/null; } || \
	  echo "WARNING: apt-get could not install$$missing: the browser tests will be SKIPPED"; \
	else \
	  echo "WARNING: cannot install$$missing (needs root and apt-get): the browser tests will be SKIPPED unless chromium is at $(CHROMIUM)"; \
	fi

# HAProxy, for `make run WORKERS=N` and the multi-process tests: installed when missing and
# possible (root with apt-get); otherwise one line says what to install (and, for the tests,
# the multi-process tests are skipped, or fail where LEDGER_REQUIRE_BROWSER is set, as in CI).
# $(call FIND_HAPROXY,word,then): install if needed; if still missing say "word: ..." and run
# "then" (exit 1 for `make run`; nothing for the tests).
FIND_HAPROXY = command -v haproxy >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing haproxy (the load balancer in front of several app processes)"; \
	    apt-get install -y -q --no-install-recommends haproxy >/dev/null 2>&1 || \
	    { apt-get update -q >/dev/null && apt-get install -y -q --no-install-recommends haproxy >/dev/null; }; \
	  fi; \
	  command -v haproxy >/dev/null 2>&1 || { \
	    echo "$(1): HAProxy is not installed (Debian/Ubuntu: apt-get install haproxy; macOS: brew install haproxy)" >&2; \
	    $(if $(2),$(2),exit 1); }; }

balancer:
	@$(call FIND_HAPROXY,WARNING,echo "the multi-process tests will be SKIPPED" >&2)

screenshots: install browser
	$(BIN)/python -m tests.support.screenshots docs/screenshots

# mypy checks beside the suite instead of before it (one process for ~13 s that a fresh
# clone's suite absorbs in about half that); its report follows the suite's, and either
# failing fails the target.
MYPY_LOG := $(VENV)/mypy.log
test: lint install browser balancer
	@echo "$(BIN)/mypy > $(MYPY_LOG) &  # beside pytest"; echo "$(PYTEST_ALL)"; \
	$(BIN)/mypy > $(MYPY_LOG) 2>&1 & mypy=$$!; \
	$(PYTEST_ALL); status=$$?; \
	echo "$(BIN)/mypy (ran beside pytest):"; \
	wait $$mypy; typed=$$?; cat $(MYPY_LOG); \
	[ $$typed = 0 ] || { echo "error: mypy failed" >&2; status=1; }; \
	exit $$status

# The integration tests against other servers (each run creates and drops its own database;
# the Redis database is flushed, so give concurrent runs different ones). The multi-process
# tests of the embedded servers never use these URLs, so they are not repeated here.
test-services: install
	@echo "pytest tests/integration on TEST_DATABASE_URL and TEST_REDIS_URL (not echoed: they may hold passwords)"
	@TEST_DATABASE_URL='$(TEST_DATABASE_URL)' TEST_REDIS_URL='$(TEST_REDIS_URL)' \
	  $(BIN)/pytest $(XDIST) tests/integration --ignore=tests/integration/test_embedded_services.py $(PYTEST_ARGS)

# Refresh the pinned versions after changing dependencies in pyproject.toml.
lock: install
	$(BIN)/python -m pip freeze --exclude-editable | grep -v '^-e ' > requirements.lock

clean:
	rm -rf $(VENV)

# Docker Compose: the app with PostgreSQL, Redis (AOF), Ollama, Prometheus and Grafana.
# Secrets come from .env (see .env.example); `make down` keeps the data volumes.
COMPOSE ?= docker compose
.PHONY: up down

up:
	@test -f .env || { echo "error: no .env; cp .env.example .env and set POSTGRES_PASSWORD, REDIS_PASSWORD, GRAFANA_ADMIN_PASSWORD and AUTH_COOKIE_KEY"; exit 2; }
	$(COMPOSE) up -d --build
	$(COMPOSE) ps
	@echo "app on LEDGER_PORT (8501), Grafana on GRAFANA_PORT (3000); model download: $(COMPOSE) logs -f ollama-pull"

down:
	$(COMPOSE) down
