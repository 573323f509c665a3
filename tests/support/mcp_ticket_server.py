"""A small MCP server for the tests: a ticket desk on a SQLite file, over stdio or
streamable HTTP, with tools annotated read-only, write and destructive, one that stops the
server and one that hangs.

``python -m tests.support.mcp_ticket_server DB [stdio | http PORT]``
"""

from __future__ import annotations

import os
import sqlite3
import sys
import time

from mcp.server.fastmcp import FastMCP
from mcp.types import ToolAnnotations

DB = sys.argv[1]
desk = FastMCP("tickets", port=int(sys.argv[3]) if len(sys.argv) > 3 else 8000)


def _db() -> sqlite3.Connection:
    conn = sqlite3.connect(DB)
    conn.execute("CREATE TABLE IF NOT EXISTS tickets (id INTEGER PRIMARY KEY, title TEXT)")
    return conn


@desk.tool(annotations=ToolAnnotations(readOnlyHint=True, openWorldHint=False))
def list_tickets() -> str:
    """List the open tickets of the service desk."""
    with _db() as conn:
        rows = conn.execute("SELECT id, title FROM tickets ORDER BY id").fetchall()
    return "; ".join(f"T-{i}: {t}" for i, t in rows) or "no open tickets"


@desk.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=False,
                                       openWorldHint=False))
def open_ticket(title: str) -> str:
    """Open a ticket in the service desk with this title."""
    with _db() as conn:
        number = conn.execute("INSERT INTO tickets (title) VALUES (?)", (title,)).lastrowid
    return f"opened T-{number}: {title}"


@desk.tool(annotations=ToolAnnotations(readOnlyHint=False, destructiveHint=True))
def close_ticket(ticket: int) -> str:
    """Close (delete) a ticket of the service desk by its number."""
    with _db() as conn:
        gone = conn.execute("DELETE FROM tickets WHERE id = ?", (ticket,)).rowcount
    if not gone:
        raise ValueError(f"there is no ticket T-{ticket}")
    return f"closed T-{ticket}"


@desk.tool()
def pid() -> str:
    """The server's process id (for the tests)."""
    return str(os.getpid())


@desk.tool()
def stop_server() -> str:
    """Stop the server's process at once (a crash, for the tests)."""
    os._exit(3)


@desk.tool(annotations=ToolAnnotations(readOnlyHint=True))
def slow_report(seconds: float) -> str:
    """A report that takes this long to write."""
    time.sleep(seconds)
    return "done"


if __name__ == "__main__":
    desk.run("streamable-http" if len(sys.argv) > 2 and sys.argv[2] == "http" else "stdio")
