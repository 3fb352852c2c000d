# The two commands of the README: `make serve` and `make test` set everything up on a fresh
# machine with only python3 (3.11+). The virtual environment lives in .venv inside the repo.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
# Two installs: what serving needs (make serve), and that plus the test tools (make test).
SERVE_STAMP := $(VENV)/.installed-serve
STAMP := $(VENV)/.installed

.PHONY: serve test soak lint typecheck pytest redis-server chromium screenshot fleet diagrams bench clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# Reinstall when the project's metadata changes. The test install covers serving too.
$(SERVE_STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e .
	touch $(SERVE_STAMP)

$(STAMP): pyproject.toml | $(PY)
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP) $(SERVE_STAMP)

# The `servermode` command is then .venv/bin/servermode (README "The command line").
serve: $(SERVE_STAMP)
	$(PY) -m servermode.adapters.cli serve

test: lint typecheck pytest

LINTED := $(wildcard core adapters tests bench)

lint: $(STAMP)
	$(VENV)/bin/ruff check $(LINTED)
	$(VENV)/bin/ruff format --check $(LINTED)

# mypy does not follow setuptools' editable finder: give it the installed layout as links.
typecheck: $(STAMP)
	rm -rf build/typed && mkdir -p build/typed/servermode
	ln -s ../../../core build/typed/servermode/core
	ln -s ../../../adapters build/typed/servermode/adapters
	cd build/typed && MYPYPATH=. ../../$(VENV)/bin/mypy --config-file ../../pyproject.toml -p servermode.core -p servermode.adapters
	MYPYPATH=build/typed $(VENV)/bin/mypy --config-file pyproject.toml -p bench

# The fleet tests start redis-server processes of their own (never a shared server).
redis-server:
	command -v redis-server >/dev/null || (apt-get update -qq && apt-get install -y -qq redis-server)

pytest: $(STAMP) redis-server chromium
	$(PY) -m pytest

# The browser tests (tests/browser) drive Debian's Chromium through playwright, which cannot
# download browsers of its own here.
chromium:
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq -o DPkg::Lock::Timeout=300 chromium)

# The README's picture of the admin page, taken by the browser test that checks it.
screenshot: $(STAMP) chromium
	SERVERMODE_SCREENSHOT_DIR=docs $(PY) -m pytest -q tests/browser -k "shows_the_drain or phone_width"

# The long reliability runs (README "Reliability"): bounded by SOAK_TIMEOUT seconds in all.
SOAK_TIMEOUT ?= 1500
soak: $(STAMP) redis-server
	timeout $(SOAK_TIMEOUT) $(PY) -m pytest tests/reliability -m soak

diagrams: $(STAMP)
	$(PY) -c "from servermode.core.diagram import write; write('diagrams')"
	$(PY) -c "from servermode.core.fleet.diagram import write_barrier; write_barrier('diagrams')"
	command -v dot >/dev/null || (apt-get update -qq && apt-get install -y -qq graphviz)
	dot -Tsvg diagrams/server_mode.dot -o diagrams/server_mode.svg

# A fleet to try by hand (README "Fleet mode"): a Redis on 127.0.0.1:$(FLEET_REDIS_PORT) keeping
# its data in var/fleet (append-only file), and three instances on ports $(FLEET_PORT) and the
# two after it, named instance-0..2. Ctrl-C stops them all.
FLEET_REDIS_PORT ?= 6390
FLEET_PORT ?= 8081
fleet: $(STAMP) redis-server
	mkdir -p var/fleet
	trap 'kill $$(jobs -p) 2>/dev/null' INT TERM EXIT; \
	redis-server --bind 127.0.0.1 --port $(FLEET_REDIS_PORT) --dir var/fleet --save '' \
		--appendonly yes --appendfsync everysec --loglevel warning & \
	sleep 0.5; \
	for i in 0 1 2; do \
		SERVERMODE_FLEET=redis://127.0.0.1:$(FLEET_REDIS_PORT)/0 SERVERMODE_INSTANCE_ID=instance-$$i \
		SERVERMODE_STATE=var/fleet/instance-$$i.db \
		$(VENV)/bin/servermode serve --port $$(($(FLEET_PORT) + i)) & \
	done; \
	wait

# Benchmarks (not part of `make test`; tests/bench runs each with --quick): every script
# prints its figures against a baseline from the same run and writes them to bench/results.
BENCHES := admission switch_latency idle_switch scale asgi_overhead http_overhead \
	status_throughput refusal_throughput shipped_service fleet

# The HTTP benchmarks load their servers with wrk when it is installed (an asyncio client otherwise);
# they measure uvicorn's plain stack and, with the `fast` extra installed here, httptools + uvloop.
BENCH_STAMP := $(VENV)/.bench-installed
$(BENCH_STAMP): pyproject.toml | $(STAMP)
	$(PY) -m pip install --quiet -e '.[test,fast]'
	touch $(BENCH_STAMP)

bench: $(BENCH_STAMP) redis-server
	command -v wrk >/dev/null || (apt-get update -qq && apt-get install -y -qq wrk) || echo 'wrk not installed: the asyncio load generator is used'
	for b in $(BENCHES); do $(PY) -m bench.$$b --json bench/results/$$b.json || exit 1; done

clean:
	rm -rf $(VENV) build *.egg-info
