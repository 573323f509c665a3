"""The financial services specialists: monitoring, fraud, compliance, verification, onboarding."""

from __future__ import annotations

from orchestrator.agents.finance import tools as t
from orchestrator.agents.spec import AgentSpec
from orchestrator.retrieval.tool import retrieve


def finance_agents() -> list[AgentSpec]:
    """The financial services pack."""
    return [
        AgentSpec(
            name="transaction_monitoring",
            description="Watches transactions: flags suspicious ones, holds and releases them.",
            skills=["hold transaction", "pause transaction", "release transaction",
                    "suspicious transactions", "monitor transactions"],
            prompt="Hold first when in doubt; releasing a hold needs an approval.",
            tools=[t.hold_transaction, t.release, t.list_suspicious_transactions],
            domain="finance", source="built-in",
        ),
        AgentSpec(
            name="fraud_analysis",
            description="Scores a transaction's fraud risk from rules and the client's history.",
            skills=["fraud score", "fraud risk", "analyse transaction", "risk score"],
            tools=[t.score_transaction], domain="finance", source="built-in",
        ),
        AgentSpec(
            name="compliance",
            description="Notifies the compliance team and files compliance cases.",
            skills=["compliance", "notify compliance", "file case", "suspicious activity report"],
            prompt="Follow the fraud policy; say the score and the reasons.",
            tools=[t.notify_compliance, t.file_compliance_case, retrieve],
            collections=["finance"], domain="finance", source="built-in",
        ),
        AgentSpec(
            name="customer_verification",
            description="Sends clients verification requests to confirm transactions.",
            skills=["verification request", "verify client", "confirm transaction"],
            tools=[t.request_verification], domain="finance", source="built-in",
        ),
        AgentSpec(
            name="onboarding_documents",
            description="Checks clients' onboarding (KYC) documents and requests missing ones.",
            skills=["onboarding documents", "kyc", "missing documents", "documents"],
            tools=[t.check_documents, t.request_missing_documents],
            domain="finance", source="built-in",
        ),
    ]
