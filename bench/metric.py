"""One machine-readable line per measured figure, for bench/run-all: `METRIC {json}` on stdout.

  name      what is measured (`reload edit→ready`)
  devstack  devstack's figure, in `unit`
  peer      the tool it is compared with (`watchexec`, `docker-compose`, `cat floor`), or None
  value     the peer's figure, in `unit` (None without a peer)
  ratio     the ratio the goal is stated in (see `better`), or None
  better    "higher" (peer/devstack, > 1 means devstack wins) or "lower" (devstack/floor, or an
            absolute figure when there is no peer)
"""
import json


def emit(name, devstack, unit, peer=None, value=None, ratio=None, better="higher"):
    print("METRIC " + json.dumps({
        "name": name, "devstack": round(devstack, 3), "unit": unit, "peer": peer,
        "value": None if value is None else round(value, 3),
        "ratio": None if ratio is None else round(ratio, 3), "better": better,
    }), flush=True)
