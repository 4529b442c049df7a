# Sourced (not run) by scripts/test: makes sure the deployment tests
# (crates/server/tests/deployment.rs) have a real nginx and HAProxy, the load
# balancers docs/DEPLOYMENT.md configures.
#
# * Found on the PATH or in /usr/sbin: used as they are.
# * Else installed from Debian's packages (nginx-light, haproxy) with
#   apt-get when we are root; the packages' own services are not started
#   (the tests start each proxy on a free port with a configuration of
#   their own).
# * Neither: fails, saying what to install.

missing_proxies=()
for tool in nginx:nginx-light haproxy:haproxy; do
    name=${tool%%:*}
    if ! command -v "$name" >/dev/null 2>&1 && [[ ! -x /usr/sbin/$name ]]; then
        missing_proxies+=("${tool#*:}")
    fi
done
if ((${#missing_proxies[@]} > 0)) && [[ $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    echo "installing ${missing_proxies[*]} for the deployment tests" >&2
    # policy-rc.d 101: the packages' services stay stopped.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_proxies[@]}" >/dev/null 2>&1 ||
        { apt-get update -qq >/dev/null 2>&1 &&
            DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing_proxies[@]}" >/dev/null; } || true
    rm -f /usr/sbin/policy-rc.d
fi
for name in nginx haproxy; do
    if ! command -v "$name" >/dev/null 2>&1 && [[ ! -x /usr/sbin/$name ]]; then
        echo "error: the deployment tests need $name: install Debian's nginx-light and haproxy" \
            "packages (apt-get install nginx-light haproxy)" >&2
        exit 1
    fi
done
unset missing_proxies tool name
