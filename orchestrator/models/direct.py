"""Model calls that go straight to the chat model's ``_agenerate`` when nothing watches them.

``BaseChatModel.ainvoke`` does much around the call itself: it merges the run's config,
configures callbacks and opens a run on each (there are none unless a handler or a tracer
is set), checks the cache and the rate limiter, and wraps the reply in an ``LLMResult``.
In a graph that costs about as much CPU as the offline model's whole answer, on every call,
and a server running many runs at once is bound by that CPU.

:func:`ainvoke_chat` calls ``_agenerate`` (the method every chat model implements) directly
when all of this holds, and otherwise calls ``ainvoke`` (:func:`astream_chat` likewise with
``_astream``, for a model that streams natively and does not disable it):

- the model is a ``BaseChatModel``, bare or with bound arguments (``bind_tools``), and has an
  async ``_agenerate`` of its own (a sync-only model runs in a thread under ``ainvoke``);
- it has no callbacks, cache or rate limiter, is not verbose, and answers in one piece
  (no ``streaming`` or ``stream`` set);
- the run configures no callback handler, no tracer (LangSmith), no configure hook (what
  ``langchain_core.tracers.context.register_configure_hook`` adds) and no debug output.

The reply gets the response metadata ``ainvoke`` gives it (the generation's info and the
result's ``llm_output``); it has no ``lc_run-...`` id, which nothing here reads (the graph's
message reducer gives every message an id). A langchain-core that renames the internals
read here makes every call go through ``ainvoke``.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, cast

from langchain_core.callbacks import BaseCallbackManager
from langchain_core.globals import get_debug, get_llm_cache, get_verbose
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage, BaseMessageChunk
from langchain_core.runnables import Runnable, RunnableBinding
from langchain_core.runnables.config import var_child_runnable_config

try:
    from langchain_core.language_models._utils import _normalize_messages
    from langchain_core.language_models.chat_models import _gen_info_and_msg_metadata
    from langchain_core.tracers.context import _configure_hooks, _tracing_v2_is_enabled
    from langchain_core.utils.env import env_var_is_set
except ImportError:  # pragma: no cover - another langchain-core: always through ainvoke
    _KNOWN = False
else:
    _KNOWN = True

_AROUND = ("ainvoke", "agenerate", "agenerate_prompt", "_agenerate_with_cache", "astream")
"""Methods a model may override to do something around a call: one that does is called
through ``ainvoke`` and ``astream``."""

_STRUCTURED_FORMAT = ("ls_structured_output_format", "structured_output_format")
"""Bound arguments ``agenerate`` takes off before ``_agenerate`` (tracing only)."""


async def ainvoke_chat(model: Runnable[Any, BaseMessage], messages: list[BaseMessage]
                       ) -> BaseMessage:
    """``model.ainvoke(messages)``, straight to ``_agenerate`` when nothing watches the call
    (see the module)."""
    direct = _direct(model) if _KNOWN else None
    if direct is None or watched():
        return await model.ainvoke(messages)
    chat, kwargs = direct
    result = await chat._agenerate(_normalize_messages(messages), **kwargs)
    generation = result.generations[0]
    message = generation.message
    message.response_metadata = _gen_info_and_msg_metadata(generation)
    if len(result.generations) == 1 and result.llm_output is not None:
        message.response_metadata = {**result.llm_output, **message.response_metadata}
    return message


async def astream_chat(model: Runnable[Any, BaseMessage], messages: list[BaseMessage],
                       **kwargs: Any) -> AsyncIterator[BaseMessageChunk]:
    """``model.astream(messages, **kwargs)``, straight from ``_astream`` when nothing
    watches the call and the model streams natively (see the module): each piece with the
    metadata ``astream`` gives it."""
    direct = _direct(model) if _KNOWN else None
    if (direct is None or type(direct[0])._astream is BaseChatModel._astream
            or direct[0].disable_streaming or "streaming" in direct[0].model_fields_set
            or watched()):  # streaming set (to False: astream makes one call): as astream
        async for piece in model.astream(messages, **kwargs):
            yield cast(BaseMessageChunk, piece)
        return
    chat, bound = direct
    pieces = 0
    async for chunk in chat._astream(_normalize_messages(messages), **{**bound, **kwargs}):
        if chunk.generation_info:  # else the message's own metadata is what it gets
            chunk.message.response_metadata = _gen_info_and_msg_metadata(chunk)
        pieces += 1
        yield cast(BaseMessageChunk, chunk.message)
    if not pieces:
        raise ValueError("No generation chunks were returned")


def _direct(model: Runnable[Any, BaseMessage]) -> tuple[BaseChatModel, dict[str, Any]] | None:
    """The chat model and the arguments to call its ``_agenerate`` with, or None when the
    call needs what ``ainvoke`` does."""
    kwargs: dict[str, Any] = {}
    if isinstance(model, RunnableBinding):
        if (model.config or model.config_factories or model.custom_input_type is not None
                or model.custom_output_type is not None):
            return None
        kwargs = {k: v for k, v in model.kwargs.items() if k not in _STRUCTURED_FORMAT}
        model = model.bound
    if not isinstance(model, BaseChatModel) or "stream" in kwargs:
        return None
    kind = type(model)
    if kind._agenerate is BaseChatModel._agenerate or any(
            getattr(kind, name) is not getattr(BaseChatModel, name) for name in _AROUND):
        return None  # sync only (ainvoke runs it in a thread), or it wraps the call itself
    cache = model.cache
    if (model.callbacks or model.verbose or model.rate_limiter is not None
            or _attribute(model, "streaming", False) is not False
            or _attribute(model, "output_version", None) == "v1"
            or (cache is not False and (cache is not None or get_llm_cache() is not None))):
        return None
    return model, kwargs


def _attribute(model: BaseChatModel, name: str, default: Any) -> Any:
    """``getattr(model, name, default)`` without asking pydantic for a name the model's
    class lacks (its ``__getattr__`` raises an error, microseconds each time)."""
    if name in type(model).model_fields or hasattr(type(model), name):
        return getattr(model, name, default)
    return default


def watched() -> bool:
    """Whether a callback handler, tracer or hook would see a model call made now."""
    if get_debug() or get_verbose() or _tracing_v2_is_enabled():
        return True
    config = var_child_runnable_config.get() or {}
    callbacks = config.get("callbacks")
    if isinstance(callbacks, BaseCallbackManager):
        if callbacks.handlers or callbacks.inheritable_handlers:
            return True
    elif callbacks:
        return True
    return any(var.get() is not None or (env_var is not None and handler is not None
                                         and env_var_is_set(env_var))
               for var, _, handler, env_var in _configure_hooks)

