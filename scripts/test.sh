#!/usr/bin/env bash
# The test command (`make test`): installs what the tests need, then runs the checks and every
# test suite. Tests start their own redis-server and moto on free ports; a Redis you run is
# never touched.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_packages redis-server:redis-server openssl:openssl node:nodejs unshare:util-linux file:file curl:curl podman:podman runc:runc slirp4netns:slirp4netns
ensure_musl_target
ensure_venv .venv tests/requirements.txt
ensure_venv .venv-tools tests/tools-requirements.txt

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "==> the fuzz targets still build (make fuzz runs them; they drive the same core)"
cargo check --quiet --locked --manifest-path fuzz/Cargo.toml --bins

echo "==> no async runtime among normal dependencies"
# Every normal dependency, one per line. A failing `cargo tree` stops the script here (set -e);
# `cargo tree -i tokio` is not used for the check because it fails when tokio is nowhere in
# the lock file, which would be a pass.
normal=$(cargo tree -e normal --prefix none --format '{p}')
if grep -E '^(tokio|async-std|smol) ' <<<"$normal"; then
  echo "an async runtime (above) is a normal dependency: cargo tree -e normal -i <name> shows why"
  exit 1
fi

echo "==> the static binary"
make --no-print-directory static
binary=target/x86_64-unknown-linux-musl/release/hello
# Printed from a variable, not through `tee /dev/stderr`: that reopens a redirected log and
# truncates it (`make test > log 2>&1` lost everything above this line).
kind=$(file "$binary")
echo "$kind"
grep -Eq 'static(-pie)? linked' <<<"$kind" || { echo "not statically linked"; exit 1; }
echo "static binary size: $(stat -c %s "$binary") bytes"

echo "==> hadolint Dockerfile"
.venv-tools/bin/hadolint Dockerfile

echo "==> terraform fmt and checkov over deployment/"
# A CLI configuration that names a missing file makes every terraform command warn; none is needed.
if [ -n "${TF_CLI_CONFIG_FILE:-}" ] && [ ! -e "$TF_CLI_CONFIG_FILE" ]; then unset TF_CLI_CONFIG_FILE; fi
# Also needed by tests/deployment.rs, which renders the dashboard with it (offline: no provider).
command -v terraform >/dev/null 2>&1 \
  || { echo "terraform is needed: https://developer.hashicorp.com/terraform/install" >&2; exit 1; }
terraform fmt -check -recursive deployment
.venv-tools/bin/checkov --skip-download --directory deployment --framework terraform --quiet --compact

echo "==> terraform validate over deployment/ (every store's resources: validate checks all branches)"
# It needs the providers' schemas, so a provider registry or mirror; where none answers (this
# repository's own build machine), it says so and goes on: CI, with the registry, validates.
validate=$(mktemp -d)
cp -r deployment/. "$validate/"
rm -rf "$validate/.terraform" "$validate/bootstrap"
if init_out=$(terraform -chdir="$validate" init -backend=false -input=false -no-color 2>&1); then
  terraform -chdir="$validate" validate -no-color
else
  echo "terraform validate: skipped, the providers could not be installed: $(grep -m1 -E 'Error|error' <<<"$init_out")"
fi
rm -rf "$validate"

echo "==> cargo test"
# The client fixture notes down every kind of answer the suites see (tests/common/client.rs);
# the notes of an earlier run would vouch for answers this one never saw.
rm -rf "${CARGO_TARGET_DIR:-target}/tmp/observed"
cargo test --all-targets

echo "==> every answer the suites saw is in docs/openapi.yaml, and everything there was seen"
cargo test --test openapi -- --ignored --exact observed_answers_and_the_spec_agree

echo "==> the API suite against the arm64 (Graviton) static binary, under qemu"
make --no-print-directory test-arm64
