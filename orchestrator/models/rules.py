"""The rules that let the fake model do real work offline.

It decides from the prompt and the bound tools, like a real model would:
- planner (a ``Plan`` tool is bound): split the request into clauses and route each
  to the agent whose name, skills and description fit best;
- specialist (other tools bound): pick the best-matching tool and fill its arguments
  from the text by the tool's JSON schema; after tool results, report them;
- synthesizer (a ``<results>`` block): write the answer from the subtask results.
"""

from __future__ import annotations

import json
import re
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from orchestrator.agents.policy import non_null
from orchestrator.prompts import extract_tag
from orchestrator.request_mood import (
    CONDITION_FIRST,
    CONDITION_INSIDE,
    HYPOTHETICAL,
    LEADING_FILLER,
    NEGATION,
    POLITE_ASK,
    SENTENCE_END,
    STATE_WORDS,
    asks,
)
from orchestrator.text_match import find_pattern, overlap_score, tokens

_FILLERS = frozenset({"ok", "okay", "yes", "please", "thanks", "thank you", "great", "good",
                      "now", "also", "and"})
PLAN_TOOL = "Plan"
RETRIEVE_TOOL = "retrieve"
_CLAUSE_SPLIT = re.compile(r"\s*(?:;|\.\s+|,\s*|\band\b)\s*", re.IGNORECASE)
_THEN = re.compile(r"^(?:and\s+)?(?:then|after that|afterwards|finally|next)\b[\s,]*", re.I)
_CATALOG_LINE = re.compile(r"^-\s*([a-z][a-z0-9_]*):\s*(.*?)\s*\|\s*skills:\s*(.*?)"
                           r"(?:\s*\|\s*reads:\s*(.*?))?(?:\s*\|\s*changes:\s*(.*))?$")
_IDENTIFIER_FIRST = re.compile(r"^[a-z]+-\d+\b", re.IGNORECASE)
Catalog = list[tuple[str, str, str, str, str]]
"""(name, description, skills, read tools, change tools) per agent."""


def decide(messages: list[BaseMessage], tools: list[dict[str, Any]]) -> AIMessage:
    """The rules-mode reply to ``messages`` with ``tools`` (OpenAI tool format) bound."""
    names = [t["function"]["name"] for t in tools]
    if PLAN_TOOL in names:
        return _plan_reply(messages)
    human = _last_human(messages)
    if extract_tag(human, "results"):
        return AIMessage(content=synthesize_answer(human))
    if messages and isinstance(messages[-1], ToolMessage):
        return _after_tool_results(messages, human, tools)
    if tools:
        return _tool_call_reply(human, tools)
    goal = _first_tag(human, "goal") or human
    return AIMessage(content=f"I have no tools for this; noted: {goal}")


# --- planner -----------------------------------------------------------------------------


