# The two commands of the README, and the pieces they share.
# Everything installs itself: a fresh machine of this kind needs only python3, make and apt-get.

PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
PIP := $(PY) -m pip
# The CPU build of torch: an upper bound below 2.14 takes the local CPU wheel instead of
# ~2.6 GB of CUDA wheels. Users installing from setup.cfg get the broad torch>=2.1.
TORCH_CPU := torch>=2.8,<2.14
SHARED_DATA ?= $(abspath ../shared/data)
DEMO_DIR ?= demo-output
# CI may run with no locale: source files, messages and subprocess output are UTF-8.
export PYTHONUTF8 := 1
export LC_ALL := C.UTF-8

.PHONY: demo test bench setup system-deps clean

# Qt needs these X libraries; Xvfb gives it a screen when there is none.
system-deps:
	@if ! command -v xvfb-run >/dev/null 2>&1 || ! ldconfig -p | grep -q libxcb-icccm.so.4; then \
		echo "installing Xvfb and the X libraries Qt needs"; \
		SUDO=$$( [ "$$(id -u)" = 0 ] || echo sudo ); \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq \
			xvfb xauth libxcb-icccm4 libxcb-keysyms1 libxcb-xinerama0 libxkbcommon-x11-0 \
			libxcb-randr0 libxcb-render-util0 libxcb-shape0 libxcb-cursor0 libxcb-image0 \
			libegl1 libgl1 libfontconfig1 libdbus-1-3 >/dev/null; \
	fi

# A non-editable install on purpose: what the tests exercise is what a user's pip install gets.
setup: system-deps
	@[ -x $(PY) ] || $(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip
	$(PIP) install -q "$(TORCH_CPU)"
	$(PIP) install -q "$(TORCH_CPU)" ".[testing]"

# Main job: napari with the plugin docked on a sample project. Without a display the same
# loop runs under a virtual X server and leaves a screenshot in $(DEMO_DIR)/.
demo: setup
	@if [ -n "$$DISPLAY" ]; then \
		$(PY) -m napari_semiseg.demo --out $(DEMO_DIR) --shared-data $(SHARED_DATA); \
	else \
		xvfb-run -a -s "-screen 0 1600x1000x24" $(PY) -m napari_semiseg.demo --headless \
			--out $(DEMO_DIR) --shared-data $(SHARED_DATA); \
	fi

# The whole suite, GUI tests in real napari windows under Xvfb (pytest-xvfb starts it).
# The layers first (seconds): an import that runs back up fails the build before any test runs.
test: setup
	$(VENV)/bin/lint-imports --no-cache
	cd tests && ../$(PY) -m pytest -q -p no:cacheprovider --shared-data $(SHARED_DATA) .

bench: setup
	$(PY) -m benchmarks.run_all --shared-data $(SHARED_DATA)

clean:
	rm -rf $(VENV) build *.egg-info $(DEMO_DIR)
