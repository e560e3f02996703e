#!/usr/bin/env bash
# Makes sure the PostgreSQL server binaries (initdb, pg_ctl) are on this machine, for the tests that
# start a throwaway server (skill_pipeline_tests/postgres_server.py). `make test` runs it before
# pytest, so CI (.ci/run -> make test) installs PostgreSQL from the OS packages where it is missing.
# Where the binaries are present it only says so: no network, no root needed.
set -euo pipefail

find_bindir() {
    local dir
    for dir in /usr/lib/postgresql/*/bin /usr/pgsql-*/bin /usr/local/pgsql/bin; do
        if [ -x "$dir/initdb" ] && [ -x "$dir/pg_ctl" ]; then
            echo "$dir"
            return 0
        fi
    done
    if command -v initdb >/dev/null 2>&1 && command -v pg_ctl >/dev/null 2>&1; then
        dirname "$(command -v initdb)"
        return 0
    fi
    return 1
}

if dir="$(find_bindir)"; then
    echo "PostgreSQL binaries: $dir"
    exit 0
fi

echo "PostgreSQL server binaries (initdb, pg_ctl) not found: installing them from the OS packages" >&2

as_root() {
    if [ "$(id -u)" -eq 0 ]; then
        "$@"
    elif command -v sudo >/dev/null 2>&1; then
        sudo "$@"
    else
        echo "error: installing PostgreSQL needs root (or sudo); install the 'postgresql' package and rerun" >&2
        exit 1
    fi
}

if command -v apt-get >/dev/null 2>&1; then
    as_root apt-get update -qq
    # The package's post-install may try to start a cluster through the init system; in a container
    # without one that attempt fails harmlessly, the binaries are what the tests need.
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql
elif command -v dnf >/dev/null 2>&1; then
    as_root dnf install -y -q postgresql-server
elif command -v yum >/dev/null 2>&1; then
    as_root yum install -y -q postgresql-server
elif command -v apk >/dev/null 2>&1; then
    as_root apk add --no-cache postgresql
elif command -v brew >/dev/null 2>&1; then
    brew install postgresql
else
    echo "error: no known package manager (apt-get, dnf, yum, apk, brew); install PostgreSQL and rerun" >&2
    exit 1
fi

if ! dir="$(find_bindir)"; then
    echo "error: PostgreSQL was installed but initdb/pg_ctl are still not found" >&2
    exit 1
fi
echo "PostgreSQL binaries: $dir"

# As root, the tests run the server as the 'postgres' system user (PostgreSQL refuses root).
if [ "$(id -u)" -eq 0 ] && ! id postgres >/dev/null 2>&1; then
    echo "error: running as root and the package created no 'postgres' user to run the server as" >&2
    exit 1
fi
