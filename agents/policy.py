"""What a tool does and what it may do without a person, declared on the tool itself.

Every tool is read-only or a write, in the vocabulary of MCP's tool annotations
(read-only, destructive, idempotent, open-world). A tool that declares nothing is a write.
Approval rules, previews, preconditions and audit flags belong to the tool too: they are
kept on the tool object *and* on the function behind it, so any agent, card, plugin or plan
that reaches the same tool (or re-wraps its function) meets the same rule.

```python
read_only(check_stock)
writes(refund_order, destructive=False)
requires_approval(refund_order, when=over_100, preview=refund_preview)
requires_approval(release_transaction, reason="needs the fraud lead", refuse=not_held)
audited(read_patient_summary)
```

An approval is for one exact call: this subtask, this tool, these validated arguments and
the effect the tool previews from the current state. See ``orchestrator.nodes.specialist``.
"""

from __future__ import annotations

import contextlib
import hashlib
import inspect
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from langchain_core.tools import BaseTool

from orchestrator.agents.spec import ToolLike, as_tool

ApprovalRule = Callable[[Mapping[str, Any]], str | None]
"""Given the call's arguments: why it needs an approval, or None when it does not."""
Preview = Callable[[Mapping[str, Any]], str]
"""Given the call's arguments: the effect it would have now, read from the current state."""
Precondition = Callable[[Mapping[str, Any]], str | None]
"""Given the call's arguments: why it can never be allowed now (refused, nobody is asked)."""


@dataclass(frozen=True)
class ToolKind:
    """What a tool does, as MCP's tool annotations say it (same defaults: a write)."""

    read_only: bool = False
    """It changes nothing (readOnlyHint)."""
    destructive: bool = True
    """A write that may destroy or overwrite (destructiveHint); only meaningful for writes."""
    idempotent: bool = False
    """Calling it again with the same arguments has no further effect (idempotentHint)."""
    open_world: bool = True
    """It reaches outside the orchestrator's own systems (openWorldHint)."""


READ_ONLY = ToolKind(read_only=True, destructive=False, idempotent=True, open_world=False)
UNDECLARED = ToolKind()


@dataclass(frozen=True)
class ToolPolicy:
    """Everything declared about one tool."""

    kind: ToolKind | None = None
    """None: not declared (treated as :data:`UNDECLARED`, a write)."""
    approval: ApprovalRule | None = None
    preview: Preview | None = None
    refuse: Precondition | None = None
    audited: bool = False
    identity: tuple[str, ...] | None = None
    """The arguments that say what a write acts on (its idempotency key); None: all but
    free text (see :func:`identity_args`)."""

    @property
    def effective_kind(self) -> ToolKind:
        return self.kind or UNDECLARED


_META_KEY = "orchestrator_policy"
_FUNCTION_ATTR = "__orchestrator_policy__"
"""The policy kept on the function behind a tool: re-wrapping the function as another tool,
or decorating it with ``functools.wraps`` (which copies the attribute), keeps it."""


def _functions(tool: Any) -> list[Any]:
    found = [getattr(tool, "func", None), getattr(tool, "coroutine", None)]
    if not isinstance(tool, BaseTool) and callable(tool):
        found.append(tool)
    out = []
    for fn in found:
        if fn is None:
            continue
        out.append(fn)
        inner = inspect.unwrap(fn)
        if inner is not fn:
            out.append(inner)
    return out


def _function_policy(fn: Any) -> ToolPolicy | None:
    found = getattr(fn, _FUNCTION_ATTR, None)
    return found if isinstance(found, ToolPolicy) else None


def mcp_kind(metadata: Mapping[str, Any]) -> ToolKind | None:
    """The kind MCP tool annotations give (``readOnlyHint`` ... as langchain-mcp-adapters
    puts them in a tool's metadata); None when there are none."""
    hints = ("readOnlyHint", "destructiveHint", "idempotentHint", "openWorldHint")
    if not any(h in metadata for h in hints):
        return None
    read = bool(metadata.get("readOnlyHint", False))
    return ToolKind(read_only=read, destructive=not read and
                    bool(metadata.get("destructiveHint", True)),
                    idempotent=bool(metadata.get("idempotentHint", read)),
                    open_world=bool(metadata.get("openWorldHint", True)))


