"""How a request is meant: a question, a hypothetical, a negation, a condition.

Shared by the playbook matcher (a pattern must not fire on "do not book ...") and the
offline rules model. Plain regular expressions over English: they catch the common
wordings, not every one; a real model reads the request itself.
"""

from __future__ import annotations

import re

SENTENCE_END = re.compile(r"(?<=[?!.;])\s+")
QUESTION_WORDS = frozenset("""what which who whom whose when where why how is are was were do does
did can could should would will has have any anything""".split())  # noqa: SIM905
HYPOTHETICAL = re.compile(r"\b(?:hypothetical(?:ly)?|what if|what would|suppose|supposing|"
                           r"imagine|in theory|would it be|if we were to|pretend|let'?s say|"
                           r"dry[ -]run|simulat(?:e|ion)|as an? (?:drill|exercise)|"
                           r"for an? (?:drill|exercise))\b", re.IGNORECASE)
CONDITION_WORDS = r"(?:only if|if|unless|provided that)"
CONDITION_FIRST = re.compile(rf"^{CONDITION_WORDS}\s", re.IGNORECASE)
CONDITION_INSIDE = re.compile(rf"\s{CONDITION_WORDS}\s", re.IGNORECASE)
STATE_WORDS = {"dies": "down", "die": "down", "fails": "down", "fail": "down",
                "crashes": "down", "crash": "down", "offline": "down", "online": "up"}
LEADING_FILLER = re.compile(r"^(?:(?:but|and|so|please|then|just|also|ok|okay|maybe)\b"
                             r"[\s,]*)+", re.IGNORECASE)
POLITE_ASK = re.compile(r"^(?:can|could|would|will)\s+you\s+(?:please\s+)?",
                         re.IGNORECASE)
""""can you reroute ...?" asks for the action, not whether it is possible."""
ASKS_TO_EXPLAIN = re.compile(r"^(?:tell me|explain|describe|advise|show me how|how (?:do|would|"
                              r"should|can|could) (?:i|we|you)|i wonder|i'?m wondering|"
                              r"do you think)\b", re.IGNORECASE)
NEGATION = re.compile(r"^no\b(?! matter)|\b(?:don'?t|do not|does not|doesn'?t|not|never|"
                      r"no need to|nobody should|avoid|refrain from|hold off|"
                      r"leave\b(?=[^.;!?]*\balone\b)|keep\b(?=[^.;!?]*\bas (?:it )?is\b))\b",
                      re.IGNORECASE)


_NOT_A_SUBJECT = (r"(?!(?:do|does|did|is|are|was|were|can|could|should|would|will|has|have|"
                  r"please|whether|if|unless|that|why|how|what|when|where|who|which)\b)")
STATEMENT = re.compile(rf"^{_NOT_A_SUBJECT}[\w'.-]+(?:\s+{_NOT_A_SUBJECT}[\w'.-]+){{0,2}}\s+"
                       r"(?:is|are|was|were|has been|have been|seems?|looks?|keeps?|went|goes|"
                       r"feels?|appears?)\b", re.IGNORECASE)
"""A clause that says how things are ("web-3 is down", "it looks dodgy", "web-3 keeps
falling over"): context for the work, not work."""


def states(text: str) -> bool:
    """Whether the clause states how things are rather than asking for anything."""
    return bool(STATEMENT.match(LEADING_FILLER.sub("", text.strip())))


def asks(text: str) -> bool:
    """A question or a request to explain (not an instruction to act)."""
    text = LEADING_FILLER.sub("", text.strip())
    if POLITE_ASK.match(text):
        return asks(POLITE_ASK.sub("", text))
    words = text.lower().split(maxsplit=2)
    first = words[0].strip(",") if words else ""
    if first in ("do", "does", "did") and len(words) > 1 and words[1].strip(",") == "not":
        return False  # "do not page anyone": an instruction, not a question
    return first in QUESTION_WORDS or bool(ASKS_TO_EXPLAIN.match(text))


def has_condition(goal: str) -> bool:
    """Whether the goal acts only under a condition ("page its on-call if it is down")."""
    return bool(CONDITION_INSIDE.search(goal) or CONDITION_FIRST.match(goal.strip()))


def only_asks(request: str) -> str | None:
    """Why a whole request can only be answered, never acted on: one question (not a polite
    "can you ...?") or a hypothetical; None otherwise."""
    text = LEADING_FILLER.sub("", request.strip())
    if HYPOTHETICAL.search(text):
        return "it is hypothetical"
    if text.endswith("?") and "?" not in text[:-1] and not POLITE_ASK.match(text):
        return "it asks a question"
    return None


def not_an_instruction(request: str) -> str | None:
    """Why a request that a playbook pattern matched is not an instruction to run it now:
    a question, a hypothetical, a negation near its start, or a condition; None if it is."""
    reason = only_asks(request)
    if reason:
        return reason
    text = LEADING_FILLER.sub("", request.strip())
    if (text.endswith("?") and not POLITE_ASK.match(text)) or asks(text):
        return "it asks a question"
    if NEGATION.search(text):  # the supervisor weighs each clause; a pattern cannot
        return "it says not to do something"
    if has_condition(text):
        return "it acts only under a condition"
    return None
