"""Asks `devstack mcp` (of this checkout's instance) about another instance, with the official
MCP Python SDK client.

Usage: instance.py DEVSTACK_BIN PROJECT OTHER_INSTANCE
Calls `ps` without and with `instance`, and `stop` of the other instance's `app`; prints one JSON
line: {"own": [rows], "other": [rows], "stopped": [rows]}.
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
    binary, project, other = sys.argv[1:4]
    params = StdioServerParameters(command=binary, args=["-p", project, "mcp"], cwd=os.getcwd(),
                                   env=dict(os.environ))
    seen = {}
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            tools = (await session.list_tools()).tools
            ps = next(t for t in tools if t.name == "ps")
            assert "instance" in ps.input_schema["properties"], ps.input_schema

            async def call(name, arguments):
                result = await session.call_tool(name, arguments)
                assert not result.is_error, f"{name}: {text_of(result)}"
                return json.loads(text_of(result))

            seen["own"] = await call("ps", {})
            seen["other"] = await call("ps", {"instance": other})
            seen["stopped"] = await call("stop", {"service": "app", "instance": other})
    print(json.dumps(seen))


asyncio.run(main())
