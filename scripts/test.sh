#!/usr/bin/env bash
# The test command (`make test`): installs what the tests need, then runs the checks and every
# test suite. Tests start their own redis-server on free ports; a Redis you run is not touched.
set -euo pipefail
cd "$(dirname "$0")/.."
. scripts/lib.sh

need_packages redis-server:redis-server unshare:util-linux
ensure_venv

echo "==> cargo fmt --check"
cargo fmt --all -- --check
echo "==> cargo clippy"
cargo clippy --all-targets --quiet -- -D warnings
echo "==> no async runtime among normal dependencies"
runtime=$(cargo tree -e normal -i tokio 2>/dev/null || true)
if [ -n "$runtime" ]; then
  echo "tokio is a normal dependency:"; echo "$runtime"; exit 1
fi
echo "==> cargo test"
cargo test --all-targets
