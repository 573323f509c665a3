"""Every event type has a schema for its data, and a payload that does not fit is caught
(the suite runs with ORCHESTRATOR_STRICT_EVENTS=1, so every event any test emits is checked)."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import get_args

from orchestrator.events import EVENT_DATA, EventType, payload_problems


def test_every_event_type_has_a_schema() -> None:
    assert set(EVENT_DATA) == set(get_args(EventType))


def test_a_payload_that_does_not_fit_is_named() -> None:
    good = {"status": "done", "kind": None, "attempts": 1}
    assert payload_problems("subtask_finished", good) == []
    assert payload_problems("subtask_finished", {"kind": None, "atempts": 1}) == [
        "subtask_finished: missing 'status'", "subtask_finished: unknown key 'atempts'"]
    assert payload_problems("reassigned", {"from": "a", "to": "b", "reason": "r",
                                           "after": None, "kind": None}) == []
    assert payload_problems("no_such_event", {}) == ["unknown event type 'no_such_event'"]


def test_strict_mode_raises_at_emit_and_is_on_in_the_suite() -> None:
    assert os.environ.get("ORCHESTRATOR_STRICT_EVENTS") == "1"
    probe = ("from orchestrator.events import emit\n"
             "emit('plan_invalid', 'r1', data={'error': 'x', 'attempt': 1})\n"
             "try:\n"
             "    emit('plan_invalid', 'r1', data={'error': 'x'})\n"
             "except AssertionError as exc:\n"
             "    print(exc)\n")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True,
                         timeout=60, env={**os.environ, "ORCHESTRATOR_STRICT_EVENTS": "1"})
    assert out.stdout.strip() == "plan_invalid: missing 'attempt'", out.stderr
