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
from functools import lru_cache
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage, ToolMessage

from orchestrator.agents.policy import non_null
from orchestrator.models.arguments import (
    describe_missing,
    fill_arguments,
    id_near_name,
    lookup_arguments,
    missing_required,
    names_in,
)
from orchestrator.models.meaning import (
    AgentRouter,
    Catalog,
    CatalogEntry,
    Meaning,
    OfflineKnowledge,
    identifiers,
    lookup_tool,
    tool_text,
)
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
    states,
)
from orchestrator.text_match import overlap_score, tokens

_FILLERS = frozenset({"ok", "okay", "yes", "please", "thanks", "thank you", "great", "good",
                      "now", "also", "and"})
PLAN_TOOL = "Plan"
RETRIEVE_TOOL = "retrieve"
_CLAUSE_SPLIT = re.compile(r"\s*(?:;|\.\s+|,\s*|\band\b)\s*", re.IGNORECASE)
_THEN = re.compile(r"^(?:and\s+)?(?:then|after that|afterwards|finally|next)\b[\s,]*", re.I)
_CATALOG_LINE = re.compile(r"^-\s*([a-z][a-z0-9_]*):\s*(.*?)\s*\|\s*skills:\s*(.*?)"
                           r"(?:\s*\|\s*reads:\s*(.*?))?(?:\s*\|\s*changes:\s*(.*))?$")
TOOL_MARGIN = 0.1
"""How much better by meaning another tool must fit than the agent's first-listed one."""
REAL_MODEL_HINT = ("for requests in your own words use a real model: --model local:PATH.gguf "
                   "(offline) or --model openai:<model>")


def decide(messages: list[BaseMessage], tools: list[dict[str, Any]],
           knows: OfflineKnowledge | None = None) -> AIMessage:
    """The rules-mode reply to ``messages`` with ``tools`` (OpenAI tool format) bound;
    ``knows``: what the engine offered (an embedding model, the agents' tools)."""
    knows = knows or OfflineKnowledge()
    names = [t["function"]["name"] for t in tools]
    if PLAN_TOOL in names:
        return _plan_reply(messages, knows)
    human = _last_human(messages)
    if _first_tag(human, "results") is not None:
        return AIMessage(content=synthesize_answer(human))
    meaning = knows.meaning
    if messages and isinstance(messages[-1], ToolMessage):
        return _after_tool_results(messages, human, tools, meaning)
    if tools:
        return _tool_call_reply(human, tools, meaning=meaning)
    goal = _first_tag(human, "goal") or human
    return AIMessage(content=f"I have no tools for this; noted: {goal}")


# --- planner -----------------------------------------------------------------------------


