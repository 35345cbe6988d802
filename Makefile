# The front door: `make dev` runs the API locally, `make test` runs every test.
# Both set up what they need: the virtual environment (.venv, from uv.lock) and the
# system packages (installed with apt-get when running as root).

PYTHON ?= python3
VENV := .venv
UV_VERSION := 0.13.9

.PHONY: environment-lock task-root dev test test-unit test-integration lint typecheck format bench bench-quick system-deps browser-deps console-vendor

$(VENV)/.synced: pyproject.toml uv.lock
	@test -x $(VENV)/bin/python || $(PYTHON) -m venv $(VENV)
	@$(VENV)/bin/python -m pip install -q --disable-pip-version-check uv==$(UV_VERSION)
	@$(VENV)/bin/uv sync --frozen --inexact --quiet
	@touch $@

# System packages, installed with apt-get when root, otherwise a one-line instruction.
# $(call apt_require,CHECK:PACKAGE ...): CHECK is a command, or an absolute path that
# must be executable.
define apt_require
	@missing=""; \
	for pair in $(1); do \
	  check=$${pair%%:*}; package=$${pair#*:}; \
	  case $$check in \
	    /*) test -x "$$check" || missing="$$missing $$package";; \
	    *) command -v "$$check" >/dev/null || missing="$$missing $$package";; \
	  esac; \
	done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing$$missing"; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "Missing$$missing: run 'sudo apt-get install$$missing' and try again."; exit 1; \
	  fi; \
	fi
endef

# bubblewrap and gVisor's runsc for the sandboxes (Debian's packages, ADR 0013),
# mmdebstrap for the root they give tasks (devtools/task_root.py), a system python3, and
# npm for the console's vendored libraries.
system-deps:
	$(call apt_require,bwrap:bubblewrap runsc:runsc /usr/bin/python3:python3 npm:npm mmdebstrap:mmdebstrap)

# The default task environment's Python lock (environments/default/python.lock), from
# its top-level list, with hashes, for the runner image's platform. `make dev` and the
# tests build the local task root from the manifest themselves (devtools/task_root.py).
environment-lock: $(VENV)/.synced
	@$(VENV)/bin/uv pip compile environments/default/python.in --generate-hashes --no-header \
	    --quiet --python-version 3.11 --python-platform x86_64-manylinux_2_28 \
	    -o environments/default/python.lock

task-root: $(VENV)/.synced system-deps
	@$(VENV)/bin/python -m devtools.task_root

# Chromium for the console's browser tests (make test only).
browser-deps:
	$(call apt_require,/usr/bin/chromium:chromium)

# The console's vendored libraries (the Firebase JS SDK for sign-in in
# AUTH_MODE=firebase; marked and DOMPurify for Markdown replies), bundled from the
# versions locked in console/package-lock.json; the API image builds them the same way.
# One build writes every bundle: the target is the last one added.
CONSOLE_VENDOR := api/console/vendor/markdown.js

$(CONSOLE_VENDOR): console/package.json console/package-lock.json $(wildcard console/src/*.js) | system-deps
	@npm ci --prefix console --ignore-scripts --no-audit --no-fund --loglevel=error >/dev/null
	@npm run --prefix console --silent build

console-vendor: $(CONSOLE_VENDOR)

dev: $(VENV)/.synced system-deps $(CONSOLE_VENDOR)
	@$(VENV)/bin/python -m devtools.dev

# The Google provider's schema that tests/deploy checks terraform/ against, from the
# lock, into a git-ignored node_modules.
SCHEMA := tests/deploy/provider-schema
$(SCHEMA)/node_modules/.installed: $(SCHEMA)/package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed for tests/deploy (the provider schema): install Node.js"; exit 1; }
	@cd $(SCHEMA) && npm ci --ignore-scripts --no-audit --no-fund --omit=peer --silent
	@touch $@

test: $(VENV)/.synced system-deps browser-deps $(SCHEMA)/node_modules/.installed $(CONSOLE_VENDOR)
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(MAKE) --no-print-directory typecheck
	@$(VENV)/bin/pytest

# Fast tiers while working (`make test` still runs everything): the unit and contract
# tests (no emulator, seconds), and the integration tests (the app against the
# Firestore and Cloud Storage emulators, no server process, no browser).
test-unit: $(VENV)/.synced system-deps
	@$(VENV)/bin/pytest tests/unit tests/contract

test-integration: $(VENV)/.synced
	@$(VENV)/bin/pytest tests/integration

lint: $(VENV)/.synced
	@$(VENV)/bin/ruff check .
	@$(VENV)/bin/ruff format --check .
	@$(MAKE) --no-print-directory typecheck

# mypy over api/, job-runner/, devtools/, bench/ and tests/ (pyproject.toml's [tool.mypy]).
typecheck: $(VENV)/.synced
	@$(VENV)/bin/mypy

format: $(VENV)/.synced
	@$(VENV)/bin/ruff check --fix .
	@$(VENV)/bin/ruff format .

# Every script in bench/, each starting what it needs (devtools/local_stack.py).
bench: $(VENV)/.synced system-deps
	@for script in bench/*.py; do $(VENV)/bin/python $$script || exit 1; done

# The same in quick mode (a handful of iterations): they still run and print figures.
bench-quick: $(VENV)/.synced system-deps
	@for script in bench/*.py; do $(VENV)/bin/python $$script --quick || exit 1; done
