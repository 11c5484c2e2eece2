# Shared by scripts/devnet and scripts/test: install what a machine with only the Rust
# toolchain is missing, then build the contracts.

ensure_wasm_target() {
    local installed
    installed=$(rustup target list --installed 2>/dev/null || true)
    if ! grep -qx wasm32-unknown-unknown <<<"$installed"; then
        echo "==> installing the wasm32-unknown-unknown target (contracts compile to it)"
        rustup target add wasm32-unknown-unknown
    fi
    if ! grep -qx wasm32-wasip2 <<<"$installed"; then
        echo "==> installing the wasm32-wasip2 target (device plugins compile to it)"
        rustup target add wasm32-wasip2
    fi
}

ensure_cargo_component() {
    if ! cargo component --version >/dev/null 2>&1; then
        echo "==> installing cargo-component (a test deploys a contract built with it)"
        cargo install cargo-component --locked --version 0.21.1
    fi
}

build_contracts() {
    echo "==> building contracts into target/contracts, device plugins into target/device-plugins"
    cargo run -q -p gridledger-build
}

# The web app's browser tests: Debian's chromium, and the app's pinned npm packages.
ensure_browser() {
    if ! command -v chromium >/dev/null 2>&1; then
        echo "==> installing Debian's chromium (the web app's browser tests)"
        local sudo=""
        [ "$(id -u)" = 0 ] || sudo=sudo
        $sudo apt-get update -qq
        $sudo apt-get install -y -qq chromium >/dev/null
    fi
    # Every pinned package present (a checkout that added one since the last `npm ci` gets it).
    local m=host/api/web/node_modules
    if [ ! -d $m/playwright-core ] || [ ! -d $m/esbuild ] || [ ! -d $m/@noble/curves ]; then
        echo "==> installing the web app's pinned npm packages (npm ci)"
        (cd host/api/web && npm ci --silent --no-audit --no-fund)
    fi
    echo "==> checking the vendored uPlot and BLS check against the lockfile"
    node host/api/web/sync-vendor.mjs --check
}