def plan_request(
    request: str, catalog: Catalog, history: str = "", min_score: int = 1
) -> dict[str, Any]:
    """A plan (as ``Plan`` tool arguments) for ``request`` over the agent catalog; an agent
    must score at least ``min_score`` to be given a clause.

    Each subtask gets a kind: ``answer`` for a question or a hypothetical, or when the
    agent's best-fitting tool for the clause only reads; ``act`` when it changes something.
    A clause that says not to do something plans nothing.
    """
    hypothetical = bool(HYPOTHETICAL.search(request))
    context: list[str] = []  # what the request says besides the work: folded into goals
    routed: list[tuple[str, str, bool, str]] = []  # (clause, agent, after_previous, kind)
    seen: set[str] = set()
    condition = ""  # a condition clause ("if web-3 goes down") waiting for its action
    negated_sentence = -1  # "Do NOT, under any circumstances, page ...": the rest is negated
    dropped = False  # a clause was left out because it says not to act
    last_sentence = -1  # the sentence of the last routed clause
    for sentence, clause, question in _clauses_with_mood(request, catalog):
        after = bool(_THEN.match(clause))
        text = _THEN.sub("", clause).strip(" ,;")
        if sentence == negated_sentence:
            context.extend(_identifiers(text))
            dropped = True
            continue
        if _bare_negation(text, catalog):
            negated_sentence = sentence
            dropped = True
            continue
        bare = LEADING_FILLER.sub("", text)
        if CONDITION_FIRST.match(bare):
            if routed and routed[-1][3] == "act" and last_sentence == sentence:
                # "page the on-call about web-1, but only if it is down": the condition
                # belongs to the action before it.
                action, _, _, _ = routed.pop()
                _plan_conditional(action, bare, catalog, routed, min_score)
            else:
                condition = bare
            continue
        inline = CONDITION_INSIDE.search(text)
        if inline is not None or condition:
            # A conditional action: it runs after a check of its condition and is done only
            # if the check shows the condition holds (the agent sees both).
            action = text[:inline.start()].strip(" ,;") if inline else text
            cond = text[inline.start():].strip(" ,;") if inline else condition
            condition = ""
            if not question and not hypothetical:
                _plan_conditional(action, cond, catalog, routed, min_score)
                last_sentence = sentence
            continue
        if _negated(text, catalog):
            # "don't page anyone": nothing to plan; what it names may still be context
            context.extend(_identifiers(text))
            dropped = True
            continue
        if not text or text.lower() in seen:
            continue  # a bare "then", or the same work asked twice
        seen.add(text.lower())
        answer = hypothetical or question
        if routed and _IDENTIFIER_FIRST.match(text):
            # "page api-1 and api-2 about errors": a fragment that starts with what it acts
            # on continues the clause before it.
            prev_text, prev_agent, prev_after, prev_kind = routed[-1]
            routed[-1] = (f"{prev_text} and {text}", prev_agent, prev_after, prev_kind)
            continue
        agent = _best_agent(text, catalog, min_score, needs_reads=answer)
        if agent is not None and not answer and _kind_for(text, _entry(catalog, agent)) == \
                "answer" and _asks_for_change(text, catalog):
            # The clause names a change another agent can make: give it to that agent.
            agent = _best_agent(text, catalog, min_score, needs_changes=True) or agent
        if agent is None:
            if routed:  # "check web-1 and web-2": a bare object belongs to the previous clause
                prev_text, prev_agent, prev_after, prev_kind = routed[-1]
                routed[-1] = (f"{prev_text} and {text}", prev_agent, prev_after, prev_kind)
            else:
                context.append(text)
        else:
            kind = "answer" if answer else _kind_for(text, _entry(catalog, agent))
            routed.append((text, agent, after, kind))
            last_sentence = sentence
    if not routed and dropped:
        return {"rationale": "The request says what not to do; nothing else is asked.",
                "subtasks": [], "answer": "Nothing to do: the request asks not to act "
                "(nothing was changed)."}
    if not routed:
        known = ", ".join(entry[0] for entry in catalog)
        return {
            "rationale": "No agent's description or skills match the request.",
            "subtasks": [],
            "answer": "I can't help with that here: none of the available agents "
            f"({known}) handles this kind of request.",
        }
    context = [c for c in context if c.lower().strip(" ,.!?") not in _FILLERS]
    if not context and history and not _has_identifier(request):
        context.append("earlier: " + _last_user_turn(history))
    note = f" (context: {'; '.join(context)})" if context else ""
    subtasks: list[dict[str, Any]] = []
    for index, (text, agent, after, kind) in enumerate(routed, start=1):
        depends = [f"t{index - 1}"] if after and index > 1 else []
        subtasks.append({"id": f"t{index}", "goal": text + note, "agent": agent,
                         "depends_on": depends, "kind": kind})
    agents = sorted({str(s["agent"]) for s in subtasks})
    return {
        "rationale": f"{len(subtasks)} subtask(s) routed by skill match to {', '.join(agents)}.",
        "subtasks": subtasks,
        "answer": None,
    }


def _clauses_with_mood(request: str, catalog: Catalog) -> list[tuple[int, str, bool]]:
    """The request's clauses: the sentence each is in, and whether its sentence (or the
    clause itself) asks a question."""
    out: list[tuple[int, str, bool]] = []
    for index, sentence in enumerate(SENTENCE_END.split(request.strip())):
        polite = bool(POLITE_ASK.match(LEADING_FILLER.sub("", sentence.strip())))
        body = POLITE_ASK.sub("", LEADING_FILLER.sub("", sentence.strip()))
        question = asks(body) or (sentence.rstrip().endswith("?") and not polite)
        for clause in _split_clauses(body, catalog):
            out.append((index, clause, question or asks(clause)))
    return out