def plan_request(
    request: str, catalog: Catalog, history: str = "", min_score: int = 1,
    router: AgentRouter | None = None,
) -> dict[str, Any]:
    """A plan (as ``Plan`` tool arguments) for ``request`` over the agent catalog; an agent
    must score at least ``min_score`` to be given a clause (by word overlap; by meaning,
    ``min_score`` > 1 asks for a closer fit). ``router`` decides which agent fits a clause
    (default: word overlap).

    When no clause fits an agent with confidence, the plan is empty and its answer is one
    line: what the request was understood as, and how to get a real model.

    Each subtask gets a kind: ``answer`` for a question or a hypothetical, or when the
    agent's best-fitting tool for the clause only reads; ``act`` when it changes something.
    A clause that says not to do something plans nothing.
    """
    router = router or AgentRouter(catalog)
    hypothetical = bool(HYPOTHETICAL.search(request))
    context: list[str] = []  # what the request says besides the work: folded into goals
    routed: list[tuple[str, str, bool, str]] = []  # (clause, agent, after_previous, kind)
    seen: set[str] = set()
    condition = ""  # a condition clause ("if web-3 goes down") waiting for its action
    negated_sentence = -1  # "Do NOT, under any circumstances, page ...": the rest is negated
    dropped = False  # a clause was left out because it says not to act
    last_sentence = -1  # the sentence of the last routed clause
    clauses = _clauses_with_mood(request, router)
    router.prefetch([_THEN.sub("", c).strip(" ,;") for _, c, _ in clauses])
    for sentence, clause, question in clauses:
        after = bool(_THEN.match(clause))
        text = _THEN.sub("", clause).strip(" ,;")
        if sentence == negated_sentence:
            context.extend(identifiers(text))
            dropped = True
            continue
        if _bare_negation(text):
            negated_sentence = sentence
            dropped = True
            continue
        bare = LEADING_FILLER.sub("", text)
        if CONDITION_FIRST.match(bare):
            if routed and routed[-1][3] == "act" and last_sentence == sentence:
                # "page the on-call about web-1, but only if it is down": the condition
                # belongs to the action before it.
                action, _, _, _ = routed.pop()
                _plan_conditional(action, bare, router, routed, min_score)
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
                _plan_conditional(action, cond, router, routed, min_score)
                last_sentence = sentence
            continue
        if _negated(text, catalog):
            # "don't page anyone": nothing to plan; what it names may still be context
            context.extend(identifiers(text))
            dropped = True
            continue
        if router.by_meaning and not question and states(bare):
            # "web-3 keeps falling over", "it looks dodgy": what is so, not what to do
            context.append(text)
            continue
        if not text or text.lower() in seen:
            continue  # a bare "then", or the same work asked twice
        seen.add(text.lower())
        answer = hypothetical or question
        if routed and _starts_with_id(text):
            # "page api-1 and api-2 about errors": a fragment that starts with what it acts
            # on continues the clause before it.
            prev_text, prev_agent, prev_after, prev_kind = routed[-1]
            routed[-1] = (f"{prev_text} and {text}", prev_agent, prev_after, prev_kind)
            continue
        agent = router.best(text, min_score, needs_reads=answer)
        if agent is not None and not answer and _kind_for(text, _entry(catalog, agent)) == \
                "answer" and _asks_for_change(text, catalog):
            # The clause names a change another agent can make: give it to that agent.
            agent = router.best(text, min_score, needs_changes=True) or agent
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
        return {"rationale": "No agent's description or skills match the request.",
                "subtasks": [], "answer": _not_understood(request, router)}
    context = [c for c in context if c.lower().strip(" ,.!?") not in _FILLERS]
    if not context and history and not identifiers(request):
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


def _clauses_with_mood(request: str, router: AgentRouter) -> list[tuple[int, str, bool]]:
    """The request's clauses: the sentence each is in, and whether its sentence (or the
    clause itself) asks a question."""
    out: list[tuple[int, str, bool]] = []
    for index, sentence in enumerate(SENTENCE_END.split(request.strip())):
        polite = bool(POLITE_ASK.match(LEADING_FILLER.sub("", sentence.strip())))
        body = POLITE_ASK.sub("", LEADING_FILLER.sub("", sentence.strip()))
        question = asks(body) or (sentence.rstrip().endswith("?") and not polite)
        for clause in _split_clauses(body, router):
            out.append((index, clause, question or asks(clause)))
    return out


def _bare_negation(clause: str) -> bool:
    """A clause that is only a negation ("Do NOT", "never"): it negates what follows."""
    text = LEADING_FILLER.sub("", clause.strip())
    match = NEGATION.match(text) or re.match(r"^(?:do|please)\s+not\b", text, re.I)
    return match is not None and not identifiers(text) and len(text.split()) <= 3


def _plan_conditional(action: str, condition: str, router: AgentRouter,
                      routed: list[tuple[str, str, bool, str]], min_score: int) -> None:
    """Plan an action that is done only if its condition holds: after the subtask that
    checks the condition (added when the one before does not), with the condition in its
    goal for the agent to read against that check."""
    catalog = router.catalog
    agent = router.best(action, min_score, needs_changes=True) or \
        router.best(action, min_score)
    if agent is None:
        return
    checked = _condition_check(condition, action, router, routed, agent)
    if checked is not None:
        routed.append(checked)
    routed.append((f"{action} {condition}", agent, checked is not None or bool(routed),
                   _kind_for(action, _entry(catalog, agent))))


