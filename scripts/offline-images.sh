#!/usr/bin/env bash
# Build local Docker images for the reference stack's infrastructure, without any image registry.
#
# Our machines reach Debian's package mirrors, crates.io and PyPI, but no container registry, so
# nothing can be pulled. This script builds every infrastructure image of stack.yaml locally, under
# exactly the tag the stack file uses, so the stack runs unchanged:
#
#   name       tag                                what it really is
#   postgres   postgres:15                        Debian bookworm postgresql-15, official-image-style entrypoint
#   redis      redis:7-alpine                     Debian bookworm redis-server 7.0 (not Alpine)
#   zookeeper  confluentinc/cp-zookeeper:latest   Debian bookworm zookeeper 3.8 on default-jre-headless
#   kafka      confluentinc/cp-kafka:latest       STAND-IN: tansu (Kafka-protocol broker from crates.io)
#   qdrant     qdrant/qdrant:latest               STAND-IN: minimal Qdrant REST subset in Python stdlib
#   python     python:3.11-slim                   Debian bookworm python3.11 + pip + venv (pip allowed system-wide)
#   node       node:20-alpine                     STAND-IN: Debian bookworm nodejs (Node 18) + npm, on Debian
#
# python and node are base images for the app Dockerfiles of a Compose file (`build:`).
#
# All of them are built FROM devstack/debian-base:bookworm, a `debootstrap --variant=minbase`
# root filesystem imported with `docker import`. Every image carries the labels
# org.devstack.stand-in=true|false, org.devstack.description=..., devstack.built-by and
# devstack.input-hash (a hash of its build inputs: an image is rebuilt only when they change).
#
# Slow things are cached in ${DEVSTACK_CACHE:-$HOME/.cache/devstack}: the rootfs tarball and the
# tansu binary (a 10-25 minute cargo build on 2 cores). A run with everything up to date takes seconds.
#
# Usage: scripts/offline-images.sh [options] [IMAGE...]        (IMAGE: see --list; default: all)
#
# stack.yaml runs two of its steps as tasks (so `devstack up` alone prepares a fresh machine and
# builds the images itself from images/*/Dockerfile): `--base` (the base image) and
# `--tansu DEST` (the Kafka stand-in's broker binary, copied into the kafka image's context).
set -euo pipefail

