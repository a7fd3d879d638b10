"""Drives `devstack mcp` with the official MCP Python SDK client, against a running stack.

Usage: client.py DEVSTACK_BIN PROJECT SECRET [--read-only]
Lists the tools, calls ps, restart, logs, wait, apply (a dry run) and config, checks every answer for the secret
value, and prints one JSON line with what it saw. Exits non-zero on any failed check.
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


def text_of(result):
    return "".join(c.text for c in result.content if getattr(c, "type", "") == "text")


async def main():
    binary, project, secret = sys.argv[1:4]
    read_only = "--read-only" in sys.argv[4:]
    args = ["-p", project, "mcp"] + (["--read-only"] if read_only else [])
    params = StdioServerParameters(command=binary, args=args, cwd=os.getcwd(), env=dict(os.environ))
    answers = []
    seen = {}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            init = await session.initialize()
            assert init.server_info.name == "devstack", init
            tools = sorted(t.name for t in (await session.list_tools()).tools)
            seen["tools"] = tools

            async def call(name, arguments):
                result = await session.call_tool(name, arguments)
                text = text_of(result)
                answers.append(text)
                assert not result.is_error, f"{name}: {text}"
                return text

            if read_only:
                assert tools == ["config", "logs", "ls", "ps", "wait"], tools
                # An unknown tool is a protocol error (JSON-RPC -32602), raised by the SDK.
                try:
                    refused = await session.call_tool("restart", {"service": "core-service"})
                except Exception as e:  # the SDK's MCPError
                    assert "unknown tool" in str(e), e
                else:
                    raise AssertionError(f"restart answered read-only: {text_of(refused)}")
            else:
                assert tools == ["apply", "config", "logs", "ls", "ps", "reset", "restart", "snapshot_restore", "snapshot_save", "start", "stop", "wait"], tools
                rows = {r["service"]: r for r in json.loads(await call("ps", {}))}
                assert rows["core-service"]["state"] == "ready", rows
                assert rows["postgres"]["state"] == "ready", rows
                before = rows["core-service"]["pid"]
                await call("restart", {"service": "core-service", "timeout": "90s"})
                rows = {r["service"]: r for r in json.loads(await call("ps", {}))}
                assert rows["core-service"]["state"] == "ready", rows
                assert rows["core-service"]["pid"] != before, (before, rows)
                seen["pids"] = [before, rows["core-service"]["pid"]]
                logs = json.loads(await call("logs", {"service": "core-service", "grep": "restart", "limit": 20}))
                assert any("restarting" in l["text"] for l in logs["lines"]), logs
                await call("wait", {"services": ["core-service"], "timeout": "30s"})
                # The stack files as they are: a plan in which nothing changes, and nothing does.
                plan = json.loads(await call("apply", {"dry_run": True}))
                assert plan["outcome"] == "applied" and plan["dry_run"], plan
                assert {c["service"] for c in plan["changes"]} >= {"core-service", "postgres"}, plan
                assert all(c["action"] == "unchanged" for c in plan["changes"]), plan
                rows = {r["service"]: r for r in json.loads(await call("ps", {}))}
                assert rows["core-service"]["pid"] == seen["pids"][1], rows
                # Levels, runs and a ranked search (the restart's events are `info`).
                ranked = json.loads(await call("logs", {"search": "restarting core", "run": 0, "limit": 5}))
                assert ranked["lines"] and all("score" in l for l in ranked["lines"]), ranked
                scores = [l["score"] for l in ranked["lines"]]
                assert scores == sorted(scores, reverse=True), scores
                json.loads(await call("logs", {"level": "warn", "field": [], "run": "all"}))
            config = await call("config", {})
            assert "JWT_SECRET_KEY" in config, "the key is shown"
            await call("logs", {"limit": 200})
    leaked = [a[:200] for a in answers if secret in a]
    assert not leaked, f"the secret leaked: {leaked}"
    seen["answers"] = len(answers)
    print(json.dumps(seen))


asyncio.run(main())