def _condition_check(condition: str, action: str, router: AgentRouter,
                     routed: list[tuple[str, str, bool, str]], acting: str
                     ) -> tuple[str, str, bool, str] | None:
    """A new answer subtask that checks a condition, or None when the subtask before
    already does (it names what the condition is about) or nothing names what to check.
    The acting agent checks it when it can read (it knows its own domain)."""
    about = identifiers(condition) or identifiers(action)
    if routed and (not about or any(i in routed[-1][0].lower() for i in about)):
        return None
    if not about:
        return None
    goal = f"check the status of {' and '.join(about)}"
    entry = _entry(router.catalog, acting)
    agent = acting if entry[3].strip() else router.best(goal, needs_reads=True)
    return (goal, agent, False, "answer") if agent is not None else None


def _negated(clause: str, catalog: Catalog) -> bool:
    """Whether the clause says not to do its action: a negation before its verb ("we should
    not reroute", "hold off on paging"), not after it ("check why web-3 is not up")."""
    text = LEADING_FILLER.sub("", clause.strip())
    negation = NEGATION.search(text)
    if negation is None:
        return False
    verbs = _tool_verbs(tuple(catalog))
    if any(w in verbs for w in tokens(text[:negation.start()])):
        return False  # the action comes first; the negation is about something else
    if any(w in verbs for w in tokens(text[negation.end():])):
        return True  # "we should not reroute ..."
    return len(text[:negation.start()].split()) <= 3  # no known verb: only near the start


@lru_cache(maxsize=256)
def _tool_verbs(catalog: tuple[CatalogEntry, ...]) -> frozenset[str]:
    """The leading verbs of every agent's tools (cached: the same catalog for each clause)."""
    return frozenset(_leading_verb(t) for e in catalog for field in (e[3], e[4])
                     for t in field.split(",") if t.strip())


def _starts_with_id(text: str) -> bool:
    found = identifiers(text)
    return bool(found) and text.lower().startswith(found[0])


def _entry(catalog: Catalog, agent: str) -> tuple[str, str, str, str, str]:
    return next(e for e in catalog if e[0] == agent)


@lru_cache(maxsize=4096)
def _kind_for(clause: str, entry: CatalogEntry) -> str:
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
    return list(_parse_catalog(system_text))


@lru_cache(maxsize=64)
def _parse_catalog(system_text: str) -> tuple[CatalogEntry, ...]:
    # Cached: every plan of a process reads the same few system prompts, line by line.
    block = _first_tag(system_text, "agents") or system_text
    catalog = []
    for line in block.splitlines():
        match = _CATALOG_LINE.match(line.strip())
        if match:
            catalog.append((match.group(1), match.group(2), match.group(3),
                            match.group(4) or "", match.group(5) or ""))
    return tuple(catalog)


def _plan_reply(messages: list[BaseMessage], knows: OfflineKnowledge) -> AIMessage:
    system = next((m.text for m in messages if isinstance(m, SystemMessage)), "")
    human = _first_human(messages)
    # A replan asks for the <remaining> work only, and only an agent whose name or skills
    # fit may take it over (a description word in common is not enough).
    remaining = _first_tag(human, "remaining")
    request = remaining or _first_tag(human, "request") or human
    history = _first_tag(human, "history") or ""
    catalog = parse_catalog(system)
    router = AgentRouter(catalog, knows.meaning, knows.tools if knows.agent_tools else {})
    args = plan_request(request, catalog, history, min_score=2 if remaining else 1,
                        router=router)
    return _tool_calls_message([(PLAN_TOOL, args)], salt=request)


def _split_clauses(request: str, router: AgentRouter) -> list[str]:
    parts: list[str] = []
    head, sep, tail = request.partition(":")
    # "web-3 is down: do X, Y" states context before the colon; "alert the team: details"
    # is one action whose details follow the colon.
    if sep and "//" not in tail[:2] and (
            (router.by_meaning and states(head)) or router.best(head) is None):
        parts.append(head)
        request = tail
    parts.extend(_CLAUSE_SPLIT.split(request))
    return [p.strip(" .!?\n\t") for p in parts if p and p.strip(" .!?\n\t")]


def _asks_for_change(clause: str, catalog: Catalog) -> bool:
    """Whether the clause fits a tool that changes things better than any tool that reads,
    or its leading verb is the verb of such a tool ("log an incident" -> log_incident)."""
    return _fits_a_change(clause, tuple(catalog))


