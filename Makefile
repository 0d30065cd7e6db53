# The two set-up commands of the README: `make serve` and `make test`.
PYTHON ?= python3

.PHONY: install serve test

# torch first, pinned, so that nothing else pulls another build of it.
install:
	$(PYTHON) -m pip install -q torch==2.13.0
	$(PYTHON) -m pip install -q -e '.[dev]'

serve: install
	$(PYTHON) -m server

# The tests run a real redis-server, a real Prometheus and a real Chromium (Debian packages;
# Playwright drives that Chromium and downloads no browser).
test: install
	@command -v redis-server >/dev/null && command -v prometheus >/dev/null && command -v chromium >/dev/null || \
		{ apt-get update -qq && apt-get install -y -qq redis-server prometheus chromium; }
	$(PYTHON) -m pytest
