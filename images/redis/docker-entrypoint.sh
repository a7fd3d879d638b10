#!/bin/sh
# Entrypoint of the devstack-built redis image (Debian's redis-server), modelled on the official
# image's: `redis-server [config-file] [--option value ...]` runs as user redis in the foreground
# (exec'ed, PID 1) on top of devstack-defaults.conf (all interfaces, protected mode off, /data).
set -eu

# `docker run redis:7-alpine --appendonly yes` or `... /path/redis.conf` means redis-server.
first=${1:-}
if [ "${first#-}" != "$first" ] || [ "${first%.conf}" != "$first" ]; then
    set -- redis-server "$@"
fi

if [ "${1:-}" = redis-server ]; then
    shift
    defaults=/usr/local/etc/redis/devstack-defaults.conf
    case ${1:-} in
        -v|--version|-h|--help|--test-memory|--check-system) exec redis-server "$@" ;;
    esac
    if [ $# -gt 0 ] && [ "${1#-}" = "$1" ]; then
        # A config file: layer it on the defaults (command-line options become config lines).
        conf=$1; shift
        set -- redis-server "$defaults" --include "$conf" "$@"
    else
        set -- redis-server "$defaults" "$@"
    fi
    if [ "$(id -u)" = 0 ]; then
        find . \! -user redis -exec chown redis:redis '{}' + 2>/dev/null || true
        exec setpriv --reuid=redis --regid=redis --init-groups -- "$@"
    fi
fi

exec "$@"
