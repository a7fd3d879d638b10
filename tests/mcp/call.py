"""Calls tools of `devstack mcp` (run in the current folder) with the official MCP Python SDK
client, in order, and prints one JSON line: a list of {"tool", "error", "text"}.

Usage: call.py DEVSTACK_BIN PROJECT TOOL JSON_ARGUMENTS [TOOL JSON_ARGUMENTS ...]
"""

import asyncio
import json
import os
import sys

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client


async def main():
    binary, project, calls = sys.argv[1], sys.argv[2], sys.argv[3:]
    params = StdioServerParameters(command=binary, args=["-p", project, "mcp"], cwd=os.getcwd(),
                                   env=dict(os.environ))
    seen = []
    async with stdio_client(params) as (read, write):
        async with ClientSession(read, write) as session:
            await session.initialize()
            for tool, arguments in zip(calls[::2], calls[1::2]):
                result = await session.call_tool(tool, json.loads(arguments))
                text = "".join(c.text for c in result.content if getattr(c, "type", "") == "text")
                seen.append({"tool": tool, "error": bool(result.is_error), "text": text})
    print(json.dumps(seen))


asyncio.run(main())
