# The runtime image: the static musl binary that `make` builds on the host, and nothing else.
#   make image                                   # Alpine base (a shell for operators)
#   docker build --build-arg BASE=scratch .      # nothing but the binary
#   make image-multiarch                         # x86_64 and arm64 under one name (podman)
# No RUN step: the image builds wherever the base can be had (scratch needs no pull at all), for
# either architecture without emulation.
# Alpine 3.23: its main repository is supported until 2027-11-01 (Alpine's releases.json); 3.20
# ended on 2026-04-01 and 3.21 on 2026-11-01. Pinned by digest, since a tag can be moved to
# other bytes: 3.23.6's multi-platform index (amd64 and arm64 among its platforms), as Docker's
# official-images record lists it (docker-library/repo-info, repos/alpine/remote/3.23.6.md).
# To bump it, see the README ("Base image").
ARG BASE=alpine:3.23.6@sha256:18125326968f1d09ef7b7fff2c06f300767daaf5c6591f735e2f058edfa10a16
FROM ${BASE}

# The binary for the image's architecture: x86_64 by default, or
# --platform linux/arm64 --build-arg BINARY=target/aarch64-unknown-linux-musl/release/hello.
ARG BINARY=target/x86_64-unknown-linux-musl/release/hello
COPY ${BINARY} /usr/local/bin/hello

# Numeric, so it works on scratch, which has no /etc/passwd.
USER 65534:65534
ENV PORT=8080
EXPOSE 8080

# `hello healthcheck` asks this container's /health and exits 0 or 1: no shell, no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/hello", "healthcheck"]

# Exec form: hello is PID 1 and handles SIGTERM itself (drain, then exit 0).
ENTRYPOINT ["/usr/local/bin/hello"]