def _bare_negation(clause: str, catalog: Catalog) -> bool:
    """A clause that is only a negation ("Do NOT", "never"): it negates what follows."""
    text = LEADING_FILLER.sub("", clause.strip())
    match = NEGATION.match(text) or re.match(r"^(?:do|please)\s+not\b", text, re.I)
    return match is not None and not _identifiers(text) and len(text.split()) <= 3


def _plan_conditional(action: str, condition: str, catalog: Catalog,
                      routed: list[tuple[str, str, bool, str]], min_score: int) -> None:
    """Plan an action that is done only if its condition holds: after the subtask that
    checks the condition (added when the one before does not), with the condition in its
    goal for the agent to read against that check."""
    agent = _best_agent(action, catalog, min_score, needs_changes=True) or \
        _best_agent(action, catalog, min_score)
    if agent is None:
        return
    checked = _condition_check(condition, action, catalog, routed, agent)
    if checked is not None:
        routed.append(checked)
    routed.append((f"{action} {condition}", agent, checked is not None or bool(routed),
                   _kind_for(action, _entry(catalog, agent))))


def _condition_check(condition: str, action: str, catalog: Catalog,
                     routed: list[tuple[str, str, bool, str]], acting: str
                     ) -> tuple[str, str, bool, str] | None:
    """A new answer subtask that checks a condition, or None when the subtask before
    already does (it names what the condition is about) or nothing names what to check.
    The acting agent checks it when it can read (it knows its own domain)."""
    about = _identifiers(condition) or _identifiers(action)
    if routed and (not about or any(i in routed[-1][0].lower() for i in about)):
        return None
    if not about:
        return None
    goal = f"check the status of {' and '.join(about)}"
    entry = _entry(catalog, acting)
    agent = acting if entry[3].strip() else _best_agent(goal, catalog, needs_reads=True)
    return (goal, agent, False, "answer") if agent is not None else None


def _negated(clause: str, catalog: Catalog) -> bool:
    """Whether the clause says not to do its action: a negation before its verb ("we should
    not reroute", "hold off on paging"), not after it ("check why web-3 is not up")."""
    text = LEADING_FILLER.sub("", clause.strip())
    negation = NEGATION.search(text)
    if negation is None:
        return False
    verbs = {_leading_verb(t) for e in catalog for field in (e[3], e[4])
             for t in field.split(",") if t.strip()}
    if any(w in verbs for w in tokens(text[:negation.start()])):
        return False  # the action comes first; the negation is about something else
    if any(w in verbs for w in tokens(text[negation.end():])):
        return True  # "we should not reroute ..."
    return len(text[:negation.start()].split()) <= 3  # no known verb: only near the start


def _identifiers(text: str) -> list[str]:
    return [m for m in re.findall(r"\b[a-z]+-\d+\b", text.lower())]


def _entry(catalog: Catalog, agent: str) -> tuple[str, str, str, str, str]:
    return next(e for e in catalog if e[0] == agent)


def _kind_for(clause: str, entry: tuple[str, str, str, str, str]) -> str:
    """act when the agent's best-fitting tool for the clause changes things (or the clause
    leads with such a tool's verb), else answer."""
    reads = [t.strip() for t in entry[3].split(",") if t.strip()]
    changes = [t.strip() for t in entry[4].split(",") if t.strip()]
    if not changes:
        return "answer"
    if not reads or _leading_verb(clause) in {_leading_verb(t) for t in changes}:
        return "act"
    best_change = max(overlap_score(clause, [(t, 1)]) for t in changes)
    best_read = max(overlap_score(clause, [(t, 1)]) for t in reads)
    return "act" if best_change >= best_read else "answer"


def parse_catalog(system_text: str) -> Catalog:
    """(name, description, skills, reads, changes) for each agent line in the prompt."""
    block = _first_tag(system_text, "agents") or system_text
    catalog = []
    for line in block.splitlines():
        match = _CATALOG_LINE.match(line.strip())
        if match:
            catalog.append((match.group(1), match.group(2), match.group(3),
                            match.group(4) or "", match.group(5) or ""))
    return catalog


