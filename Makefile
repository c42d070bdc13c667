# hello — build, run, test, measure.
#   make          the static musl binary (and the image, where a container builder runs)
#   make run      the service on :8080 in local mode (DEBUG=true; no Redis needed: an in-process store)
#   make test     every check and test suite; installs what they need
#   make bench    throughput, latency and memory, side by side with webdis
#   make fuzz     each cargo-fuzz target for FUZZ_SECONDS, then the property tests (FUZZ_CASES)
#   make deploy   release this commit to ECS (scripts/deploy.sh --dry-run to preview)

TARGET  := x86_64-unknown-linux-musl
STATIC  := target/$(TARGET)/release/hello
IMAGE   ?= nytimes/hello
SHELL   := /bin/bash

.PHONY: all static image run test bench fuzz resilience deploy clean

all: static image

static:
	@. scripts/lib.sh && ensure_musl_target
	cargo build --release --locked --target $(TARGET)
	@ls -l $(STATIC) | awk '{print "static binary: " $$5 " bytes"}'

image: static
	@if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then \
	  docker build -t $(IMAGE) . ; \
	elif command -v podman >/dev/null 2>&1; then \
	  podman build -t $(IMAGE) . ; \
	else \
	  echo "no container builder here (docker engine or podman): skipped the image"; \
	fi

# Local mode unless told otherwise: a laptop has no instance metadata to ask.
run:
	DEBUG=$${DEBUG:-true} cargo run --release

test:
	scripts/test.sh

bench:
	scripts/bench.sh

deploy:
	scripts/deploy.sh

# The resilience suite: the release binary under failure; one table row per scenario.
resilience:
	@. scripts/lib.sh && need_packages redis-server:redis-server slowhttptest:slowhttptest nginx:nginx-light prlimit:util-linux && ensure_venv .venv tests/requirements.txt
	cargo test --release --test resilience -- --ignored --nocapture --test-threads 1 2>&1 \
	  | grep -E '^\||test result|panicked|assert'

# Coverage-guided fuzzing of every parser (cargo-fuzz on stable, `--sanitizer none`), then the
# property tests with many cases. Not in `make test`: building libFuzzer and the instrumented
# crate alone takes longer than the two minutes CI can spare.
FUZZ_SECONDS ?= 30
FUZZ_CASES ?= 20000
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_CASES=$(FUZZ_CASES) scripts/fuzz.sh

clean:
	cargo clean
