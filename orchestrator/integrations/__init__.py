"""Agents and tools from elsewhere, under the same least privilege, approvals, budgets and
traces as the built-in ones: MCP servers' tools (:mod:`.mcp_tools`), remote agents over A2A
(:mod:`.a2a_agent`), and in-process agents built with LangGraph (:mod:`.langgraph_agent`)
or the OpenAI Agents SDK (:mod:`.openai_agents`). Each module imports its library only
when it is used."""
