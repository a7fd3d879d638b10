#!/usr/bin/env bash
# Prepare the ensureStudy example app's Python environment:
#   examples/ensurestudy/.venv with examples/ensurestudy/requirements.txt installed.
# Idempotent: the venv records a hash of requirements.txt (and of the Python it was built
# with); a second run with nothing changed checks that hash, says so and exits at once.
#
# Usage: scripts/setup-example.sh [--force]      (--force: delete and rebuild the venv)
#   PYTHON=python3.11 scripts/setup-example.sh   # choose the interpreter (default: python3)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
example="$root/examples/ensurestudy"
venv="$example/.venv"
requirements="$example/requirements.txt"
stamp="$venv/.requirements.sha256"
python="${PYTHON:-python3}"
force=0

for arg in "$@"; do
  case "$arg" in
    --force) force=1 ;;
    -h|--help) awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"; exit 0 ;;
    *) echo "setup-example: unknown argument: $arg (try --help)" >&2; exit 2 ;;
  esac
done

say() { echo "setup-example: $*"; }

# One run at a time (two stacks may run this task at once): a lock on this script itself.
exec 9<"${BASH_SOURCE[0]}"
flock 9
die() { echo "setup-example: error: $*" >&2; exit 1; }

[ -f "$requirements" ] || die "$requirements not found"
command -v "$python" >/dev/null 2>&1 || die "'$python' not found: install Python 3.11 (or set PYTHON=...)"
"$python" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 10) else 1)' \
  || die "$("$python" -V 2>&1) is too old: Python >= 3.10 is needed (3.11 is what the pins are tested with)"

# The hash covers requirements.txt and the interpreter's version, so a new Python rebuilds too.
want="$( { sha256sum "$requirements" | cut -d' ' -f1; "$python" -c 'import sys; print(sys.version)'; } | sha256sum | cut -d' ' -f1)"

if [ "$force" = 0 ] && [ -x "$venv/bin/python" ] && [ -f "$stamp" ] \
   && [ "$(cat "$stamp")" = "$want" ] && "$venv/bin/python" -c '' 2>/dev/null; then
  say "up to date: $venv matches requirements.txt (nothing to do; --force rebuilds it)"
else
  if [ ! -x "$venv/bin/python" ] || ! "$venv/bin/python" -c '' 2>/dev/null || [ "$force" = 1 ]; then
    say "creating virtualenv $venv with $("$python" -V 2>&1)"
    rm -rf "$venv"
    "$python" -m venv "$venv" \
      || die "'$python -m venv' failed (on Debian/Ubuntu: apt-get install python3-venv)"
  fi
  rm -f "$stamp"   # only a complete install writes it back
  say "installing $(grep -cvE '^\s*(#|$)' "$requirements") pinned packages from requirements.txt"
  "$venv/bin/python" -m pip install --disable-pip-version-check --no-input -q -r "$requirements" \
    || die "pip install failed (is PyPI reachable? see the pip output above)"
  echo "$want" > "$stamp"
  say "done: $venv"
fi

if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  say "warning: node/npm not found: the frontend service (npm run dev) needs Node.js >= 18"
fi