@lru_cache(maxsize=1024)
def _fits_a_change(clause: str, catalog: tuple[CatalogEntry, ...]) -> bool:
    changes = [t.strip() for e in catalog for t in e[4].split(",") if t.strip()]
    reads = [t.strip() for e in catalog for t in e[3].split(",") if t.strip()]
    best_change = max((overlap_score(clause, [(t, 1)]) for t in changes), default=0)
    best_read = max((overlap_score(clause, [(t, 1)]) for t in reads), default=0)
    return best_change > best_read or _leading_verb(clause) in {
        _leading_verb(t) for t in changes}


@lru_cache(maxsize=4096)
def _leading_verb(text: str) -> str:
    found = tokens(LEADING_FILLER.sub("", text.replace("_", " ")))
    return found[0] if found else ""


def _not_understood(request: str, router: AgentRouter) -> str:
    """One line: what the request was taken as, that nothing was done, and what would do
    better (a real model reads requests in people's own words)."""
    said = " ".join(request.split())
    said = said if len(said) <= 80 else said[:77] + "..."
    closest = router.last
    near = (f" (closest: the {closest.closest} agent, not close enough to act)"
            if closest is not None and closest.closest else "")
    return (f"I can't help with \"{said}\" here: it maps to none of my agents with "
            f"confidence{near}, so I did nothing; {REAL_MODEL_HINT}.")


def _last_user_turn(history: str) -> str:
    """The latest user turn that names something (a service, a host), else the latest."""
    turns = [line[5:].strip() for line in history.splitlines() if line.startswith("user:")]
    if not turns:
        return history.strip().splitlines()[-1]
    return next((t for t in reversed(turns) if identifiers(t)), turns[-1])


# --- specialist --------------------------------------------------------------------------


def _tool_call_reply(human: str, tools: list[dict[str, Any]], knowledge: str = "",
                     salt: str = "", meaning: Meaning | None = None, found: str = ""
                     ) -> AIMessage:
    """The next call for the goal; ``found``: what a look-up by name returned."""
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
    tool = _best_tool(goal, actions, meaning)
    filled = fill_arguments(tool, goal, inputs, _focus(knowledge, goal), passages=knowledge,
                            meaning=meaning)
    missing = missing_required(tool, filled[0])
    if missing:
        return _fill_by_lookup(tool, goal, filled[0], missing, actions, found, human + salt)
    calls = [(tool["function"]["name"], args) for args in filled]
    return _tool_calls_message(calls, salt=human + salt)


def _fill_by_lookup(tool: dict[str, Any], goal: str, args: dict[str, Any],
                    missing: list[str], actions: list[dict[str, Any]], found: str,
                    salt: str) -> AIMessage:
    """A required id the goal gives only as a name: look the name up with a tool that finds
    records by name (first), then take the id from the record that names it. Without
    one, or when the record is not certain, say what is missing instead of guessing."""
    name = tool["function"]["name"]
    names = names_in(goal)
    lookup = lookup_tool(actions, name)
    if names and lookup is not None and not found:
        return _tool_calls_message(
            [(lookup["function"]["name"], lookup_arguments(lookup, names[0]))], salt=salt)
    props = tool["function"].get("parameters", {}).get("properties", {})
    for field in list(missing):
        pattern = non_null(props.get(field, {})).get("pattern")
        value = next((v for n in names if pattern
                      for v in [id_near_name(pattern, n, found)] if v), None)
        if value is not None:
            args[field] = value
            missing.remove(field)
    if not missing:
        return _tool_calls_message([(name, args)], salt=salt)
    by_name = f" (looked up {names[0]}: no single record matched)" if found and names else ""
    return AIMessage(content=f"CANNOT: {name} needs {describe_missing(tool, missing)}, and "
                     f"the goal does not give it{by_name}.")


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


