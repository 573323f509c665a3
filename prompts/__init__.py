"""Prompt templates, one text file per prompt, loaded by name.

Templates use ``str.format`` fields. Messages pass structured parts inside simple
XML-like tags (``<request>``, ``<goal>``, ...) that models read reliably and the
rules-mode fake model parses.
"""

from __future__ import annotations

import re
from functools import cache
from importlib import resources

from orchestrator.errors import ConfigError

__all__ = ["extract_tag", "load_prompt", "render_prompt", "tagged"]


@cache
def load_prompt(name: str, /) -> str:
    """The text of ``prompts/<name>.txt``."""
    path = resources.files(__name__).joinpath(f"{name}.txt")
    if not path.is_file():
        raise ConfigError(f"no prompt named {name!r} in the prompts package")
    return path.read_text("utf-8").strip()


def render_prompt(name: str, /, **fields: object) -> str:
    """Load a prompt and fill its ``{fields}``."""
    return load_prompt(name).format(**fields)


def tagged(tag: str, body: str, **attrs: str) -> str:
    """``<tag a="b">body</tag>``."""
    attr_text = "".join(f' {key}="{value}"' for key, value in attrs.items())
    return f"<{tag}{attr_text}>\n{body.strip()}\n</{tag}>"


def extract_tag(text: str, tag: str) -> list[tuple[dict[str, str], str]]:
    """Every ``<tag ...>body</tag>`` in ``text`` as (attributes, body)."""
    pattern = re.compile(rf"<{tag}((?:\s+\w+=\"[^\"]*\")*)\s*>(.*?)</{tag}>", re.DOTALL)
    out = []
    for attrs, body in pattern.findall(text):
        out.append((dict(re.findall(r'(\w+)="([^"]*)"', attrs)), body.strip()))
    return out
