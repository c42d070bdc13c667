# Shared helpers for the project's scripts: install what a step needs from Debian's packages
# when it is missing, as root or through sudo.

as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

apt_updated=""
# need_packages CMD:PACKAGE ... — installs PACKAGE when CMD is not on PATH.
need_packages() {
  local missing=()
  local pair
  for pair in "$@"; do
    command -v "${pair%%:*}" >/dev/null 2>&1 || missing+=("${pair#*:}")
  done
  [ ${#missing[@]} -eq 0 ] || install_packages "${missing[@]}"
}

# install_packages PACKAGE ... — from Debian's archive, the package lists read once a run.
install_packages() {
  echo "==> installing $*"
  if [ -z "$apt_updated" ]; then
    as_root apt-get update -qq
    apt_updated=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
}

# ensure_venv DIR REQUIREMENTS: a Python venv with the pinned requirements, reinstalled when
# the requirements file changes.
ensure_venv() {
  local dir=$1 requirements=$2
  need_packages python3:python3
  # Debian ships venv's pip bootstrap apart from python3 itself.
  if ! python3 -c 'import ensurepip' >/dev/null 2>&1; then
    install_packages python3-venv
  fi
  if [ ! -x "$dir/bin/python" ]; then
    echo "==> creating $dir"
    python3 -m venv "$dir"
  fi
  if ! cmp -s "$requirements" "$dir/.installed-requirements" 2>/dev/null; then
    echo "==> installing $requirements into $dir"
    "$dir/bin/pip" install -q --disable-pip-version-check -r "$requirements"
    cp "$requirements" "$dir/.installed-requirements"
  fi
}

ensure_musl_target() {
  need_packages musl-gcc:musl-tools
  if ! rustup target list --installed 2>/dev/null | grep -q '^x86_64-unknown-linux-musl$'; then
    echo "==> adding the x86_64-unknown-linux-musl target"
    rustup target add x86_64-unknown-linux-musl
  fi
}

# The arm64 (Graviton) static binary's toolchain: the Rust target, and Debian's aarch64 GNU
# toolchain to link it and compile ring's C (.cargo/config.toml names them). The cross C headers
# (libc6-dev-arm64-cross) are only a Recommends of the compiler, which install_packages skips:
# ring's C includes <stdint.h>, which needs them, so they are asked for by a file they hold.
ensure_arm64_target() {
  need_packages aarch64-linux-gnu-gcc:gcc-aarch64-linux-gnu
  [ -e /usr/aarch64-linux-gnu/include/bits/libc-header-start.h ] || install_packages libc6-dev-arm64-cross
  if ! rustup target list --installed 2>/dev/null | grep -q '^aarch64-unknown-linux-musl$'; then
    echo "==> adding the aarch64-unknown-linux-musl target"
    rustup target add aarch64-unknown-linux-musl
  fi
}

# container_tool: prints the container builder to use, docker when its engine answers, else
# podman when installed, else nothing. One test for `make image` and scripts/deploy.sh: a docker
# client without an engine is no builder.
container_tool() {
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
    echo docker
  elif command -v podman >/dev/null 2>&1; then
    echo podman
  fi
}

# free_port: a TCP port on 127.0.0.1 that nothing listens on now.
free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

# wait_port PORT: waits (10 s at most) until something listens on 127.0.0.1:PORT.
wait_port() { for _ in $(seq 200); do (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0; sleep 0.05; done; echo "port $1 never opened"; exit 1; }

# scratch: a temporary folder in $work, and $pids for the processes a script starts; both are
# gone when the script exits, however it exits.
scratch() {
  work=$(mktemp -d)
  pids=()
  trap 'for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done; rm -rf "$work"' EXIT
}
