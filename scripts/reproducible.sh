#!/usr/bin/env bash
# `make reproducible`: builds the static binary twice from nothing, in two different target
# directories, and compares the bytes. Same source, toolchain and lock file must give the same
# binary whatever directory it was built in (the Makefile remaps $CARGO_HOME, the checkout and
# the target directory out of it). Takes two full release builds.
set -euo pipefail
cd "$(dirname "$0")/.."

work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
for n in 1 2; do
  echo "==> clean build $n in $work/build-$n"
  CARGO_TARGET_DIR="$work/build-$n" make --no-print-directory static >/dev/null
done
a=$work/build-1/x86_64-unknown-linux-musl/release/hello
b=$work/build-2/x86_64-unknown-linux-musl/release/hello
sha256sum "$a" "$b"
if cmp -s "$a" "$b"; then
  echo "reproducible: the two builds are byte-identical ($(stat -c %s "$a") bytes)"
else
  echo "NOT reproducible: $(cmp -l "$a" "$b" | wc -l) bytes differ; first differences:"
  cmp -l "$a" "$b" | head -5
  # Paths of either build directory left in the binary, the usual cause.
  grep -c -a "$work" "$a" || true
  exit 1
fi
echo "==> no build machine paths"
if strings "$a" | grep -F -e "${CARGO_HOME:-$HOME/.cargo}" -e "$work" -e "$PWD" | head -5 | grep .; then
  echo "the binary names build machine paths (above)"
  exit 1
fi
echo "no \$CARGO_HOME, checkout or target directory path in the binary"