def policy_of(tool: ToolLike) -> ToolPolicy:
    """The policy declared for ``tool`` (on the tool, or on the function behind it; the
    kind may also come from MCP tool annotations in its metadata)."""
    meta = getattr(tool, "metadata", None) or {}
    own = meta.get(_META_KEY)
    behind = next((found for fn in _functions(tool)
                   if (found := _function_policy(fn)) is not None), None)
    if not isinstance(own, ToolPolicy):
        own = ToolPolicy(kind=mcp_kind(meta)) if mcp_kind(meta) is not None else None
    if own is None:
        return behind or ToolPolicy()
    if behind is None:
        return own
    # A copy of a tool keeps what was declared on the function behind it: its own
    # declarations come first, and it can add rules but not drop them.
    return ToolPolicy(kind=own.kind or behind.kind, approval=own.approval or behind.approval,
                      preview=own.preview or behind.preview, refuse=own.refuse or behind.refuse,
                      audited=own.audited or behind.audited,
                      identity=own.identity or behind.identity)


def _declare(tool: ToolLike, **changes: Any) -> BaseTool:
    """Merge ``changes`` into ``tool``'s policy, on the tool and its functions, in place."""
    base = tool if isinstance(tool, BaseTool) else as_tool(tool)
    policy = replace(policy_of(tool), **changes)
    base.metadata = {**(base.metadata or {}), _META_KEY: policy}
    for fn in [*_functions(base), *([tool] if not isinstance(tool, BaseTool) else [])]:
        behind = _function_policy(fn) or ToolPolicy()
        # A builtin or a bound method takes no attribute: the tool itself keeps the policy.
        with contextlib.suppress(AttributeError, TypeError):
            setattr(fn, _FUNCTION_ATTR, replace(behind, **changes))
    return base


def read_only(tool: ToolLike) -> BaseTool:
    """Declare that ``tool`` only reads: usable in answer subtasks, never an action."""
    return _declare(tool, kind=READ_ONLY)


def writes(tool: ToolLike, *, destructive: bool = True, idempotent: bool = False,
           open_world: bool = False, identity: tuple[str, ...] | None = None) -> BaseTool:
    """Declare that ``tool`` changes something (a write): only act subtasks may call it.

    ``identity``: the arguments that say what one action acts on, for its idempotency key
    (by default every argument but free text: two calls that differ only in a message are
    the same action, done once).
    """
    return _declare(tool, kind=ToolKind(False, destructive, idempotent, open_world),
                    identity=identity)


def requires_approval(tool: ToolLike, *, when: ApprovalRule | None = None, reason: str = "",
                      preview: Preview | None = None, refuse: Precondition | None = None
                      ) -> BaseTool:
    """Make ``tool`` need a person's approval: always, or when ``when`` gives a reason.

    ``preview`` says what the call would do now (shown to the approver; if it differs when
    the approved call is about to run, a person is asked again). ``refuse`` is a
    precondition: a call it gives a reason for is refused without asking anyone. The rule
    is set on the tool itself, so every agent that has it is bound by it.
    """
    base = as_tool(tool) if not isinstance(tool, BaseTool) else tool
    always = reason or f"{base.name} needs an approval"
    rule: ApprovalRule = when if when is not None else (lambda _args: always)
    return _declare(tool, approval=rule, preview=preview, refuse=refuse)


def audited(tool: ToolLike) -> BaseTool:
    """Flag every call of ``tool`` for the audit trail (sensitive reads)."""
    return _declare(tool, audited=True)


def tool_kind(tool: ToolLike) -> ToolKind:
    return policy_of(tool).effective_kind