def _plan_reply(messages: list[BaseMessage]) -> AIMessage:
    system = next((m.text for m in messages if isinstance(m, SystemMessage)), "")
    human = _first_human(messages)
    # A replan asks for the <remaining> work only, and only an agent whose name or skills
    # fit may take it over (a description word in common is not enough).
    remaining = _first_tag(human, "remaining")
    request = remaining or _first_tag(human, "request") or human
    history = _first_tag(human, "history") or ""
    args = plan_request(request, parse_catalog(system), history,
                        min_score=2 if remaining else 1)
    return _tool_calls_message([(PLAN_TOOL, args)], salt=request)


def _split_clauses(request: str, catalog: Catalog) -> list[str]:
    parts: list[str] = []
    head, sep, tail = request.partition(":")
    # "web-3 is down: do X, Y" states context before the colon; "alert the team: details"
    # is one action whose details follow the colon.
    if sep and "//" not in tail[:2] and _best_agent(head, catalog) is None:
        parts.append(head)
        request = tail
    parts.extend(_CLAUSE_SPLIT.split(request))
    return [p.strip(" .!?\n\t") for p in parts if p and p.strip(" .!?\n\t")]


def _asks_for_change(clause: str, catalog: Catalog) -> bool:
    """Whether the clause fits a tool that changes things better than any tool that reads,
    or its leading verb is the verb of such a tool ("log an incident" -> log_incident)."""
    changes = [t.strip() for e in catalog for t in e[4].split(",") if t.strip()]
    reads = [t.strip() for e in catalog for t in e[3].split(",") if t.strip()]
    best_change = max((overlap_score(clause, [(t, 1)]) for t in changes), default=0)
    best_read = max((overlap_score(clause, [(t, 1)]) for t in reads), default=0)
    return best_change > best_read or _leading_verb(clause) in {
        _leading_verb(t) for t in changes}


def _leading_verb(text: str) -> str:
    found = tokens(LEADING_FILLER.sub("", text.replace("_", " ")))
    return found[0] if found else ""


def _best_agent(clause: str, catalog: Catalog, min_score: int = 1, *,
                needs_reads: bool = False, needs_changes: bool = False) -> str | None:
    """The best-fitting agent; for a question, one that has a tool that reads, if any fits;
    with ``needs_changes``, only agents with a tool that changes things."""
    best, best_score = None, min_score - 1
    for name, description, skills, reads, changes in catalog:
        if (needs_reads and changes and not reads) or (needs_changes and not changes):
            continue
        score = overlap_score(clause, [(name, 3), (skills, 2), (description, 1)])
        if score > best_score:
            best, best_score = name, score
    return best


def _has_identifier(text: str) -> bool:
    return bool(re.search(r"\b[a-z]+[-_]?\d+\b", text, re.IGNORECASE))


def _last_user_turn(history: str) -> str:
    """The latest user turn that names something (a service, a host), else the latest."""
    turns = [line[5:].strip() for line in history.splitlines() if line.startswith("user:")]
    if not turns:
        return history.strip().splitlines()[-1]
    return next((t for t in reversed(turns) if _has_identifier(t)), turns[-1])


# --- specialist --------------------------------------------------------------------------


def _tool_call_reply(human: str, tools: list[dict[str, Any]], knowledge: str = "",
                     salt: str = "") -> AIMessage:
    goal = _first_tag(human, "goal") or human
    inputs = " ".join(body for _, body in extract_tag(human, "input"))
    inline = CONDITION_INSIDE.search(goal)
    if inline is not None:
        verdict = _condition_holds(goal[inline.start():].strip(), inputs)
        if verdict is not None:
            return AIMessage(content=verdict)
        goal = goal[:inline.start()].strip(" ,;")
    retrieve = next((t for t in tools if t["function"]["name"] == RETRIEVE_TOOL), None)
    actions = [t for t in tools if t["function"]["name"] != RETRIEVE_TOOL]
    if retrieve is not None and not knowledge:
        # Look up company procedure before acting, as the agent prompts ask.
        return _tool_calls_message([(RETRIEVE_TOOL, {"query": goal[:300]})], salt=human)
    if not actions:
        return AIMessage(content=knowledge or "Nothing found.")
    tool = _best_tool(goal, actions)
    calls = [(tool["function"]["name"], args)
             for args in fill_arguments(tool, goal, inputs, _focus(knowledge, goal),
                                        passages=knowledge)]
    return _tool_calls_message(calls, salt=human + salt)


