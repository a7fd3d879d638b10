"""Drives the data tools of `devstack mcp` with the official MCP Python SDK client.

Usage: snapshots.py DEVSTACK_BIN PROJECT
Against a running stack whose stateful service is `cache` (Redis) with key `k`: `snapshot_save`
`m1`, then sets `k` to `changed` (through redis-cli on the port in $REDIS_PORT), `snapshot_restore`
`m1`, checks `k` is back, and that `reset` refuses without `confirm`. Prints one JSON line with
what it saw; exits non-zero on any failed check.
"""

import asyncio
import json
import os
import subprocess
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def text_of(result):
    return "".join(c.text for c in result.content if getattr(c, "type", "") == "text")


def redis(*args):
    out = subprocess.run(["redis-cli", "-p", os.environ["REDIS_PORT"], *args], capture_output=True, text=True, check=True)
    return out.stdout.strip()


async def main():
    binary, project = sys.argv[1:3]
    params = StdioServerParameters(command=binary, args=["-p", project, "mcp"], cwd=os.getcwd(), env=dict(os.environ))
    seen = {}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = {t.name: t for t in (await session.list_tools()).tools}
            assert {"snapshot_save", "snapshot_restore", "reset"} <= set(tools), sorted(tools)

            async def call(name, arguments):
                result = await session.call_tool(name, arguments)
                assert not result.is_error, f"{name}: {text_of(result)}"
                return json.loads(text_of(result))

            manifest = await call("snapshot_save", {"name": "m1", "services": ["cache"]})
            assert [s["service"] for s in manifest["services"]] == ["cache"], manifest
            assert manifest["services"][0]["consistency"] == "save", manifest
            assert redis("SET", "k", "changed") == "OK"
            restored = await call("snapshot_restore", {"name": "m1", "services": ["cache"]})
            assert [r["service"] for r in restored["restored"]] == ["cache"], restored
            # The tool returns once the service is ready again: read at once.
            seen["k"] = redis("GET", "k")
            assert seen["k"] == "original", seen
            refused = await session.call_tool("reset", {"services": ["cache"]})
            assert refused.is_error and "confirm" in text_of(refused), text_of(refused)
            assert redis("GET", "k") == "original"
            seen["tools"] = sorted(tools)
    print(json.dumps(seen))


asyncio.run(main())