def is_read_only(tool: ToolLike) -> bool:
    return tool_kind(tool).read_only


def is_audited(tool: ToolLike) -> bool:
    return policy_of(tool).audited


def needs_approval(tool: ToolLike) -> bool:
    return policy_of(tool).approval is not None


def approval_reason(tool: BaseTool, args: Mapping[str, Any]) -> str | None:
    """Why this call (with validated arguments) needs an approval, or None."""
    rule = policy_of(tool).approval
    if rule is None:
        return None
    try:
        return rule(args)
    except (KeyError, TypeError, ValueError) as exc:
        # The arguments validated but the rule cannot read them: ask a person, say why.
        return f"{tool.name} needs an approval (its rule could not check the call: {exc})"


def refusal_reason(tool: BaseTool, args: Mapping[str, Any]) -> str | None:
    """Why this call can never be allowed now (a precondition), or None."""
    check = policy_of(tool).refuse
    return check(args) if check is not None else None


def preview_of(tool: BaseTool, args: Mapping[str, Any]) -> str | None:
    """The effect this call would have now, from the tool's preview (None without one).

    A preview that raises ValueError or LookupError says the call would be rejected (an
    unknown id, an unhealthy pool): the caller refuses it instead of asking a person.
    """
    preview = policy_of(tool).preview
    return preview(args) if preview is not None else None


def identity_args(tool: BaseTool, args: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments that say *what* a call acts on: all but free text.

    Free text (a string field with no pattern, enum or format: a message, a summary, a
    reason) describes the action; two calls that differ only there are the same action.
    """
    declared = policy_of(tool).identity
    if declared is not None:
        return {name: args.get(name) for name in declared}
    schema = _args_schema(tool)
    props = schema.get("properties", {})
    out: dict[str, Any] = {}
    for name, value in args.items():
        prop = non_null(props.get(name, {}))
        free_text = (prop.get("type") == "string" and not
                     any(k in prop for k in ("pattern", "enum", "format", "const")))
        if not free_text:
            out[name] = value
    return out


def _args_schema(tool: BaseTool) -> dict[str, Any]:
    try:
        return dict(tool.tool_call_schema.model_json_schema())  # type: ignore[union-attr]
    except (AttributeError, TypeError):
        return {}


def non_null(prop: dict[str, Any]) -> dict[str, Any]:
    """A JSON-schema property with its ``anyOf: [X, null]`` resolved to X."""
    for option in prop.get("anyOf", []):
        if option.get("type") != "null":
            return {**prop, **option}
    return prop


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str, separators=(",", ":"))


def action_name(tool: BaseTool) -> str:
    """What a write does, whatever the tool is called: the function behind it (a tool that
    wraps the same function under another name does the same action), else its name."""
    for fn in _functions(tool)[::-1]:  # the innermost function first
        module, name = getattr(fn, "__module__", None), getattr(fn, "__qualname__", None)
        if module and name and "<lambda>" not in name:
            # Functions made in a loop, and methods of different instances, share a
            # qualified name: the tool's name tells them apart.
            shared = "<locals>" in name or getattr(fn, "__self__", None) is not None
            return f"{module}.{name}" + (f":{tool.name}" if shared else "")
    return tool.name


def write_key(run_id: str, subtask_id: str, tool: BaseTool, args: Mapping[str, Any]) -> str:
    """The idempotency key of a write: this run, this subtask (or the one it replaces),
    this action on this target."""
    payload = canonical([run_id, subtask_id, action_name(tool), identity_args(tool, args)])
    return "w-" + hashlib.sha256(payload.encode()).hexdigest()[:32]


def approval_key(subtask_id: str, tool: str, args: Mapping[str, Any],
                 preview: str | None) -> str:
    """The id of one approval: this subtask, this tool, these arguments, this effect."""
    digest = hashlib.sha256(canonical([tool, dict(args), preview]).encode()).hexdigest()[:16]
    return f"{subtask_id}:{tool}:{digest}"
