#!/usr/bin/env bash
# Entrypoint of the devstack-built postgres:15 image (Debian's postgresql-15), modelled on the
# official image's: honours POSTGRES_USER, POSTGRES_PASSWORD (or POSTGRES_PASSWORD_FILE),
# POSTGRES_DB, POSTGRES_INITDB_ARGS, POSTGRES_HOST_AUTH_METHOD and /docker-entrypoint-initdb.d.
# The cluster is initialised only when $PGDATA holds no database, so a named volume keeps its data
# across container recreation. The server is exec'ed in the foreground as PID 1 (STOPSIGNAL SIGINT).
set -Eeuo pipefail

log() { printf '%s devstack-postgres: %s\n' "$(date -u '+%Y-%m-%d %H:%M:%S UTC')" "$*"; }

# VAR_FILE support, as in the official image (for Docker secrets).
file_env() {
    local var=$1 file_var="${1}_FILE" def=${2:-}
    if [[ -n ${!var:-} && -n ${!file_var:-} ]]; then
        log "error: both $var and $file_var are set (they are exclusive)"; exit 1
    fi
    local val=$def
    if [[ -n ${!var:-} ]]; then val=${!var}; elif [[ -n ${!file_var:-} ]]; then val=$(<"${!file_var}"); fi
    export "$var"="$val"
    unset "$file_var"
}

export PGDATA=${PGDATA:-/var/lib/postgresql/data}

# `docker run postgres:15 -c shared_buffers=256MB` means `postgres -c ...`.
if [[ ${1:-} == -* ]]; then set -- postgres "$@"; fi
# Anything else than the server (psql, bash, ...) runs as asked, and so do `postgres --version` etc.
if [[ ${1:-} != postgres ]]; then exec "$@"; fi
for arg in "${@:2}"; do
    case $arg in -'?'|--help|--describe-config|-V|--version) exec "$@" ;; esac
done

# As root: own the data and socket directories, then re-run this script as user postgres.
if [[ $(id -u) == 0 ]]; then
    mkdir -p "$PGDATA" /var/run/postgresql
    find "$PGDATA" \! -user postgres -exec chown postgres:postgres '{}' +
    chmod 700 "$PGDATA"
    chown postgres:postgres /var/run/postgresql
    chmod 3777 /var/run/postgresql
    exec setpriv --reuid=postgres --regid=postgres --init-groups -- "${BASH_SOURCE[0]}" "$@"
fi

if [[ ! -s $PGDATA/PG_VERSION ]]; then
    file_env POSTGRES_PASSWORD
    file_env POSTGRES_USER postgres
    file_env POSTGRES_DB "$POSTGRES_USER"
    file_env POSTGRES_INITDB_ARGS
    auth=${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}
    if [[ -z $POSTGRES_PASSWORD && $auth != trust ]]; then
        cat >&2 <<'EOF'
Error: Database is uninitialized and superuser password is not specified.
       You must specify POSTGRES_PASSWORD to a non-empty value for the superuser,
       for example "-e POSTGRES_PASSWORD=password" on "docker run".
       (POSTGRES_HOST_AUTH_METHOD=trust allows connections without a password; not recommended.)
EOF
        exit 1
    fi

    log "initialising a new database cluster in $PGDATA (user '$POSTGRES_USER', database '$POSTGRES_DB', host auth $auth)"
    initdb_args=(--username="$POSTGRES_USER" --auth-local=trust --auth-host="$auth" --encoding=UTF8)
    pwfile=
    if [[ -n $POSTGRES_PASSWORD ]]; then
        pwfile=$(mktemp)
        printf '%s\n' "$POSTGRES_PASSWORD" >"$pwfile"
        initdb_args+=(--pwfile="$pwfile")
    fi
    if [[ -n ${POSTGRES_INITDB_WALDIR:-} ]]; then initdb_args+=(--waldir="$POSTGRES_INITDB_WALDIR"); fi
    # shellcheck disable=SC2086 # POSTGRES_INITDB_ARGS is a word list, as in the official image
    initdb "${initdb_args[@]}" $POSTGRES_INITDB_ARGS -D "$PGDATA"
    if [[ -n $pwfile ]]; then rm -f "$pwfile"; fi

    # Password logins over TCP from anywhere (the container's port is published on 127.0.0.1 by
    # devstack); local socket connections inside the container stay trusted, as in the official image.
    printf '\n# devstack: password authentication for TCP connections from anywhere\nhost all all all %s\n' "$auth" >>"$PGDATA/pg_hba.conf"
    printf "\n# devstack: listen on all interfaces of the container\nlisten_addresses = '*'\n" >>"$PGDATA/postgresql.conf"

    # A temporary server on the Unix socket only, to create the database and run init scripts.
    # Its log goes to a file (shown on failure) so that "ready to accept connections" is printed
    # only by the real server.
    tmplog=$(mktemp)
    # shellcheck disable=SC2154 # rc is assigned inside the trap
    trap 'rc=$?; log "initialisation failed; temporary server log:"; cat "$tmplog" >&2; exit $rc' ERR
    pg_ctl -D "$PGDATA" -o "-c listen_addresses='' -p 5432" -w -t 60 -l "$tmplog" start >/dev/null
    psql=(psql -v ON_ERROR_STOP=1 --no-psqlrc --no-password --username "$POSTGRES_USER" --dbname postgres)
    if [[ $POSTGRES_DB != postgres ]]; then
        "${psql[@]}" --quiet --set db="$POSTGRES_DB" <<<'CREATE DATABASE :"db";'
        log "created database '$POSTGRES_DB'"
    fi
    psql+=(--dbname "$POSTGRES_DB")
    shopt -s nullglob
    for f in /docker-entrypoint-initdb.d/*; do
        # shellcheck disable=SC1090 # user-supplied init scripts
        case $f in
            *.sh) if [[ -x $f ]]; then log "running $f"; "$f"; else log "sourcing $f"; . "$f"; fi ;;
            *.sql) log "running $f"; "${psql[@]}" -f "$f" ;;
            *.sql.gz) log "running $f"; gunzip -c "$f" | "${psql[@]}" ;;
            *.sql.xz) log "running $f"; xz -dc "$f" | "${psql[@]}" ;;
            *) log "ignoring $f" ;;
        esac
    done
    shopt -u nullglob
    pg_ctl -D "$PGDATA" -m fast -w stop >/dev/null
    trap - ERR
    rm -f "$tmplog"
    log "initialisation complete; starting PostgreSQL"
else
    log "PostgreSQL data directory $PGDATA already contains a database; skipping initialisation"
fi

unset POSTGRES_PASSWORD
exec "$@"
