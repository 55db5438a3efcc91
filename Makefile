# The two commands: `make run` and `make test`. Everything they need is installed from here.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
ARGS ?=
PYTEST_ARGS ?=

.PHONY: run test venv sysdeps lint typecheck bench bench-fanout clean qemu-image bench-qemu

$(INSTALLED): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

venv: $(INSTALLED)

## Start the edge with the embedded simulated phone, the control plane and a demo tenant; print the URLs.
run: venv
	@mkdir -p run
	$(BIN)/cloudphone serve --control-db run/control.db --demo $(ARGS)

## System packages the tests use (Chromium, QEMU, busybox); skipped with a reason when not root.
sysdeps:
	@bash scripts/install-system-deps.sh

## The QEMU recipe guests (Debian kernel + busybox initramfs), cached in .cache/qemu-image
## (x86_64) and .cache/qemu-image/aarch64; built here, outside the tests' network namespace.
qemu-image: venv
	-$(BIN)/python -m cloudphone.vm.qemu.image
	-$(BIN)/python -m cloudphone.vm.qemu.image --arch aarch64

## The whole suite, inside a private network namespace with only loopback when we may make one.
test: venv sysdeps qemu-image
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	MYPY=$(BIN)/mypy bash scripts/typecheck.sh
	@bash scripts/in-loopback-netns.sh $(BIN)/python -m pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

typecheck: venv
	MYPY=$(BIN)/mypy bash scripts/typecheck.sh

bench: venv
	$(BIN)/python -m benchmarks.stream

bench-fanout: venv
	$(BIN)/python -m benchmarks.fanout $(ARGS)

bench-qemu: venv qemu-image
	$(BIN)/python -m benchmarks.qemu_latency $(ARGS)

bench-android: venv
	$(BIN)/python -m benchmarks.android_passthrough $(ARGS)

clean:
	rm -rf $(VENV) build *.egg-info .mypy_cache .ruff_cache .pytest_cache
