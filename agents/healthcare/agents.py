"""The healthcare specialists. Only ``patient_history`` can read patient records (its tools
are audited; the full record needs an approval); the others work from what they are given."""

from __future__ import annotations

from orchestrator.agents.healthcare import tools as t
from orchestrator.agents.spec import AgentSpec
from orchestrator.retrieval.tool import retrieve


def healthcare_agents() -> list[AgentSpec]:
    """The healthcare pack."""
    return [
        AgentSpec(
            name="appointments",
            description="Arranges specialist appointments for patients.",
            skills=["specialist appointment", "specialist visit", "cardiology visit",
                    "pulmonology visit", "endocrinology visit", "dermatology visit"],
            tools=[t.book_specialist_visit], domain="healthcare", source="built-in",
        ),
        AgentSpec(
            name="patient_history",
            description="Reads patient history for clinicians (the only agent that may).",
            skills=["patient history", "medical history", "patient record", "summarize history"],
            prompt="Share only what the clinician needs; the full record needs an approval.",
            tools=[t.patient_summary, t.full_record], domain="healthcare", source="built-in",
        ),
        AgentSpec(
            name="diagnostics_prep",
            description="Orders the diagnostic tests a specialist visit needs beforehand.",
            skills=["diagnostics", "order tests", "lab tests", "prepare diagnostics"],
            tools=[t.order_diagnostics], domain="healthcare", source="built-in",
        ),
        AgentSpec(
            name="billing",
            description="Estimates what a visit costs and what the insurer covers.",
            skills=["estimate", "cost", "billing", "pre-visit estimate"],
            prompt="Follow the billing policy.",
            tools=[t.estimate_visit_cost, retrieve], collections=["healthcare"],
            domain="healthcare", source="built-in",
        ),
        AgentSpec(
            name="visit_documentation",
            description="Records visit summaries with follow-up instructions and submits "
            "insurance records after a visit.",
            skills=["visit summary", "follow-up instructions", "insurance record",
                    "visit documentation"],
            tools=[t.write_visit_summary, t.submit_insurance_record],
            domain="healthcare", source="built-in",
        ),
    ]
