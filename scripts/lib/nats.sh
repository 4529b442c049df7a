# Sourced (not run) by scripts/test: makes sure the multi-node tests have a
# NATS server with JetStream, and exports TRADING_TEST_NATS (nats://IP:PORT;
# every test uses a stream of its own, and a test that stops NATS starts a
# server of its own from the installed binary).
#
# * TRADING_TEST_NATS already set: used as it is.
# * Else the server on 127.0.0.1:${TRADING_TEST_NATS_PORT:-4222}, if it
#   answers with JetStream on.
# * Else a throwaway server: nats-server (installed with apt-get when it is
#   missing and we are root) with JetStream in a temporary directory, on a
#   free port; stopped and removed when the sourcing script exits.
# * Neither: fails, saying what to install or start.

# The INFO line a NATS server greets with, if one answers on $1.
nats_info() {
    python3 - "$1" <<'PY' 2>/dev/null
import socket, sys
try:
    s = socket.create_connection(("127.0.0.1", int(sys.argv[1])), timeout=2)
    print(s.recv(4096).decode(errors="replace").splitlines()[0])
except OSError:
    pass
PY
}

nats_binary() {
    command -v nats-server 2>/dev/null || { [[ -x /usr/sbin/nats-server ]] && echo /usr/sbin/nats-server; }
}

start_throwaway_nats() {
    local bin port
    bin=$(nats_binary) || true
    if [[ -z $bin && $(id -u) == 0 ]] && command -v apt-get >/dev/null 2>&1; then
        echo "no NATS server and no nats-server binary: installing nats-server" >&2
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null 2>&1 ||
            { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq nats-server >/dev/null; } || true
        bin=$(nats_binary) || true
    fi
    if [[ -z $bin ]]; then
        echo "error: no NATS server with JetStream answers on 127.0.0.1:$NATS_TEST_PORT and" \
            "nats-server is not installed to start a throwaway one; install it (apt-get install" \
            "nats-server), start one (nats-server -js), or set TRADING_TEST_NATS=nats://IP:PORT" >&2
        exit 1
    fi
    NATS_TEST_DIR=$(mktemp -d "${TMPDIR:-/tmp}/trading-pro-nats.XXXXXX")
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    echo "no NATS on 127.0.0.1:$NATS_TEST_PORT: starting a throwaway server on port $port ($NATS_TEST_DIR)" >&2
    "$bin" -a 127.0.0.1 -p "$port" -js -sd "$NATS_TEST_DIR/data" >"$NATS_TEST_DIR/server.log" 2>&1 &
    NATS_TEST_PID=$!
    trap 'stop_throwaway_nats; stop_throwaway_postgres_if_any' EXIT
    for _ in $(seq 100); do
        [[ $(nats_info "$port") == *'"jetstream":true'* ]] && break
        sleep 0.1
    done
    if [[ $(nats_info "$port") != *'"jetstream":true'* ]]; then
        cat "$NATS_TEST_DIR/server.log" >&2
        echo "error: the throwaway nats-server did not start" >&2
        exit 1
    fi
    export TRADING_TEST_NATS="nats://127.0.0.1:$port"
}

stop_throwaway_nats() {
    kill "$NATS_TEST_PID" 2>/dev/null || true
    wait "$NATS_TEST_PID" 2>/dev/null || true
    rm -rf "$NATS_TEST_DIR"
}

# postgres.sh may have set its own EXIT trap; keep it when we add ours.
stop_throwaway_postgres_if_any() {
    if [[ -n ${PG_TEST_DIR:-} ]]; then
        stop_throwaway_postgres
    fi
}

NATS_TEST_PORT=${TRADING_TEST_NATS_PORT:-4222}
if [[ -z ${TRADING_TEST_NATS:-} ]]; then
    info=$(nats_info "$NATS_TEST_PORT")
    if [[ $info == *'"jetstream":true'* ]]; then
        export TRADING_TEST_NATS="nats://127.0.0.1:$NATS_TEST_PORT"
    elif [[ -n $info ]]; then
        echo "error: the NATS server on 127.0.0.1:$NATS_TEST_PORT runs without JetStream (start it" \
            "with -js), or set TRADING_TEST_NATS=nats://IP:PORT of one that has it" >&2
        exit 1
    else
        start_throwaway_nats
    fi
fi
echo "NATS for the multi-node tests: $TRADING_TEST_NATS" >&2
