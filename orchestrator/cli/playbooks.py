"""``orchestrator playbooks``: the playbooks that are on, what triggers them, their packs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from orchestrator.config import Settings

if TYPE_CHECKING:
    from orchestrator.playbooks import Playbook

console = Console()


def playbooks_table(playbooks: list[Playbook]) -> Table:
    table = Table(title="Playbooks", title_justify="left", show_lines=True)
    table.add_column("name")
    table.add_column("pack")
    table.add_column("triggers (event, request pattern)", overflow="fold", ratio=3)
    table.add_column("agents", ratio=1)
    for playbook in playbooks:
        trigger = playbook.trigger
        lines = ([f"event {trigger.event}"] if trigger.event else []) + (
            [f"pattern {trigger.pattern}"] if trigger.pattern else [])
        table.add_row(escape(playbook.name), escape(playbook.pack or "(yours)"),
                      escape("\n".join(lines)), escape(", ".join(playbook.agents)))
    return table


def playbooks_command(settings: Settings, as_json: bool) -> None:
    """Print the playbooks that are on, as a table or one JSON list."""
    from orchestrator.playbooks import enabled_playbooks

    found = enabled_playbooks(settings)
    if as_json:
        console.print_json(json.dumps([p.describe() for p in found]))
    elif not found:
        console.print("No playbook is on: switch a domain pack on (ORCHESTRATOR_DOMAINS) or "
                      "add YAML playbooks (ORCHESTRATOR_PLAYBOOKS_DIR).")
    else:
        console.print(playbooks_table(found))
