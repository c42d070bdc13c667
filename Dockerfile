# The runtime image: the static musl binary that `make` builds on the host, and nothing else.
#   make image                                   # Alpine base (a shell for operators)
#   docker build --build-arg BASE=scratch .      # nothing but the binary
# No RUN step: the image builds wherever the base can be had (scratch needs no pull at all).
ARG BASE=alpine:3.20
FROM ${BASE}

COPY target/x86_64-unknown-linux-musl/release/hello /usr/local/bin/hello

# Numeric, so it works on scratch, which has no /etc/passwd.
USER 65534:65534
ENV PORT=8080
EXPOSE 8080

# `hello healthcheck` asks this container's /health and exits 0 or 1: no shell, no curl.
HEALTHCHECK --interval=15s --timeout=5s --start-period=5s --retries=3 \
  CMD ["/usr/local/bin/hello", "healthcheck"]

# Exec form: hello is PID 1 and handles SIGTERM itself (drain, then exit 0).
ENTRYPOINT ["/usr/local/bin/hello"]
