# The two set-up commands of the README: `make serve` and `make test`; `make bench-deps` for
# the benchmarks.
PYTHON ?= python3
APT_LOG ?= /tmp/longvu-apt.log

.PHONY: install serve test bench-deps

# torch first, pinned, so that nothing else pulls another build of it.
install:
	$(PYTHON) -m pip install -q torch==2.13.0
	$(PYTHON) -m pip install -q -e '.[dev]'

serve: install
	$(PYTHON) -m server

# Debian packages, quietly: their output goes to $(APT_LOG) and is shown only on failure.
define apt_install
	@command -v $(1) >/dev/null || { echo "installing $(2) (log: $(APT_LOG))"; \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $(2); } >$(APT_LOG) 2>&1 \
		|| { cat $(APT_LOG); exit 1; }; }
endef

# The tests run a real redis-server, a real Prometheus and a real Chromium (Debian packages;
# Playwright drives that Chromium and downloads no browser).
test: install
	$(call apt_install,redis-server,redis-server)
	$(call apt_install,prometheus,prometheus)
	$(call apt_install,chromium,chromium)
	$(PYTHON) -m pytest

# bench/decode.py compares our decoder with the ffmpeg command.
bench-deps: install
	$(call apt_install,ffmpeg,ffmpeg)