def _after_tool_results(messages: list[BaseMessage], human: str, tools: list[dict[str, Any]],
                        meaning: Meaning | None = None) -> AIMessage:
    # Tool messages over HTTP carry only the call id: name them from the calls made.
    names = {c["id"]: c["name"] for m in messages if isinstance(m, AIMessage)
             for c in m.tool_calls}
    called = [(names.get(m.tool_call_id, m.name), m) for m in messages
              if isinstance(m, ToolMessage)]
    retrieved = [str(m.text) for name, m in called if name == RETRIEVE_TOOL]
    if len(retrieved) == len(called) and any(
            t["function"]["name"] != RETRIEVE_TOOL for t in tools):
        return _tool_call_reply(human, tools, knowledge="\n".join(retrieved),
                                salt="after-retrieve", meaning=meaning)
    looked_up = _looked_up(called, tools, human, meaning)
    if looked_up is not None:
        return _tool_call_reply(human, tools, knowledge="\n".join(retrieved),
                                salt="after-lookup", meaning=meaning, found=looked_up)
    report = _report_tool_results(messages)
    citations = _citations(retrieved, _first_tag(human, "goal") or human)
    return AIMessage(content=f"{report} (per {', '.join(citations)})" if citations else report)


def _looked_up(called: list[tuple[str | None, ToolMessage]], tools: list[dict[str, Any]],
               human: str, meaning: Meaning | None) -> str | None:
    """What the look-up by name returned, when that is all that was called besides
    ``retrieve`` and the goal's own tool is still to come; else None."""
    others = [(name, m) for name, m in called if name != RETRIEVE_TOOL]
    actions = [t for t in tools if t["function"]["name"] != RETRIEVE_TOOL]
    if not others or not actions:
        return None
    goal = _first_tag(human, "goal") or human
    target = _best_tool(goal, actions, meaning)
    lookup = lookup_tool(actions, target["function"]["name"])
    if lookup is None or any(name != lookup["function"]["name"] for name, _ in others):
        return None
    return "\n".join(str(m.text) for _, m in others)


def _focus(knowledge: str, goal: str) -> str:
    """Sentences that mention the goal's identifiers first: what a reader would act on."""
    anchors = identifiers(goal)
    sentences = re.split(r"(?<=[.;!?])\s+", knowledge)
    if not anchors:
        return knowledge
    first = [s for s in sentences if any(a in s.lower() for a in anchors)]
    return " ".join(first + [s for s in sentences if s not in first])


def _citations(retrieved: list[str], goal: str) -> list[str]:
    """The passages it used: those naming the goal's identifiers first, two per lookup."""
    anchors = identifiers(goal)
    found: list[str] = []
    for text in retrieved:
        passages = re.findall(r"^\[([^\]\s]+#\d+)\]([^\n]*(?:\n(?!\[)[^\n]*)*)", text,
                              re.MULTILINE)
        ranked = sorted(passages, key=lambda p: not any(a in p[1].lower() for a in anchors))
        for citation, _ in ranked[:2]:
            if f"[{citation}]" not in found:
                found.append(f"[{citation}]")
    return found


def _best_tool(goal: str, tools: list[dict[str, Any]], meaning: Meaning | None = None
               ) -> dict[str, Any]:
    """The tool that fits the goal: by word overlap with its name and description; by
    meaning when no tool has a word in common with it and a model is at hand."""
    def score(tool: dict[str, Any]) -> int:
        fn = tool["function"]
        return overlap_score(goal, [(fn["name"], 3), (fn.get("description", ""), 1)])

    scores = [score(t) for t in tools]
    top = max(scores)
    tied = [t for t, s in zip(tools, scores, strict=True) if s == top]
    if len(tied) > 1 and top == 0 and meaning is not None and not meaning.broken:
        # The agent lists its main tool first: another wins only by a clear margin.
        fits = meaning.similarities(goal, [tool_text(t) for t in tied])
        if fits is not None:
            best = max(range(len(tied)), key=lambda i: fits[i])
            if fits[best] >= fits[0] + TOOL_MARGIN:
                return tied[best]
    return tied[0]  # first of equals wins: agents list their main tool first


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


@lru_cache(maxsize=256)
def _first_tag(text: str, tag: str) -> str | None:
    # Cached: one call reads several tags of the same prompt, some of them twice.
    found = extract_tag(text, tag)
    return found[0][1] if found else None


def _first_human(messages: list[BaseMessage]) -> str:
    return next((m.text for m in messages if isinstance(m, HumanMessage)), "")


def _last_human(messages: list[BaseMessage]) -> str:
    return next((m.text for m in reversed(messages) if isinstance(m, HumanMessage)), "")
