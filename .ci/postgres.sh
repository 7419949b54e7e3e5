# Sourced by .ci/run: makes sure a PostgreSQL answers for the store tests and exports
# NEXUS_TEST_DATABASE_URL (the tests create and drop a database per test on it).
#
# - NEXUS_TEST_DATABASE_URL already set: used as given (the tests fail, naming it, if it is away).
# - Otherwise the server at 127.0.0.1:${NEXUS_CI_PG_PORT:-5432} when pg_isready says it answers.
# - Otherwise a throwaway cluster: Debian's postgresql is installed when missing, initdb into a
#   temporary directory as the postgres user, started on ${NEXUS_CI_PG_THROWAWAY_PORT:-5433}
#   (fsync on, socket in that directory, ssl on with a self-signed certificate made there by
#   openssl for localhost), stopped and deleted when the calling script exits (through its
#   exit hooks).
#
# The TLS test (tests/integration/store_pg.rs) needs ssl on: Debian's server has it on with its
# snakeoil certificate; a server with ssl off makes that test fail, naming the setting.
# The PostgreSQL tests never skip: without a server they fail.

# The newest Debian PostgreSQL server binaries, or nothing.
pg_bin_dir() {
    find /usr/lib/postgresql -mindepth 2 -maxdepth 2 -name bin -type d 2>/dev/null | sort -V | tail -n 1
}

pg_install() {
    echo "PostgreSQL server binaries are missing; installing Debian's postgresql"
    if ! { apt-get update -qq &&
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql; }; then
        echo "::error:: cannot install postgresql (apt-get install postgresql failed); the" \
            "PostgreSQL store tests cannot run" >&2
        return 1
    fi
}

# Runs a command as the postgres user when we are root (the server refuses to run as root).
pg_as_owner() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

ci_postgres_up() {
    if [ -n "${NEXUS_TEST_DATABASE_URL:-}" ]; then
        echo "using NEXUS_TEST_DATABASE_URL as given"
        return 0
    fi
    local port=${NEXUS_CI_PG_PORT:-5432}
    if command -v pg_isready >/dev/null 2>&1 && pg_isready -q -h 127.0.0.1 -p "$port"; then
        export NEXUS_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$port/postgres"
        echo "using the PostgreSQL that answers at 127.0.0.1:$port"
        return 0
    fi
    echo "no PostgreSQL answers at 127.0.0.1:$port; starting a throwaway cluster"
    local bin
    bin=$(pg_bin_dir)
    if [ -z "$bin" ] || ! command -v pg_isready >/dev/null 2>&1; then
        pg_install || return 1
        bin=$(pg_bin_dir)
    fi
    if [ -z "$bin" ]; then
        echo "::error:: no PostgreSQL server binaries under /usr/lib/postgresql" >&2
        return 1
    fi
    if [ "$(id -u)" = 0 ] && ! id postgres >/dev/null 2>&1; then
        useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    fi
    local throwaway=${NEXUS_CI_PG_THROWAWAY_PORT:-5433}
    local dir
    dir=$(mktemp -d "${TMPDIR:-/tmp}/nexus-ci-pg.XXXXXX")
    [ "$(id -u)" = 0 ] && chown postgres "$dir"
    # Stop and delete it when the calling script exits, whatever happens.
    exit_hooks+=("pg_as_owner '$bin/pg_ctl' -D '$dir/data' -m immediate stop >/dev/null 2>&1; rm -rf '$dir'")
    pg_as_owner "$bin/initdb" -D "$dir/data" -U postgres --auth=trust -E UTF8 >"$dir/initdb.log" 2>&1 || {
        cat "$dir/initdb.log" >&2
        return 1
    }
    # A certificate for TLS (the store's TLS test checks sslmode against it): self-signed, for
    # a host name, so verify-full to 127.0.0.1 is refused by name and verify-ca accepts it; not
    # a CA (as Debian's snakeoil), which rustls would refuse as a server's certificate.
    if ! command -v openssl >/dev/null 2>&1; then
        echo "::error:: openssl is missing; it makes the throwaway cluster's TLS certificate" >&2
        return 1
    fi
    if ! openssl req -new -x509 -days 7 -nodes -newkey rsa:2048 -subj "/CN=localhost" \
        -addext "basicConstraints=critical,CA:FALSE" -addext "subjectAltName=DNS:localhost" \
        -keyout "$dir/server.key" -out "$dir/server.crt" >"$dir/openssl.log" 2>&1; then
        cat "$dir/openssl.log" >&2
        return 1
    fi
    chmod 600 "$dir/server.key"
    chmod 644 "$dir/server.crt"
    [ "$(id -u)" = 0 ] && chown postgres "$dir/server.key" "$dir/server.crt"
    if ! pg_as_owner "$bin/pg_ctl" -D "$dir/data" -l "$dir/server.log" -w -t 60 \
        -o "-p $throwaway -k $dir -c listen_addresses=127.0.0.1 -c fsync=on -c max_connections=200 -c ssl=on -c ssl_cert_file=$dir/server.crt -c ssl_key_file=$dir/server.key" start; then
        cat "$dir/server.log" >&2
        return 1
    fi
    export NEXUS_TEST_DATABASE_URL="postgres://postgres@127.0.0.1:$throwaway/postgres"
    pg_isready -h 127.0.0.1 -p "$throwaway"
}
