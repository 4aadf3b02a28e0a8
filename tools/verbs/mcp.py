"""`fleet mcp`: the MCP server on stdio (for Claude Desktop and other MCP clients)."""

from __future__ import annotations

import argparse

from contracts.api.tools import MCP_TOOLS


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "mcp",
        help="the MCP server on stdio",
        description=f"Serve the fleet's operations as MCP tools on stdin/stdout: "
        f"{', '.join(MCP_TOOLS)}. Each goes through fleet.api on NATS; provisioning is "
        "judged by the cost-guard.",
        epilog="example:\n  fleet mcp --nats nats://127.0.0.1:4222\n\n"
        "Claude Desktop: add to claude_desktop_config.json\n"
        '  {"mcpServers": {"fleetplane": {"command": "fleet", "args": ["mcp", "--nats", '
        '"nats://127.0.0.1:4222"]}}}',
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--nats", help="NATS URL (default: FLEET_NATS_URL, then .fleet/nats.url)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    # Imported here: the mcp package takes about a second to import, and every other
    # verb (a `fleet run` that must fail fast on a bad config among them) would pay it.
    from tools.mcp_server import serve

    return serve(args.nats)
