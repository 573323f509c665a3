"""The ``local:`` provider: a real model on this machine through llama.cpp's server.

``local:PATH.gguf`` starts llama.cpp's OpenAI-compatible server for that file in a child
process (see ``llama_server``) and talks to it with the ``openai`` client;
``local:NAME`` does the same for weights the project knows (see ``weights``:
``qwen2.5-coder-1.5b``, ``qwen2.5-coder-0.5b``), assembled and verified on first use;
``local:http://HOST:PORT`` uses a llama.cpp server that is already running.

Plans are asked for with a JSON schema by default: llama.cpp enforces it with a grammar,
while it ignores a forced tool choice.
"""

from __future__ import annotations

import json
import os
import urllib.error
import urllib.request
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from orchestrator.config import load_settings
from orchestrator.errors import ConfigError
from orchestrator.models.llama_server import ALIAS, LaunchOptions, server_url
from orchestrator.models.openai_chat import split_options
from orchestrator.models.weights import KNOWN_WEIGHTS, weights_file

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from orchestrator.models.specs import ModelSpec

#: Options of a ``local:`` spec and their defaults.
OPTIONS: dict[str, float] = {
    "max_tokens": 1024, "timeout": 600.0, "retries": 0, "slots": 0,
    "ctx": LaunchOptions.ctx, "threads": 0, "parallel": LaunchOptions.parallel,
    "cache_mib": LaunchOptions.cache_mib, "shortlist": 8, "spread": 0.25,
    "summarize": 0,
}
"""``max_tokens`` per reply; ``timeout`` per call (seconds; a small CPU model reads a long
prompt slowly); ``retries`` (0: a timed-out call is not sent again to a busy server);
``slots`` (0: the server's own count); and for a server started here: ``ctx`` (context
tokens, shared by the slots), ``threads`` (0: the machine's cores, at most 8),
``parallel`` (slots) and ``cache_mib`` (llama.cpp's prompt cache); ``shortlist``: most
agents the planner is shown (a small model routes better among few; ``planner_shortlist``
still caps it), and ``spread``: beyond the closest agent for each part of the request, only
agents within this much similarity of the closest are shown (seen: a 1.5B model planned a
subtask for each of the eight agents it was shown for "refund order o-1002"; 0: no limit);
``summarize``: 1 to have the model write the answer of several subtasks (streamed); 0 (the
default) lists the agents' reports instead, with no call (a 1.5B model's summaries said
what was done and dropped what was found: the doctor, the allergy, the cost)."""

_LAUNCH_ONLY = ("ctx", "threads", "parallel", "cache_mib")
_EXAMPLE = "local:qwen2.5-coder-1.5b"


class LocalProvider:
    """``local:PATH.gguf``, ``local:NAME`` or ``local:http://HOST:PORT``, then options after
    commas, e.g. ``local:qwen2.5-coder-1.5b,ctx=8192,max_tokens=512``."""

    def check(self, spec: ModelSpec) -> ModelSpec:
        checked = split_options(spec, OPTIONS, _EXAMPLE)
        target = checked.name
        attached = target.startswith(("http://", "https://"))
        if attached:
            given = [key for key in _LAUNCH_ONLY if key in checked.options]
            if given:
                raise ConfigError(f"{', '.join(given)} in {spec.text!r} set up a server started "
                                  "here; a running server keeps its own")
        elif target not in KNOWN_WEIGHTS:
            path = Path(target).expanduser()
            if path.suffix.lower() != ".gguf":
                raise ConfigError(f"local model {target!r} is neither a .gguf file, a known "
                                  f"model ({', '.join(KNOWN_WEIGHTS)}) nor an http:// URL")
            if not path.is_file():
                raise ConfigError(f"local model file {path} does not exist")
            with path.open("rb") as head:
                if head.read(4) != b"GGUF":
                    raise ConfigError(f"local model file {path} is not a GGUF file")
            checked = replace(checked, name=str(path.resolve()))
        for key in ("ctx", "parallel"):
            if checked.options.get(key) in ("0", "0.0"):
                raise ConfigError(f"model option {key} in {spec.text!r} must be at least 1")
        return checked

    def get_model(self, spec: ModelSpec) -> BaseChatModel:
        from orchestrator.models.openai_chat import chat_openai

        options = dict(spec.options)
        if spec.name.startswith(("http://", "https://")):
            base = spec.name.rstrip("/").removesuffix("/v1")
            options.setdefault("slots", str(_server_slots(base)))
        else:
            base = server_url(self._launch(spec), load_settings().home / "logs")
            options.setdefault("slots", options.get("parallel", str(LaunchOptions.parallel)))
        shortlist = int(float(options.pop("shortlist", OPTIONS["shortlist"])))
        spread = float(options.pop("spread", OPTIONS["spread"]))
        hints: dict[str, Any] = {"orchestrator_shortlist": shortlist} if shortlist else {}
        if spread > 0:
            hints["orchestrator_shortlist_spread"] = spread
        if not float(options.pop("summarize", OPTIONS["summarize"])):
            hints["orchestrator_summary"] = "list"
        return chat_openai(ALIAS, base_url=f"{base}/v1", api_key="local", options=options,
                           defaults=OPTIONS, structured="json_schema", hints=hints or None)

    def _launch(self, spec: ModelSpec) -> LaunchOptions:
        home = load_settings().home
        path = (weights_file(spec.name, home / "models") if spec.name in KNOWN_WEIGHTS
                else Path(spec.name))

        def number(key: str) -> int:
            return int(float(spec.options.get(key, OPTIONS[key])))

        threads = number("threads") or min(os.cpu_count() or 1, 8)
        return LaunchOptions(path, ctx=number("ctx"), threads=threads,
                             parallel=number("parallel"), cache_mib=number("cache_mib"))


def _server_slots(base: str) -> int:
    """The slot count a running llama.cpp server reports (``/props``); 1 if it does not say.

    Raises:
        ConfigError: nothing answers at ``base``.
    """
    try:
        with urllib.request.urlopen(f"{base}/props", timeout=10) as reply:
            props = json.loads(reply.read() or b"{}")
    except urllib.error.HTTPError:
        return 1  # a server without /props (or with it switched off)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"no llama.cpp server answers at {base}: {exc}") from None
    slots = props.get("total_slots") if isinstance(props, dict) else None
    return slots if isinstance(slots, int) and slots > 0 else 1