usage() {
    cat <<'EOF'
Usage: scripts/offline-images.sh [options] [IMAGE...]

Builds local images for the stack's infrastructure (no registry needed).
IMAGE is one or more of: postgres redis zookeeper kafka qdrant python node (default: all).

Options:
  -f, --force          rebuild the selected images (and re-import the base image) even if up to date
      --refresh-cache  also redo the slow cached steps (debootstrap rootfs, tansu cargo build)
  -l, --list           show each image, its tag and whether it is up to date, then exit
  -v, --verbose        stream build output instead of writing it to log files only
      --base           only make the base image devstack/debian-base:bookworm, then exit
      --check-base     exit 0 if the base image is up to date, 1 if not (changes nothing)
      --tansu DEST     only build (or take from the cache) the tansu binary and copy it to DEST
  -h, --help           this help

Environment:
  DEVSTACK_CACHE                   cache directory (default: $HOME/.cache/devstack)
  DEVSTACK_DEBIAN_MIRROR           Debian mirror (default: the one apt uses on this machine)
  DEVSTACK_DEBIAN_SECURITY_MIRROR  Debian security mirror (default: from apt's sources, if any)
  DEVSTACK_TANSU_VERSION           tansu crate version for the Kafka stand-in (default: 0.6.0)
  DEVSTACK_EXTRA_CA_DIR            *.crt files added to the python and node images' trust store, so
                                   that app builds FROM them (pip, npm) work behind a TLS-inspecting
                                   proxy (default: /usr/local/share/ca-certificates; empty: none)
EOF
}

# ---------------------------------------------------------------------------------------------
# Settings
# ---------------------------------------------------------------------------------------------
START_SECONDS=$SECONDS
SCRIPT_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO_ROOT=$(cd "$SCRIPT_DIR/.." && pwd)
IMAGES_DIR="$REPO_ROOT/images"
CACHE_DIR=${DEVSTACK_CACHE:-${HOME:-/root}/.cache/devstack}
LOG_DIR="$CACHE_DIR/build-logs"

SUITE=bookworm
VARIANT=minbase
BASE_TAG="devstack/debian-base:$SUITE"
BASE_RECIPE=2            # bump when the rootfs preparation below changes
IMAGE_RECIPE=1           # bump to invalidate every image built by an older version of this script
TANSU_VERSION=${DEVSTACK_TANSU_VERSION:-0.6.0}
# dynostore: tansu's default memory:// store; libsql: sqlite:// storage, which the image uses so
# that topics and committed offsets survive a container restart (dynostore alone offers no files).
TANSU_FEATURES=dynostore,libsql
BUILT_BY=scripts/offline-images.sh
# This machine's own CA certificates (a TLS-inspecting egress proxy's, say): the python and node
# images trust them too, or `pip install` / `npm install` in an app's Dockerfile fails.
EXTRA_CA_DIR=${DEVSTACK_EXTRA_CA_DIR-/usr/local/share/ca-certificates}
extra_cas() {   # the *.crt files, sorted
    [[ -n $EXTRA_CA_DIR && -d $EXTRA_CA_DIR ]] || return 0
    find "$EXTRA_CA_DIR" -maxdepth 1 -name '*.crt' -type f | LC_ALL=C sort
}

ALL_IMAGES=(postgres redis zookeeper kafka qdrant python node)
declare -A TAG=(
    [postgres]=postgres:15
    [redis]=redis:7-alpine
    [zookeeper]=confluentinc/cp-zookeeper:latest
    [kafka]=confluentinc/cp-kafka:latest
    [qdrant]=qdrant/qdrant:latest
    [python]=python:3.11-slim
    [node]=node:20-alpine
)

# The classic builder: the engine is 20.10 and buildx may be missing; FROM a local image needs no registry.
export DOCKER_BUILDKIT=0

# ---------------------------------------------------------------------------------------------
# Output helpers
# ---------------------------------------------------------------------------------------------
if [[ -t 1 && -z ${NO_COLOR:-} ]]; then
    B=$'\e[1m' G=$'\e[32m' Y=$'\e[33m' R=$'\e[31m' N=$'\e[0m'
else
    B='' G='' Y='' R='' N=''
fi
say()  { printf '%s==>%s %s\n' "$B" "$N" "$*"; }
info() { printf '    %s\n' "$*"; }
ok()   { printf '    %s%s%s\n' "$G" "$*" "$N"; }
warn() { printf '%swarning:%s %s\n' "$Y" "$N" "$*" >&2; }
die()  { printf '%serror:%s %s\n' "$R" "$N" "$*" >&2; exit 1; }
elapsed() { local s=$(( SECONDS - $1 )); printf '%dm%02ds' $(( s / 60 )) $(( s % 60 )); }

# Run a command with its output in a log file (and on the terminal with --verbose);
# on failure show the end of the log.
run_logged() {
    local log=$1; shift
    mkdir -p "$(dirname "$log")"
    local rc=0
    if (( VERBOSE )); then
        "$@" 2>&1 | tee "$log" || rc=$?
    else
        "$@" >"$log" 2>&1 || rc=$?
    fi
    if (( rc != 0 )); then
        printf '%s--- last 40 lines of %s ---%s\n' "$R" "$log" "$N" >&2
        tail -n 40 "$log" >&2 || true
        return "$rc"
    fi
}

# ---------------------------------------------------------------------------------------------
# Arguments
# ---------------------------------------------------------------------------------------------
FORCE=0 REFRESH=0 LIST=0 VERBOSE=0 MODE=images TANSU_DEST=
SELECTED=()
while (( $# )); do
    case $1 in
        -f|--force) FORCE=1 ;;
        --refresh-cache) REFRESH=1 FORCE=1 ;;
        -l|--list) LIST=1 ;;
        -v|--verbose) VERBOSE=1 ;;
        --base) MODE=base ;;
        --check-base) MODE=check-base ;;
        --tansu) MODE=tansu; shift; TANSU_DEST=${1:-}; [[ -n $TANSU_DEST ]] || die "--tansu needs a destination path" ;;
        -h|--help) usage; exit 0 ;;
        -*) usage >&2; die "unknown option: $1" ;;
        *)
            [[ -n ${TAG[$1]:-} ]] || die "unknown image '$1' (known: ${ALL_IMAGES[*]})"
            [[ " ${SELECTED[*]-} " == *" $1 "* ]] || SELECTED+=("$1") ;;
    esac
    shift
