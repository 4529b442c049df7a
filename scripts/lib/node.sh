# Sourced (not run) by the scripts that use the TypeScript toolchain in
# clients/typescript: scripts/generate, check-generated, lint-specs and
# ts-example. Expects the current directory to be the repository root.

TS_DIR=clients/typescript

# Fails with a clear message when node or npm is missing or node is too old
# (@redocly/cli needs Node.js >= 20.19).
require_node() {
    local tool
    for tool in node npm; do
        if ! command -v "$tool" >/dev/null 2>&1; then
            echo "error: '$tool' not found on PATH; $(basename "$0") needs Node.js >= 20.19 and npm" >&2
            exit 1
        fi
    done
    if ! node -e 'const [a, b] = process.versions.node.split(".").map(Number); process.exit(a > 20 || (a === 20 && b >= 19) ? 0 : 1)'; then
        echo "error: Node.js >= 20.19 required, found $(node --version)" >&2
        exit 1
    fi
}

# Installs clients/typescript/node_modules from the lockfile (npm ci) when it
# is missing or older than package-lock.json.
ensure_node_modules() {
    require_node
    if [[ ! -d $TS_DIR/node_modules ]] ||
        [[ $TS_DIR/package-lock.json -nt $TS_DIR/node_modules/.package-lock.json ]]; then
        echo "installing $TS_DIR/node_modules (npm ci)" >&2
        (cd "$TS_DIR" && npm ci --no-audit --no-fund >&2)
    fi
}
