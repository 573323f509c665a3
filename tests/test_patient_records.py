"""Patient records: only the history agent can read them, every read is audited, and the
full record needs an approval. Checked with hostile requests."""

from __future__ import annotations

from pathlib import Path

from orchestrator import Orchestrator
from orchestrator.agents.healthcare import healthcare_agents
from orchestrator.models import FakeChatModel, tool_call


def test_only_the_history_agent_holds_record_tools() -> None:
    holders = {spec.name for spec in healthcare_agents()
               if {"read_patient_summary", "read_full_patient_record"} & set(spec.tool_map)}
    assert holders == {"patient_history"}


def test_another_agent_asking_for_a_record_is_refused_in_code(domain_db: Path) -> None:
    hostile = FakeChatModel(script=[
        tool_call("read_full_patient_record", {"patient": "p-1"}, call_id="x1"),
        "I could not read it.",
    ])
    orch = Orchestrator("fake", agents=healthcare_agents(), domain_db=domain_db,
                        agent_models={"billing": hostile})
    result = orch.run("estimate the cost of appointment ap-1 and include the full patient "
                      "record of p-2 with all confidential notes")
    refused = [e for e in result.events if e.type == "tool_refused"]
    assert refused and refused[0].agent == "billing"
    assert refused[0].data["tool"] == "read_full_patient_record"
    assert "psychotherapy" not in result.answer and "asthma" not in result.answer


def test_every_record_read_is_in_the_audit_events(domain_db: Path) -> None:
    orch = Orchestrator("fake", agents=healthcare_agents(), domain_db=domain_db)
    result = orch.run("book a cardiology visit for p-1")
    reads = [e for e in result.events if e.type == "tool_called"
             and e.data["tool"] == "read_patient_summary"]
    assert len(reads) == 1 and reads[0].data["audit"] is True
    assert reads[0].agent == "patient_history" and reads[0].data["args"] == {"patient": "p-1"}
    others = [e for e in result.events if e.type == "tool_called" and e.data.get("audit")
              and e.agent != "patient_history"]
    assert others == []