done
(( ${#SELECTED[@]} )) || SELECTED=("${ALL_IMAGES[@]}")

# ---------------------------------------------------------------------------------------------
# Debian mirrors: the ones apt uses on this machine unless overridden
# ---------------------------------------------------------------------------------------------
# Prints the first URI whose suite list contains exactly $1, from one-line and deb822 sources.
apt_uri_for_suite() {
    local suite=$1 f
    local files=()
    for f in /etc/apt/sources.list /etc/apt/sources.list.d/*; do   # in apt's order
        if [[ -r $f && ( $f == */sources.list || $f == *.list || $f == *.sources ) ]]; then files+=("$f"); fi
    done
    (( ${#files[@]} )) || return 0
    awk -v want="$suite" '
        function flush() { if (types ~ /(^|[ \t])deb([ \t]|$)/ && uris != "" && (" " suites " ") ~ (" " want " ")) { split(uris, u, /[ \t]+/); print u[1]; found = 1; exit } types = uris = suites = "" }
        FNR == 1 { flush() }
        FILENAME ~ /\.sources$/ {
            if ($0 ~ /^[ \t]*$/) { flush(); next }
            if ($0 ~ /^[ \t]*#/) next
            if (tolower($1) == "types:")  { $1 = ""; types = $0 }
            if (tolower($1) == "uris:")   { $1 = ""; sub(/^[ \t]+/, ""); uris = $0 }
            if (tolower($1) == "suites:") { $1 = ""; suites = $0; gsub(/[ \t]+/, " ", suites) }
            next
        }
        /^[ \t]*deb[ \t]/ {
            i = 2
            if ($i ~ /^\[/) { while ($i !~ /\]$/ && i < NF) i++; i++ }
            if ($(i + 1) == want) { print $i; found = 1; exit }
        }
        END { if (!found) flush() }
    ' "${files[@]}" 2>/dev/null | head -n 1
}
MIRROR=${DEVSTACK_DEBIAN_MIRROR:-$(apt_uri_for_suite "$SUITE")}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
MIRROR=${MIRROR%/}
SECURITY_MIRROR=${DEVSTACK_DEBIAN_SECURITY_MIRROR-$(apt_uri_for_suite "$SUITE-security")}
SECURITY_MIRROR=${SECURITY_MIRROR%/}

# ---------------------------------------------------------------------------------------------
# Input hashes
# ---------------------------------------------------------------------------------------------
BASE_HASH=$(printf '%s\n' "recipe=$BASE_RECIPE" "suite=$SUITE" "variant=$VARIANT" \
    "mirror=$MIRROR" "security=$SECURITY_MIRROR" | sha256sum | cut -c1-16)
ROOTFS_TAR="$CACHE_DIR/rootfs/debian-$SUITE-$VARIANT-$BASE_HASH.tar"
TANSU_ROOT="$CACHE_DIR/tansu-$TANSU_VERSION-${TANSU_FEATURES//,/-}"
TANSU_BIN="$TANSU_ROOT/bin/tansu"

# The hash of everything an image is built from: its folder under images/ (names, modes,
# contents), the base image's inputs, and for kafka the tansu version and features.
image_hash() {
    local name=$1 dir="$IMAGES_DIR/$1" f
    {
        echo "recipe=$IMAGE_RECIPE base=$BASE_HASH tag=${TAG[$name]}"
        [[ $name == kafka ]] && echo "tansu=$TANSU_VERSION features=$TANSU_FEATURES"
        if [[ $name == python || $name == node ]]; then
            while IFS= read -r f; do echo "ca $(basename "$f") $(sha256sum <"$f" | cut -d' ' -f1)"; done < <(extra_cas)
        fi
        while IFS= read -r -d '' f; do
            printf '%s %s %s\n' "${f#"$dir"/}" "$(stat -c %a "$f")" "$(sha256sum <"$f" | cut -d' ' -f1)"
        done < <(find "$dir" \( -name __pycache__ -o -name '*.pyc' -o -name '*~' -o -name '.*.swp' \) -prune \
                      -o -type f -print0 | LC_ALL=C sort -z)
    } | sha256sum | cut -c1-16
}

image_label() {   # image_label TAG LABEL -> value, or empty if no such image
    docker image inspect -f "{{ index .Config.Labels \"$2\" }}" "$1" 2>/dev/null || true
}

# `--check-base` first: every `devstack up` of the reference stack runs it before anything
# starts, so it asks the engine one thing. An engine that does not answer makes it say "not up
# to date", and the build that follows checks the preconditions below and says what is wrong.
if [[ $MODE == check-base ]]; then
    [[ $(image_label "$BASE_TAG" devstack.input-hash) == "$BASE_HASH" ]]
    exit
fi

# ---------------------------------------------------------------------------------------------
# Preconditions
# ---------------------------------------------------------------------------------------------
command -v docker >/dev/null || die "docker CLI not found: install docker.io (apt-get install docker.io)"
if ! docker_err=$(docker version --format '{{.Server.Version}}' 2>&1 >/dev/null); then
    die "cannot reach the Docker engine (${DOCKER_HOST:-unix:///var/run/docker.sock}): $docker_err
       Start it (e.g. 'service docker start' or 'dockerd &') or set DOCKER_HOST."
fi
for name in "${SELECTED[@]}"; do
    [[ -f $IMAGES_DIR/$name/Dockerfile ]] || die "missing $IMAGES_DIR/$name/Dockerfile"
done

# ---------------------------------------------------------------------------------------------
# The single steps stack.yaml runs as tasks
# ---------------------------------------------------------------------------------------------

# ---------------------------------------------------------------------------------------------
# What is up to date?
# ---------------------------------------------------------------------------------------------
declare -A WANT_HASH STATUS
TODO=()
if [[ $MODE == images ]]; then
for name in "${SELECTED[@]}"; do
    WANT_HASH[$name]=$(image_hash "$name")
    have=$(image_label "${TAG[$name]}" devstack.input-hash)
    if [[ -z $have ]]; then
        if docker image inspect "${TAG[$name]}" >/dev/null 2>&1; then
            STATUS[$name]="present, not built by this script"
        else
            STATUS[$name]=missing
        fi
    elif [[ $have == "${WANT_HASH[$name]}" ]]; then
        STATUS[$name]="up to date"
    else
        STATUS[$name]="out of date"
    fi
    if (( FORCE )); then
        TODO+=("$name")
    elif [[ ${STATUS[$name]} == "present, not built by this script" ]]; then
        warn "${TAG[$name]} exists but was not built by this script (the real image?): leaving it alone (--force replaces it)"
    elif [[ ${STATUS[$name]} != "up to date" ]]; then
        TODO+=("$name")
    fi
done

if (( LIST )); then
    printf '%-10s %-34s %-10s %s\n' IMAGE TAG STAND-IN STATUS
    for name in "${SELECTED[@]}"; do
        stand_in=$(grep -o 'org.devstack.stand-in="[a-z]*"' "$IMAGES_DIR/$name/Dockerfile" | cut -d'"' -f2)
        printf '%-10s %-34s %-10s %s\n' "$name" "${TAG[$name]}" "${stand_in:-?}" "${STATUS[$name]}"
    done
    exit 0
fi

if (( ${#TODO[@]} == 0 )); then
    say "Nothing to build: all ${#SELECTED[@]} selected image(s) are present and up to date"
    for name in "${SELECTED[@]}"; do info "$(printf '%-10s %-34s %s' "$name" "${TAG[$name]}" "${STATUS[$name]}")"; done
    say "Total time: $(elapsed "$START_SECONDS") (use --force to rebuild)"
    exit 0
fi
mkdir -p "$CACHE_DIR" "$LOG_DIR"
# One run at a time per cache (two concurrent runs would race on the tarball and the tags).
exec 9>"$CACHE_DIR/offline-images.lock"
if ! flock -n 9; then
    say "Another offline-images.sh run holds $CACHE_DIR/offline-images.lock; waiting for it"
    flock 9
fi
say "To build: ${TODO[*]}   (cache: $CACHE_DIR)"
fi

# ---------------------------------------------------------------------------------------------
# Base image: debootstrap minbase rootfs (cached tarball) -> docker import
# ---------------------------------------------------------------------------------------------
make_rootfs_tarball() {
    (( EUID == 0 )) || die "debootstrap needs root to create $ROOTFS_TAR: run this script as root (or with sudo) once"
    if ! command -v debootstrap >/dev/null; then
        command -v apt-get >/dev/null || die "debootstrap is not installed and apt-get is not available"
        info "installing debootstrap (apt-get install debootstrap)"
        run_logged "$LOG_DIR/apt-debootstrap.log" apt-get install -y --no-install-recommends debootstrap \
            || die "could not install debootstrap; run 'apt-get update && apt-get install debootstrap'"
    fi
    local t0=$SECONDS dir include=()
    if [[ $MIRROR == https:* || $SECURITY_MIRROR == https:* ]]; then include=(--include=ca-certificates); fi
    mkdir -p "$CACHE_DIR/rootfs"
    dir=$(mktemp -d "$CACHE_DIR/rootfs/tmp-rootfs.XXXXXX")
    trap 'rm -rf "$dir"' EXIT
    info "debootstrap --variant=$VARIANT $SUITE from $MIRROR (about a minute; log: $LOG_DIR/debootstrap.log)"
    run_logged "$LOG_DIR/debootstrap.log" nice -n 10 debootstrap --variant="$VARIANT" --components=main \
        "${include[@]}" "$SUITE" "$dir" "$MIRROR" || die "debootstrap failed (mirror $MIRROR reachable?)"

    # Make it a container rootfs, in the spirit of Debian's official docker images.
    {
        echo "deb $MIRROR $SUITE main"
        echo "deb $MIRROR $SUITE-updates main"
        if [[ -n $SECURITY_MIRROR ]]; then echo "deb $SECURITY_MIRROR $SUITE-security main"; fi
    } >"$dir/etc/apt/sources.list"
    printf '#!/bin/sh\n# no daemons started by package installs inside images\nexit 101\n' >"$dir/usr/sbin/policy-rc.d"
    chmod 755 "$dir/usr/sbin/policy-rc.d"
    cat >"$dir/etc/apt/apt.conf.d/docker-devstack" <<'EOF'
APT::Install-Recommends "false";
APT::Install-Suggests "false";
Acquire::Languages "none";
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache ""; Dir::Cache::srcpkgcache "";
EOF
    mkdir -p "$dir/etc/dpkg/dpkg.cfg.d"
    cat >"$dir/etc/dpkg/dpkg.cfg.d/docker-devstack-slim" <<'EOF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
path-include /usr/share/locale/locale.alias
path-exclude /usr/share/lintian/*
EOF
    rm -rf "${dir:?}"/var/cache/apt/archives/*.deb "${dir:?}"/var/lib/apt/lists/* "${dir:?}"/var/log/* \
        "${dir:?}"/tmp/* "${dir:?}"/var/tmp/* "${dir:?}"/dev/* "${dir:?}"/run/*
    : >"$dir/etc/resolv.conf"; : >"$dir/etc/machine-id"; echo devstack >"$dir/etc/hostname"
    find "$dir/usr/share/man" "$dir/usr/share/info" -mindepth 1 -delete 2>/dev/null || true
    find "$dir/usr/share/locale" -mindepth 1 -maxdepth 1 ! -name locale.alias -exec rm -rf {} + 2>/dev/null || true
    find "$dir/usr/share/doc" -type f ! -name copyright -delete 2>/dev/null || true
    mkdir -p "$dir/usr/share/man/man1"   # update-alternatives (e.g. openjdk's postinst) needs it

    rm -f "$CACHE_DIR"/rootfs/debian-"$SUITE"-"$VARIANT"-*.tar   # superseded tarballs
    tar --numeric-owner -C "$dir" -cf "$ROOTFS_TAR.part" . || die "could not write $ROOTFS_TAR.part"
    mv "$ROOTFS_TAR.part" "$ROOTFS_TAR"
    rm -rf "$dir"; trap - EXIT
    ok "rootfs cached: $ROOTFS_TAR ($(du -h "$ROOTFS_TAR" | cut -f1), $(elapsed "$t0"))"
}

ensure_base() {
    say "Base image $BASE_TAG"
    if (( ! FORCE )) && [[ $(image_label "$BASE_TAG" devstack.input-hash) == "$BASE_HASH" ]]; then
        ok "up to date"
        return
    fi
    if (( REFRESH )) || [[ ! -s $ROOTFS_TAR ]]; then
        make_rootfs_tarball
    else
        info "using cached rootfs $ROOTFS_TAR"
    fi
    local old
    old=$(docker image inspect -f '{{.Id}}' "$BASE_TAG" 2>/dev/null || true)
    docker import \
        -c "LABEL org.devstack.stand-in=\"false\"" \
        -c "LABEL org.devstack.description=\"Debian $SUITE $VARIANT root filesystem (debootstrap from $MIRROR), base of the devstack offline images\"" \
        -c "LABEL devstack.built-by=\"$BUILT_BY\" devstack.input-hash=\"$BASE_HASH\"" \
        -c 'ENV LANG=C.UTF-8' -c 'CMD ["bash"]' \
        "$ROOTFS_TAR" "$BASE_TAG" >/dev/null || die "docker import of $ROOTFS_TAR failed"
    if [[ -n $old ]]; then docker image rm "$old" >/dev/null 2>&1 || true; fi
    ok "imported $BASE_TAG"
}

# Can containers reach the Debian mirror? Builds use the default bridge network if they can,
# the host network otherwise.
BUILD_NETWORK=()
check_mirror_from_containers() {
    local hostport host port
    hostport=${MIRROR#*://}; hostport=${hostport%%/*}
    host=${hostport%%:*}; port=80
    [[ $MIRROR == https:* ]] && port=443
    [[ $hostport == *:* ]] && port=${hostport##*:}
    local probe="exec 3<>/dev/tcp/$host/$port"
    if docker run --rm "$BASE_TAG" timeout 10 bash -c "$probe" >/dev/null 2>&1; then
        info "containers reach the mirror $host:$port"
    elif docker run --rm --network host "$BASE_TAG" timeout 10 bash -c "$probe" >/dev/null 2>&1; then
        warn "containers on the default bridge cannot reach $host:$port; building with --network host"
        BUILD_NETWORK=(--network host)
    else
        die "containers cannot reach the Debian mirror $host:$port (neither bridge nor host network); set DEVSTACK_DEBIAN_MIRROR to a reachable mirror"
    fi
}

# ---------------------------------------------------------------------------------------------
# tansu (Kafka stand-in): cargo install once, cached
# ---------------------------------------------------------------------------------------------
ensure_tansu() {
    if (( ! REFRESH )) && [[ -x $TANSU_BIN ]]; then
        info "using cached tansu $TANSU_VERSION ($TANSU_BIN)"
        return
    fi
    command -v cargo >/dev/null || die "cargo not found: the Kafka stand-in is built from the tansu crate (install Rust via rustup or apt-get install cargo)"
    local t0=$SECONDS
    info "cargo install tansu $TANSU_VERSION --features $TANSU_FEATURES (niced; 10-25 min on 2 cores, once; log: $LOG_DIR/tansu.log)"
    # CARGO_TARGET_DIR lives in the cache, never in a checkout's target/.
    run_logged "$LOG_DIR/tansu.log" env CARGO_TARGET_DIR="$CACHE_DIR/cargo-target" \
        nice -n 19 cargo install tansu --version "$TANSU_VERSION" --features "$TANSU_FEATURES" \
        --locked --force --root "$TANSU_ROOT" || die "building tansu failed"
    [[ -x $TANSU_BIN ]] || die "cargo install succeeded but $TANSU_BIN is missing"
    rm -rf "$CACHE_DIR/cargo-target"   # ~GBs of intermediate artefacts; the binary is what we keep
    ok "tansu built and cached ($(elapsed "$t0"))"
}

# ---------------------------------------------------------------------------------------------
# Build one image
# ---------------------------------------------------------------------------------------------
build_image() {
    local name=$1 tag=${TAG[$1]} t0=$SECONDS ctx old args=()
    local why=${STATUS[$name]}
    (( FORCE )) && why="forced"
    say "Building $tag  ($name: $why)"
    [[ $name == kafka ]] && ensure_tansu
    ctx=$(mktemp -d "${TMPDIR:-/tmp}/devstack-ctx-$name.XXXXXX")
    cp -a "$IMAGES_DIR/$name/." "$ctx/"
    find "$ctx" -name __pycache__ -prune -exec rm -rf {} + 2>/dev/null || true
    if [[ $name == kafka ]]; then
        mkdir -p "$ctx/bin" && cp "$TANSU_BIN" "$ctx/bin/tansu"
    fi
    if [[ $name == python || $name == node ]]; then
        mkdir -p "$ctx/extra-ca"
        local crt
        while IFS= read -r crt; do cp "$crt" "$ctx/extra-ca/"; done < <(extra_cas)
        info "adding $(find "$ctx/extra-ca" -name '*.crt' | wc -l) CA certificate(s) from ${EXTRA_CA_DIR:-nowhere} to the trust store"
    fi
    old=$(docker image inspect -f '{{.Id}}' "$tag" 2>/dev/null || true)
    (( FORCE )) && args+=(--no-cache)
    local v
    for v in http_proxy https_proxy no_proxy HTTP_PROXY HTTPS_PROXY NO_PROXY; do
        if [[ -n ${!v:-} ]]; then args+=(--build-arg "$v=${!v}"); fi
    done
    info "docker build (log: $LOG_DIR/$name.log)"
    if ! run_logged "$LOG_DIR/$name.log" nice -n 10 docker build "${BUILD_NETWORK[@]}" "${args[@]}" \
        --label "devstack.input-hash=${WANT_HASH[$name]}" --label "devstack.built-by=$BUILT_BY" \
        -t "$tag" "$ctx"; then
        rm -rf "$ctx"
        die "building $tag failed"
    fi
    rm -rf "$ctx"
    # Drop the image this one replaces, unless a container still uses it.
    local new
    new=$(docker image inspect -f '{{.Id}}' "$tag")
    if [[ -n $old && $old != "$new" ]]; then docker image rm "$old" >/dev/null 2>&1 || true; fi
    STATUS[$name]="built in $(elapsed "$t0")"
    ok "$tag built ($(elapsed "$t0"), $(docker image inspect -f '{{.Size}}' "$tag" | awk '{printf "%.0f MB", $1/1e6}'))"
}

case $MODE in
    base)
        mkdir -p "$CACHE_DIR" "$LOG_DIR"
        exec 9>"$CACHE_DIR/offline-images.lock"
        flock 9
        ensure_base
        exit 0 ;;
    tansu)   # a lock of its own: the base image need not wait for a 20-minute cargo build
        mkdir -p "$CACHE_DIR" "$LOG_DIR"
        exec 9>"$CACHE_DIR/tansu.lock"
        flock 9
        ensure_tansu
        mkdir -p "$(dirname "$TANSU_DEST")"
        if ! cmp -s "$TANSU_BIN" "$TANSU_DEST"; then
            cp "$TANSU_BIN" "$TANSU_DEST.part" && mv "$TANSU_DEST.part" "$TANSU_DEST"
        fi
        ok "tansu $TANSU_VERSION at $TANSU_DEST"
        exit 0 ;;
esac

ensure_base
check_mirror_from_containers
for name in "${TODO[@]}"; do build_image "$name"; done

# Superseded images of ours that no container uses any more (those still in use stay).
pruned=$(docker image prune -f --filter "label=devstack.built-by=$BUILT_BY" 2>/dev/null \
    | grep -c '^deleted:' || true)
if (( pruned > 0 )); then info "pruned $pruned superseded layer(s) of earlier builds"; fi

say "Summary"
for name in "${SELECTED[@]}"; do
    info "$(printf '%-10s %-34s stand-in=%-5s %s' "$name" "${TAG[$name]}" \
        "$(image_label "${TAG[$name]}" org.devstack.stand-in)" "${STATUS[$name]}")"
done
say "Total time: $(elapsed "$START_SECONDS")"
