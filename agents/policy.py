"""What an agent's tools may do without a person: approval rules and audited reads.

A tool is marked in code, not in a prompt:

```python
refund = requires_approval(refund_order, when=lambda args: (
    f"refund of ${args['amount']:.2f} is over $100" if args["amount"] > 100 else None))
read_chart = audited(read_full_patient_record)
```

When an agent calls a tool whose rule gives a reason, the run pauses for an approval
(a LangGraph interrupt, saved by the checkpointer); the call runs only once approved with
the same arguments. Audited tools mark every call in the events, for the audit trail.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any

from langchain_core.tools import BaseTool

from agents.spec import ToolLike, as_tool

ApprovalRule = Callable[[Mapping[str, Any]], str | None]
"""Given the call's arguments: why it needs an approval, or None when it does not."""

_APPROVAL = "orchestrator_requires_approval"
_AUDIT = "orchestrator_audit"


def requires_approval(tool: ToolLike, *, when: ApprovalRule | None = None,
                      reason: str = "") -> BaseTool:
    """A copy of ``tool`` that needs an approval: always, or when ``when`` gives a reason.

    The original is left as it is, so other agents can keep using it freely.
    """
    base = as_tool(tool)
    always = reason or f"{base.name} needs an approval"
    rule: ApprovalRule = when if when is not None else (lambda _args: always)
    return base.model_copy(update={"metadata": {**(base.metadata or {}), _APPROVAL: rule}})


def audited(tool: ToolLike) -> BaseTool:
    """A copy of ``tool`` whose every call is flagged for the audit trail (sensitive reads)."""
    base = as_tool(tool)
    return base.model_copy(update={"metadata": {**(base.metadata or {}), _AUDIT: True}})


def approval_reason(tool: BaseTool, args: Mapping[str, Any]) -> str | None:
    """Why this call needs an approval, or None."""
    rule = (tool.metadata or {}).get(_APPROVAL)
    if rule is None:
        return None
    try:
        return rule(args)
    except (KeyError, TypeError, ValueError):
        # Arguments the rule cannot read: the tool will reject them; ask a person anyway.
        return f"{tool.name} needs an approval (its arguments could not be checked)"


def is_audited(tool: BaseTool) -> bool:
    return bool((tool.metadata or {}).get(_AUDIT))


def call_key(subtask_id: str, tool: str, args: Mapping[str, Any]) -> str:
    """The id of one approval: this subtask, this tool, these arguments."""
    return f"{subtask_id}:{tool}:{json.dumps(dict(args), sort_keys=True, default=str)}"
