# Sourced (not run) by scripts/test: makes sure the store tests have a
# PostgreSQL server, and exports TRADING_TEST_POSTGRES (an administrator's
# URL; the tests create and drop a database of their own per test).
#
# * TRADING_TEST_POSTGRES already set: used as it is.
# * Else the server on 127.0.0.1:${TRADING_TEST_PG_PORT:-5432}, if
#   pg_isready says it answers (user postgres, trust authentication).
# * Else a throwaway cluster from the installed binaries
#   (/usr/lib/postgresql/*/bin): initdb in a temporary directory, trust
#   authentication, a free port on 127.0.0.1, run as the postgres user
#   when we are root (PostgreSQL refuses to run as root); stopped and
#   removed when the sourcing script exits.
# * No server and no binaries: fails, saying what to install or start.

pg_bindir() {
    local dir
    dir=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n 1)
    [[ -n $dir ]] && echo "$dir"
}

pg_isready_cmd() {
    if command -v pg_isready >/dev/null 2>&1; then
        echo pg_isready
    elif [[ -n $(pg_bindir) ]]; then
        echo "$(pg_bindir)/pg_isready"
    fi
}

start_throwaway_postgres() {
    local bindir port
    bindir=$(pg_bindir) || true
    if [[ -z $bindir || ! -x $bindir/initdb || ! -x $bindir/pg_ctl ]]; then
        echo "error: no PostgreSQL server answers on 127.0.0.1:$PG_TEST_PORT and no PostgreSQL" \
            "binaries are installed (/usr/lib/postgresql/*/bin/initdb) to start a throwaway one;" \
            "install PostgreSQL (e.g. apt-get install postgresql), start a server on" \
            "127.0.0.1:5432 (user postgres, trust), or set TRADING_TEST_POSTGRES to an" \
            "administrator's URL" >&2
        exit 1
    fi
    PG_TEST_DIR=$(mktemp -d "${TMPDIR:-/tmp}/trading-pro-postgres.XXXXXX")
    port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    PG_TEST_AS=()
    if [[ $(id -u) == 0 ]]; then
        if ! id -u postgres >/dev/null 2>&1; then
            useradd --system --no-create-home --shell /usr/sbin/nologin postgres
        fi
        chown postgres "$PG_TEST_DIR"
        PG_TEST_AS=(runuser -u postgres --)
    fi
    PG_TEST_CTL="$bindir/pg_ctl"
    echo "no PostgreSQL on 127.0.0.1:$PG_TEST_PORT: starting a throwaway cluster on port $port ($PG_TEST_DIR)" >&2
    "${PG_TEST_AS[@]}" "$bindir/initdb" --pgdata "$PG_TEST_DIR/data" --username postgres \
        --auth trust --no-sync >"$PG_TEST_DIR/initdb.log" 2>&1 ||
        { cat "$PG_TEST_DIR/initdb.log" >&2; exit 1; }
    trap stop_throwaway_postgres EXIT
    # Tests run in parallel, each with servers holding a few connections.
    "${PG_TEST_AS[@]}" "$PG_TEST_CTL" --pgdata "$PG_TEST_DIR/data" --log "$PG_TEST_DIR/server.log" \
        --wait --options "-c listen_addresses=127.0.0.1 -c port=$port -c unix_socket_directories=$PG_TEST_DIR -c max_connections=400" \
        start >/dev/null ||
        { cat "$PG_TEST_DIR/server.log" >&2; exit 1; }
    export TRADING_TEST_POSTGRES="postgres://postgres@127.0.0.1:$port/postgres"
}

stop_throwaway_postgres() {
    "${PG_TEST_AS[@]}" "$PG_TEST_CTL" --pgdata "$PG_TEST_DIR/data" --mode immediate stop >/dev/null 2>&1 || true
    rm -rf "$PG_TEST_DIR"
}

PG_TEST_PORT=${TRADING_TEST_PG_PORT:-5432}
if [[ -z ${TRADING_TEST_POSTGRES:-} ]]; then
    isready=$(pg_isready_cmd)
    if [[ -n $isready ]] && "$isready" --quiet --host 127.0.0.1 --port "$PG_TEST_PORT"; then
        export TRADING_TEST_POSTGRES="postgres://postgres@127.0.0.1:$PG_TEST_PORT/postgres"
    else
        start_throwaway_postgres
    fi
fi
echo "PostgreSQL for the store tests: $TRADING_TEST_POSTGRES" >&2
