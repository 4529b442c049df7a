# Sourced (not run) by scripts/test: makes sure the browser tests (web/test)
# have Debian's headless-capable chromium, and exports CHROMIUM_BIN.
#
# * CHROMIUM_BIN already set: used as it is.
# * Else /usr/bin/chromium, installed with apt-get when it is missing and
#   we are root (npx playwright install cannot download browsers here).
# * Neither: fails, saying what to install.

if [[ -z ${CHROMIUM_BIN:-} ]]; then
    if [[ ! -x /usr/bin/chromium && $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "no /usr/bin/chromium: installing Debian's chromium for the browser tests" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 &&
                DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } || true
    fi
    if [[ ! -x /usr/bin/chromium ]]; then
        echo "error: the browser tests need Chromium at /usr/bin/chromium: install Debian's" \
            "'chromium' package (apt-get install chromium), or set CHROMIUM_BIN to a" \
            "Chromium or Chrome binary" >&2
        exit 1
    fi
    export CHROMIUM_BIN=/usr/bin/chromium
fi
