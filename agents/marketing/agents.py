"""The marketing specialists: content writer, campaign manager, email scheduler, analytics."""

from __future__ import annotations

from orchestrator.agents.marketing import tools as t
from orchestrator.agents.spec import AgentSpec
from orchestrator.retrieval.tool import retrieve


def marketing_agents() -> list[AgentSpec]:
    """The marketing pack."""
    return [
        AgentSpec(
            name="content_writer",
            description="Drafts campaign emails from product facts in the knowledge base, "
            "with citations.",
            skills=["campaign email", "email copy", "content", "campaign content"],
            prompt="Use only facts from the knowledge base and keep their citations.",
            tools=[t.draft_campaign_email, retrieve], collections=["marketing"],
            domain="marketing", source="built-in",
        ),
        AgentSpec(
            name="campaign_manager",
            description="Starts campaigns and keeps their plan for the next send.",
            skills=["start campaign", "campaign plan", "next send plan", "launch"],
            tools=[t.start_campaign, t.update_next_send_plan],
            domain="marketing", source="built-in",
        ),
        AgentSpec(
            name="email_scheduler",
            description="Schedules campaign emails at the hour the audience opens most.",
            skills=["schedule email", "send time", "best send time", "email schedule"],
            tools=[t.schedule_email], domain="marketing", source="built-in",
        ),
        AgentSpec(
            name="analytics",
            description="Measures campaign engagement (open and click rates) and advises "
            "on the next send.",
            skills=["engagement", "open rate", "click rate", "analyse campaign", "metrics"],
            tools=[t.analyze_campaign], domain="marketing", source="built-in",
        ),
    ]
