#!/usr/bin/env bash
# A new developer's first command, run once in a fresh checkout (and safe to run again: a second
# run changes nothing). It
#   1. builds devstack,
#   2. writes .env from .env.example with generated secrets (an existing .env is never touched),
#   3. runs `devstack doctor` and stops on a blocker,
#   4. brings the whole stack up with `devstack up --wait` and leaves it running (the app
#      processes under a background devstack, with hot reload; `devstack down` stops it all);
#      the stack's own preparation tasks and image builds make what is missing (the example
#      app's virtualenv, the images) and skip what is up to date,
#   5. prints the URLs.
set -euo pipefail
cd "$(dirname "$0")/.."

say() { printf '\n== %s\n' "$*"; }

say "building devstack"
cargo build --release -q
devstack="$PWD/target/release/devstack"

say ".env"
if [ -f .env ]; then
  echo ".env exists: left as it is"
elif [ -f .env.example ]; then
  # Empty *SECRET* values get a fresh random secret; everything else is copied as written.
  python3 - <<'PY'
import re, secrets
out = []
for line in open(".env.example"):
    m = re.match(r"^([A-Z0-9_]*SECRET[A-Z0-9_]*)=\s*$", line)
    out.append(f"{m.group(1)}={secrets.token_hex(32)}\n" if m else line)
open(".env", "w").write("".join(out))
PY
  chmod 600 .env
  echo "wrote .env from .env.example with generated secrets (mode 600)"
else
  echo "no .env.example: nothing to do"
fi

say "devstack doctor"
"$devstack" doctor

say "the stack, up (left running; \`devstack down\` stops it, \`devstack logs -f\` follows it)"
"$devstack" up --wait

say "done"
"$devstack" config --json | python3 -c '
import json, sys
stack = json.load(sys.stdin)
urls = {"frontend": "http://127.0.0.1:{}/", "core-service": "http://127.0.0.1:{}/api/v1", "ai-service": "http://127.0.0.1:{}/api/ai", "qdrant": "http://127.0.0.1:{}/", "postgres": "postgresql://127.0.0.1:{}/", "redis": "redis://127.0.0.1:{}/", "kafka": "127.0.0.1:{}"}
for name, svc in stack["services"].items():
    for p in svc.get("ports", []):
        url = urls.get(name, "127.0.0.1:{}").format(p.split(":")[1])
        print(f"  {name:<14} {url}")
'
echo
echo "Edit the apps: they restart on save. \`devstack logs -f\` shows the merged log; \`devstack down\` stops everything."
