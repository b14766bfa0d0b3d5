# meshbus — the two commands a fresh machine needs are `make demo` and `make test`.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.meshbus-installed
ADAPTERS := $(wildcard adapters/*/pyproject.toml)

.PHONY: install system-deps test lint typecheck unit safe uvloop e2e images wheels demo demo-compose bench clean

$(STAMP): pyproject.toml $(ADAPTERS)
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v >= (3, 11) else f"meshbus needs Python 3.11 or newer; {sys.executable} is {v[0]}.{v[1]}")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dev]' $(foreach a,$(ADAPTERS),-e $(dir $(a)))
	touch $(STAMP)

## install: a virtualenv in .venv with meshbus, its adapters and the test tools
install: $(STAMP)

## system-deps: Debian packages the tests need (RabbitMQ); needs root, skipped otherwise
system-deps:
	bash scripts/install-system-deps.sh

## lint / typecheck: ruff and mypy --strict
lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

typecheck: install
	$(PY) -m mypy

## test: install everything, then lint, type-check and run every test tier, then the
## conformance suite again with every fast path off (MESHBUS_SAFE=1) and on uvloop
test: install system-deps lint typecheck
	$(PY) -m pytest --benchmark-disable
	$(MAKE) --no-print-directory safe
	$(MAKE) --no-print-directory uvloop

## safe: the conformance suite with MESHBUS_SAFE=1, so the plain paths stay correct
safe: install
	@start=$$(date +%s); \
	MESHBUS_SAFE=1 $(PY) -m pytest tests/conformance tests/unit/test_fastpath.py --benchmark-disable -q; \
	status=$$?; echo "safe tier (MESHBUS_SAFE=1 conformance): $$(( $$(date +%s) - start )) s"; exit $$status

## uvloop: the conformance suite and the direct-channel tests on uvloop (MESHBUS_LOOP=uvloop)
uvloop: install
	@start=$$(date +%s); \
	MESHBUS_LOOP=uvloop $(PY) -m pytest tests/conformance tests/direct tests/unit/test_loop_choice.py --benchmark-disable -q; \
	status=$$?; echo "uvloop tier (MESHBUS_LOOP=uvloop conformance, direct): $$(( $$(date +%s) - start )) s"; exit $$status

## images: the local images the compose stacks and tests/e2e use where no registry is reachable
images: install system-deps
	bash scripts/build-images.sh

## wheels: meshbus, its adapters and their dependencies in build/wheels (compose/Dockerfile uses them)
wheels: install
	bash scripts/build-images.sh wheels

## e2e: the end-to-end tier alone (real containers; starts the Docker engine if it must)
e2e: install system-deps
	$(PY) -m pytest tests/e2e --benchmark-disable

## unit: the fast tiers only (no brokers)
unit: install
	$(PY) -m pytest tests/unit tests/conformance --benchmark-disable

## demo: a shop of services, each a process started by `meshbus run`, brokerless over tcp://:
## orders -> billing x3 -> shipping, pricing answering requests; one billing replica stopped
## midway, a poison order dead-lettered; ends with the count of what was handled (meshbus alone)
demo: $(VENV)/.meshbus-demo
	$(PY) examples/shop/demo.py

$(VENV)/.meshbus-demo: pyproject.toml
	@$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(0 if v >= (3, 11) else f"meshbus needs Python 3.11 or newer; {sys.executable} is {v[0]}.{v[1]}")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet -e .
	touch $@

## demo-compose: the same shop in containers, brokerless over dns:// (needs the Docker engine;
## where no registry is reachable: make images, then COMPOSE_ENV=compose/local.env)
COMPOSE_ENV ?=
SHOP := docker compose $(if $(COMPOSE_ENV),--env-file $(COMPOSE_ENV)) -f compose/shop.yml
demo-compose: wheels
	DOCKER_BUILDKIT=0 COMPOSE_BAKE=false $(SHOP) up --build --attach orders --attach billing \
		--attach shipping --exit-code-from orders; status=$$?; \
	$(SHOP) down --volumes --timeout 30; exit $$status

## bench: the benchmark suites, with throughput and latency figures
bench: install
	@mkdir -p .benchmarks
	$(PY) -m pytest tests/benchmarks --benchmark-only --benchmark-sort=name \
		--benchmark-columns=median,rounds --benchmark-json=.benchmarks/latest.json
	$(PY) tests/benchmarks/report.py .benchmarks/latest.json

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache .benchmarks
