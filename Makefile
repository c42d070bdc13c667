# hello — build, run, test, measure.
#   make          the static musl binary (and the image, where a container builder runs)
#   make run      the service on :8080 in local mode (DEBUG=true; no Redis needed: an in-process store)
#   make test     every check and test suite; installs what they need
#   make bench    throughput, latency and memory, side by side with webdis
#   make fuzz     each cargo-fuzz target for FUZZ_SECONDS, then the property tests (FUZZ_CASES)
#   make deploy   release this commit to ECS (scripts/deploy.sh --dry-run to preview)

TARGET  := x86_64-unknown-linux-musl
ARM64   := aarch64-unknown-linux-musl
# Cargo's output directory, as cargo itself chooses it.
OUT     := $(or $(CARGO_TARGET_DIR),target)
STATIC  := $(OUT)/$(TARGET)/release/hello
STATIC_ARM64 := $(OUT)/$(ARM64)/release/hello
IMAGE   ?= nytimes/hello
# The image's base: empty, the Dockerfile's (Alpine, pinned by digest); IMAGE_BASE=scratch needs
# no registry at all.
IMAGE_BASE ?=
BASE_ARG := $(if $(IMAGE_BASE),--build-arg BASE=$(IMAGE_BASE))
SHELL   := /bin/bash
# Panic locations name the dependencies' source files under $CARGO_HOME: written as /cargo, the
# binary names no build machine's paths, and its bytes do not depend on them. Only for the
# static targets (their own flags), so host builds and build scripts keep cargo's cache.
CARGO_HOME ?= $(HOME)/.cargo
REMAP   := --remap-path-prefix=$(CARGO_HOME)=/cargo --remap-path-prefix=$(abspath $(OUT))=/target \
           --remap-path-prefix=$(CURDIR)=/hello
export CARGO_TARGET_X86_64_UNKNOWN_LINUX_MUSL_RUSTFLAGS := $(REMAP)
export CARGO_TARGET_AARCH64_UNKNOWN_LINUX_MUSL_RUSTFLAGS := $(REMAP)
# Image timestamps from the commit, not the clock (podman --timestamp; BuildKit reads the arg).
SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
export SOURCE_DATE_EPOCH

.PHONY: all static static-arm64 image image-multiarch run test test-arm64 reproducible bench soak fuzz resilience deploy clean

all: static image

static:
	@. scripts/lib.sh && ensure_musl_target
	cargo build --release --locked --target $(TARGET)
	@ls -l $(STATIC) | awk '{print "static binary: " $$5 " bytes"}'

# The Graviton binary, cross-built.
static-arm64:
	@. scripts/lib.sh && ensure_arm64_target
	cargo build --release --locked --target $(ARM64)
	@ls -l $(STATIC_ARM64) | awk '{print "static arm64 binary: " $$5 " bytes"}'

image: static
	@tool=$$(. scripts/lib.sh && container_tool); \
	case "$$tool" in \
	  podman) podman build --format docker --timestamp "$$SOURCE_DATE_EPOCH" $(BASE_ARG) -t $(IMAGE) . ;; \
	  docker) docker build --build-arg SOURCE_DATE_EPOCH $(BASE_ARG) -t $(IMAGE) . ;; \
	  *) echo "no container builder here (docker engine or podman): skipped the image" ;; \
	esac

# One image name for both architectures (a manifest list), with podman. No RUN step, so no
# emulation is needed to build the arm64 half. Docker's format, as everywhere podman builds
# here: the OCI format has no HEALTHCHECK, and podman drops it. Where no registry can be
# reached: make image-multiarch IMAGE_BASE=scratch.
image-multiarch: static static-arm64
	@. scripts/lib.sh && need_packages podman:podman
	podman manifest rm $(IMAGE) >/dev/null 2>&1 || true
	podman manifest create $(IMAGE)
	podman build --format docker --timestamp "$$SOURCE_DATE_EPOCH" $(BASE_ARG) --platform linux/amd64 \
	  --build-arg BINARY=target/$(TARGET)/release/hello --manifest $(IMAGE) .
	podman build --format docker --timestamp "$$SOURCE_DATE_EPOCH" $(BASE_ARG) --platform linux/arm64 \
	  --build-arg BINARY=target/$(ARM64)/release/hello --manifest $(IMAGE) .
	podman manifest inspect $(IMAGE) | grep -E '"architecture"'

# Local mode unless told otherwise: a laptop has no instance metadata to ask.
run:
	DEBUG=$${DEBUG:-true} cargo run --release

test:
	scripts/test.sh

# The API suite against the arm64 binary, run by qemu's user-mode emulator, through the
# harness's HELLO_BIN. The harness starts the binary with a cleared environment, so the
# wrapper names the binary itself; exec, so that signals reach the emulated process. Then the
# arm64 image, FROM scratch (no registry), as a Graviton release builds it: it must build from
# the context .dockerignore leaves, and say arm64.
QEMU_HELLO := $(abspath $(OUT))/hello-arm64-qemu
ARM64_TEST_IMAGE := localhost/hello-test:arm64
test-arm64: static-arm64
	@. scripts/lib.sh && need_packages qemu-aarch64-static:qemu-user-static podman:podman
	printf '#!/bin/sh\nexec qemu-aarch64-static %s "$$@"\n' '$(abspath $(STATIC_ARM64))' > $(QEMU_HELLO)
	chmod +x $(QEMU_HELLO)
	HELLO_BIN=$(QEMU_HELLO) cargo test --test api
	podman build --format docker --timestamp "$$SOURCE_DATE_EPOCH" --build-arg BASE=scratch \
	  --platform linux/arm64 --build-arg BINARY=target/$(ARM64)/release/hello -t $(ARM64_TEST_IMAGE) .
	@arch=$$(podman image inspect --format '{{.Architecture}}' $(ARM64_TEST_IMAGE)); \
	podman rmi -f $(ARM64_TEST_IMAGE) >/dev/null; \
	echo "arm64 image architecture: $$arch"; \
	[ "$$arch" = arm64 ] || { echo "the arm64 image says $$arch"; exit 1; }

# Two clean builds of the static binary, in two directories, must be byte-identical.
reproducible:
	scripts/reproducible.sh

bench:
	scripts/bench.sh

# Memory under bursts of mixed traffic: RSS and threads after each burst (scripts/soak.sh).
soak:
	scripts/soak.sh

deploy:
	scripts/deploy.sh

# The resilience suite: the release binary under failure; one table row per scenario. A failed
# scenario fails the target (pipefail: the filter does not hide cargo's exit status); the whole
# output is kept in $(OUT)/resilience.log. RESILIENCE=<name filter> runs only the scenarios it names
# (e.g. RESILIENCE=u4_).
resilience:
	@. scripts/lib.sh && need_packages redis-server:redis-server slowhttptest:slowhttptest nginx:nginx-light prlimit:util-linux && ensure_venv .venv tests/requirements.txt
	@mkdir -p $(OUT)
	set -o pipefail; cargo test --release --test resilience -- --ignored --nocapture --test-threads 1 $(RESILIENCE) 2>&1 \
	  | tee $(OUT)/resilience.log | grep -E '^\||test result|panicked|assert|FAILED|failures:'

# Coverage-guided fuzzing of every parser (cargo-fuzz on stable, `--sanitizer none`), then the
# property tests with many cases. Not in `make test`: building libFuzzer and the instrumented
# crate alone takes longer than the two minutes CI can spare.
FUZZ_SECONDS ?= 30
FUZZ_CASES ?= 20000
fuzz:
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_CASES=$(FUZZ_CASES) scripts/fuzz.sh

clean:
	cargo clean
