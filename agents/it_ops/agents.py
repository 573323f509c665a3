"""The IT operations specialists for the incident scenario."""

from __future__ import annotations

from orchestrator.agents.it_ops import tools as t
from orchestrator.agents.spec import AgentSpec
from orchestrator.retrieval.tool import retrieve


def it_ops_agents() -> list[AgentSpec]:
    """Monitoring, diagnostics, traffic, notifications and incident log."""
    return [
        AgentSpec(
            name="monitoring",
            description="Checks service health: status, uptime and live metrics.",
            skills=["health check", "service status", "metrics", "uptime", "monitor"],
            prompt="Report status and metrics factually; do not change anything.",
            tools=[t.check_service_health, t.list_unhealthy_services],
            domain="it_ops",
            source="built-in",
        ),
        AgentSpec(
            name="diagnostics",
            description="Finds the root cause of an outage from logs and metrics.",
            skills=["root cause", "diagnose", "investigate", "read logs", "show logs",
                    "error logs", "troubleshoot"],
            prompt="State the root cause and the evidence for it.",
            tools=[t.find_root_cause, t.read_service_logs],
            domain="it_ops",
            source="built-in",
        ),
        AgentSpec(
            name="traffic",
            description="Reroutes a service's traffic to a backup pool and shows routes.",
            skills=["reroute traffic", "failover", "backup pool", "show route", "routing",
                    "load balancer"],
            prompt="Only move traffic to healthy backup pools of the same service family. "
            "Check the runbooks first: some services may only use specific backup pools.",
            tools=[t.reroute_traffic, t.show_route, retrieve],
            collections=["it_ops"],
            domain="it_ops",
            source="built-in",
        ),
        AgentSpec(
            name="notifications",
            description="Alerts the on-call team: pages the engineer who owns a service.",
            skills=["alert", "page", "notify", "on-call", "escalate"],
            prompt="Say in the alert what happened and what has been done.",
            tools=[t.alert_oncall],
            domain="it_ops",
            source="built-in",
        ),
        AgentSpec(
            name="incident_log",
            description="Logs incidents in the incident register and lists past incidents.",
            skills=["log incident", "record incident", "incident report", "postmortem"],
            prompt="Write a summary a reader can act on: what, impact, cause, actions.",
            tools=[t.log_incident, t.list_incidents],
            domain="it_ops",
            source="built-in",
        ),
    ]
