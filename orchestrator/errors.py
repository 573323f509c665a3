"""One error hierarchy for the whole package.

User mistakes (bad config, bad input, an invalid plan the model could not repair)
subclass :class:`OrchestratorError`; the CLI prints them as one line. Anything
else is a bug and keeps its traceback.
"""

from __future__ import annotations


class OrchestratorError(Exception):
    """Root of every error the orchestrator raises on purpose."""


class ConfigError(OrchestratorError):
    """Settings, model specs, agent cards or plugins are wrong."""


class RequestError(OrchestratorError):
    """The user's request cannot be run as given (empty, too long, ...)."""


class ThreadBusyError(RequestError):
    """The thread is running another turn (in this process or another): one turn of a
    conversation at a time."""


class RequestRunningError(RequestError):
    """A request id sent again while its first run is still running: send it again once
    that run has ended to get its result."""


class DrivenElsewhereError(RequestError):
    """The run is driven by another kind of process (its Temporal workflow, or the process
    that ran it locally): decide or resume it there, so one driver applies each decision."""


class ModelError(OrchestratorError):
    """The model could not be created or did not behave (bad output after repairs)."""


class ScriptExhaustedError(ModelError):
    """A scripted fake model was called more times than it has replies."""


class PlanError(OrchestratorError):
    """The supervisor could not produce a valid plan."""


class AgentError(OrchestratorError):
    """A specialist agent failed its subtask."""


class ToolRefusedError(AgentError):
    """An agent asked for a tool it is not allowed to call."""


class BudgetExceededError(OrchestratorError):
    """A run budget (LLM calls, tokens, cost, wall time) is used up: no new work starts."""


_PROVIDER_MODULES = ("openai", "httpx", "httpcore", "anthropic", "google", "aiohttp",
                     "requests", "urllib3", "langchain_openai")


def is_model_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is a model provider's failure (network, HTTP, rate limit, a model that
    misbehaved) rather than a bug in the engine or a tool wrapper: only the former is
    worth a retry as a model error; bugs are logged with their traceback."""
    if isinstance(exc, ModelError | TimeoutError | ConnectionError):
        return True
    module = type(exc).__module__.split(".", 1)[0]
    return module in _PROVIDER_MODULES
