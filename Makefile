# The two set-up commands of the README: `make serve` and `make test`.
PYTHON ?= python3

.PHONY: install serve test

# torch first, pinned, so that nothing else pulls another build of it.
install:
	$(PYTHON) -m pip install -q torch==2.13.0
	$(PYTHON) -m pip install -q -e '.[dev]'

serve: install
	$(PYTHON) -m server

# The tests run a real redis-server and a real Prometheus (Debian packages).
test: install
	@command -v redis-server >/dev/null && command -v prometheus >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq redis-server prometheus; }
	$(PYTHON) -m pytest
