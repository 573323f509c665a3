"""The orchestrator's A2A agent card: who it is, where its endpoint is, the skills of its
enabled agents and request-triggered playbooks, and the API keys it takes.

The card is public, as A2A discovery expects (``/.well-known/agent-card.json``): it says
what the agents do (name, description, skill tags), never their tools, data or statistics;
everything else the A2A endpoint answers needs a key with the ``chat`` scope.
"""

from __future__ import annotations

from collections.abc import Sequence

from a2a.types.a2a_pb2 import (
    AgentCapabilities,
    AgentCard,
    AgentInterface,
    AgentSkill,
    HTTPAuthSecurityScheme,
    SecurityRequirement,
    SecurityScheme,
    StringList,
)
from a2a.utils.constants import PROTOCOL_VERSION_0_3, PROTOCOL_VERSION_1_0, TransportProtocol

from orchestrator.agents.catalog import AgentEntry
from orchestrator.playbooks import Playbook

SECURITY_SCHEME = "apiKey"
"""The card's name for the server's API keys (``Authorization: Bearer ok_...``)."""
_DESCRIPTION = (
    "An LLM supervisor that plans each request, runs specialist agents in parallel (each "
    "with only its own tools) and writes one answer. Send a request as a text message; a "
    "conversation goes on in its contextId. Writes that need a person's approval pause the "
    "task in input-required, naming the exact calls and how to approve them.")


def orchestrator_card(agents: Sequence[AgentEntry], playbooks: Sequence[Playbook], *,
                      url: str, version: str) -> AgentCard:
    """The card of an orchestrator with ``agents`` and ``playbooks`` whose JSON-RPC endpoint
    is ``url`` (absolute), for protocol 1.0 and, on the same URL, 0.3."""
    return AgentCard(
        name="agent-orchestrator",
        description=_DESCRIPTION,
        version=version,
        supported_interfaces=[
            AgentInterface(url=url, protocol_binding=TransportProtocol.JSONRPC,
                           protocol_version=PROTOCOL_VERSION_1_0),
            AgentInterface(url=url, protocol_binding=TransportProtocol.JSONRPC,
                           protocol_version=PROTOCOL_VERSION_0_3)],
        capabilities=AgentCapabilities(streaming=True, push_notifications=False),
        security_schemes={SECURITY_SCHEME: SecurityScheme(
            http_auth_security_scheme=HTTPAuthSecurityScheme(
                scheme="bearer", bearer_format="ok_ API key",
                description="An API key of the server with the chat scope "
                "(`orchestrator keys create NAME --scopes chat`); its tenant owns the "
                "tasks and conversations."))},
        security_requirements=[SecurityRequirement(
            schemes={SECURITY_SCHEME: StringList(list=["chat"])})],
        default_input_modes=["text/plain"],
        default_output_modes=["text/plain", "application/json"],
        skills=[*(_agent_skill(a) for a in agents),
                *(_playbook_skill(p) for p in playbooks if p.trigger.pattern)])


def _agent_skill(agent: AgentEntry) -> AgentSkill:
    return AgentSkill(id=agent.name, name=agent.name, description=agent.description,
                      tags=[agent.domain, *agent.skills])


def _playbook_skill(playbook: Playbook) -> AgentSkill:
    """A playbook a message can start: its pattern says which messages do."""
    return AgentSkill(
        id=f"playbook:{playbook.name}", name=f"{playbook.name} (playbook)",
        description=f"{playbook.description} Runs its fixed steps when a message matches "
        f"the pattern {playbook.trigger.pattern}",
        tags=["playbook", *([playbook.pack] if playbook.pack else []), *playbook.agents])