def _condition_holds(condition: str, inputs: str) -> str | None:
    """None when the condition holds (act); else the reply that says why not."""
    if not inputs:
        return f"CANNOT: nothing here shows whether {condition}"
    words = [w for w in re.findall(r"[a-z]+", condition.lower())]
    state = STATE_WORDS.get(words[-1], words[-1]) if words else ""
    seen = bool(re.search(rf"\b(?:is|are|was|went|goes)\s+(?:\w+\s+)?{state}\b",
                          inputs.lower()))
    negative = condition.lower().startswith("unless")
    if seen != negative:
        return None
    return f"NOT NEEDED: the condition does not hold ({condition}; inputs: {inputs[:200]})"


def _after_tool_results(messages: list[BaseMessage], human: str, tools: list[dict[str, Any]]
                        ) -> AIMessage:
    # Tool messages over HTTP carry only the call id: name them from the calls made.
    names = {c["id"]: c["name"] for m in messages if isinstance(m, AIMessage)
             for c in m.tool_calls}
    called = [(names.get(m.tool_call_id, m.name), m) for m in messages
              if isinstance(m, ToolMessage)]
    retrieved = [str(m.text) for name, m in called if name == RETRIEVE_TOOL]
    if len(retrieved) == len(called) and any(
            t["function"]["name"] != RETRIEVE_TOOL for t in tools):
        return _tool_call_reply(human, tools, knowledge="\n".join(retrieved),
                                salt="after-retrieve")
    report = _report_tool_results(messages)
    citations = _citations(retrieved, _first_tag(human, "goal") or human)
    return AIMessage(content=f"{report} (per {', '.join(citations)})" if citations else report)


def _focus(knowledge: str, goal: str) -> str:
    """Sentences that mention the goal's identifiers first: what a reader would act on."""
    anchors = [a for a in re.findall(r"\b[a-z]+-\d+\b", goal.lower())]
    sentences = re.split(r"(?<=[.;!?])\s+", knowledge)
    if not anchors:
        return knowledge
    first = [s for s in sentences if any(a in s.lower() for a in anchors)]
    return " ".join(first + [s for s in sentences if s not in first])


def _citations(retrieved: list[str], goal: str) -> list[str]:
    """The passages it used: those naming the goal's identifiers first, two per lookup."""
    anchors = re.findall(r"\b[a-z]+-\d+\b", goal.lower())
    found: list[str] = []
    for text in retrieved:
        passages = re.findall(r"^\[([^\]\s]+#\d+)\]([^\n]*(?:\n(?!\[)[^\n]*)*)", text,
                              re.MULTILINE)
        ranked = sorted(passages, key=lambda p: not any(a in p[1].lower() for a in anchors))
        for citation, _ in ranked[:2]:
            if f"[{citation}]" not in found:
                found.append(f"[{citation}]")
    return found


def _best_tool(goal: str, tools: list[dict[str, Any]]) -> dict[str, Any]:
    def score(tool: dict[str, Any]) -> int:
        fn = tool["function"]
        return overlap_score(goal, [(fn["name"], 3), (fn.get("description", ""), 1)])

    return max(tools, key=score)  # first of equals wins: agents list their main tool first


def fill_arguments(tool: dict[str, Any], goal: str, inputs: str = "", knowledge: str = "",
                   passages: str = "") -> list[dict[str, Any]]:
    """Arguments for ``tool`` from the text; one call per distinct id the goal names.

    Ids come from the goal, then the dependencies' outputs; retrieved knowledge only fills
    optional id fields (it says how to act, not on what); the retrieved ``passages``, as
    they came with their citation markers, follow the goal in free text.
    """
    params = tool["function"].get("parameters", {})
    required = set(params.get("required", []))
    text = f"{goal} {inputs}".strip()
    base: dict[str, Any] = {}
    fan_out: tuple[str, list[str]] | None = None
    for name, prop in params.get("properties", {}).items():
        schema = non_null(prop)
        value: Any = None
        if "enum" in schema:
            value = _enum_value(schema["enum"], text, prop.get("default"))
        elif schema.get("type") == "string" and "pattern" in schema:
            from_goal = find_pattern(schema["pattern"], goal)
            found = from_goal
            if not found and name not in required:
                # An optional target (which pool) comes from procedure, not from what an
                # earlier step saw (the current pool): inputs only fill what is required.
                found = find_pattern(schema["pattern"], knowledge)
            elif not found:
                found = find_pattern(schema["pattern"], inputs)
            if len(from_goal) > 1 and name in required and fan_out is None:
                fan_out = (name, from_goal[:5])
            value = found[0] if found else None
        elif schema.get("type") == "string" and name in required:
            # Free text: the goal and inputs, then what it looked up (with its citations).
            extra = passages or knowledge
            value = text[:600] if not extra else f"{text[:600]}\n{extra[:1500]}"
        elif schema.get("type") in ("integer", "number"):
            value = _number_near(name, text, schema.get("type") == "integer")
        if value is None and "default" in prop:
            continue
        if value is not None:
            base[name] = value
    if fan_out is None:
        return [base]
    name, values = fan_out
    return [{**base, name: value} for value in values]


def _enum_value(options: list[Any], text: str, default: Any) -> Any:
    lowered = text.lower()
    hits = [(lowered.find(str(o).lower()), o) for o in options
            if re.search(rf"\b{re.escape(str(o).lower())}\b", lowered)]
    if hits:
        return min(hits, key=lambda hit: hit[0])[1]
    return default if default is not None else None


def _number_near(name: str, text: str, integer: bool) -> float | int | None:
    word = re.escape(name.replace("_", " "))
    match = re.search(rf"{word}\D{{0,12}}(\d+(?:\.\d+)?)|(\d+(?:\.\d+)?)\s*{word}", text, re.I)
    if not match:
        return None
    number = float(match.group(1) or match.group(2))
    return int(number) if integer else number


def _report_tool_results(messages: list[BaseMessage]) -> str:
    results: list[str] = []
    for message in reversed(messages):
        if not isinstance(message, ToolMessage):
            break
        results.append(message.text)
    return " ".join(reversed(results))


# --- synthesizer -------------------------------------------------------------------------


def synthesize_answer(human: str) -> str:
    """The answer from ``<result>`` blocks: what was done, then what failed."""
    done: list[str] = []
    failed: list[str] = []
    recovered: list[str] = []
    unknown: list[str] = []
    not_needed: list[str] = []
    for attrs, body in extract_tag(human, "result"):
        label = attrs.get("agent", "agent")
        if attrs.get("status") == "done":
            done.append(f"- {label}: {body}")
        elif attrs.get("status") == "not needed":
            not_needed.append(f"- {label}: {body}")
        elif attrs.get("status") == "replaced":
            recovered.append(f"- {label} failed ({body})")
        elif attrs.get("status") == "unknown":
            unknown.append(f"- {label}: {body}")
        else:
            failed.append(f"- {label} ({attrs.get('status', 'failed')}): {body}")
    lines = [f"Completed {len(done)} of {len(done) + len(failed) + len(unknown)} subtasks."]
    lines.extend(done)
    if recovered:
        lines.append("Recovered:")
        lines.extend(recovered)
    if unknown:
        lines.append("Outcome unknown (check before trying again):")
        lines.extend(unknown)
    if not_needed:
        lines.append("Not needed (its condition did not hold):")
        lines.extend(not_needed)
    if failed:
        lines.append("Not done:")
        lines.extend(failed)
    return "\n".join(lines)


# --- helpers -----------------------------------------------------------------------------


def _tool_calls_message(calls: list[tuple[str, dict[str, Any]]], salt: str) -> AIMessage:
    tool_calls = []
    for index, (name, args) in enumerate(calls):
        tool_calls.append({"name": name, "args": args, "id": tool_call_id(name, args, salt, index),
                           "type": "tool_call"})
    return AIMessage(content="", tool_calls=tool_calls)


def tool_call_id(name: str, args: dict[str, Any], salt: str, index: int = 0) -> str:
    """Deterministic id: the same request and call always get the same id."""
    import hashlib

    digest = hashlib.sha1(
        json.dumps([name, args, salt, index], sort_keys=True, default=str).encode()
    ).hexdigest()
    return f"call_{digest[:16]}"


def _first_tag(text: str, tag: str) -> str | None:
    found = extract_tag(text, tag)
    return found[0][1] if found else None


def _first_human(messages: list[BaseMessage]) -> str:
    return next((m.text for m in messages if isinstance(m, HumanMessage)), "")


def _last_human(messages: list[BaseMessage]) -> str:
    return next((m.text for m in reversed(messages) if isinstance(m, HumanMessage)), "")
