"""A chat completion's ``stop`` and ``max_tokens``, applied to the answer the client gets.

The orchestrator's answer is written by its own model calls, so the client's limits cut the
text it is sent, as OpenAI cuts a completion: at the first stop sequence (not included,
``finish_reason`` ``stop``), or after ``max_tokens`` tokens (``finish_reason`` ``length``),
counted as the engine estimates them everywhere (four characters a token). The run itself
is not cut: its answer stays whole in the thread and the run's record.

Streamed, the pieces go through :meth:`AnswerLimit.take` in order; text that might begin a
stop sequence is held back until the next piece shows whether it does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

CHARS_PER_TOKEN = 4
FinishReason = Literal["stop", "length"]


@dataclass
class AnswerLimit:
    """The client's limits on one answer, and how much of it has gone out."""

    stop: Sequence[str] = ()
    max_tokens: int | None = None
    finish_reason: FinishReason = "stop"
    """``length`` once the answer was cut at ``max_tokens``."""
    done: bool = False
    """The answer reached a stop sequence or its length: nothing more goes out."""
    _held: str = ""
    _sent: int = field(default=0, repr=False)

    @property
    def limited(self) -> bool:
        return bool(self.stop) or self.max_tokens is not None

    def take(self, piece: str) -> str:
        """What of ``piece`` (the answer's next text) goes out now."""
        if self.done:
            return ""
        text, self._held = self._held + piece, ""
        found = [at for at in (text.find(stop) for stop in self.stop) if at >= 0]
        if found:  # the earliest stop sequence ends the answer, whichever it is
            text, self.done = text[:min(found)], True
        if not self.done:  # keep back what may be the start of a stop sequence
            keep = max((n for stop in self.stop for n in range(len(stop) - 1, 0, -1)
                        if text.endswith(stop[:n])), default=0)
            if keep:
                text, self._held = text[:-keep], text[-keep:]
        return self._count(text)

    def flush(self) -> str:
        """The end of the answer: what was held back goes out (it began no stop)."""
        held, self._held = self._held, ""
        return "" if self.done else self._count(held)

    def whole(self, answer: str) -> str:
        """An answer sent in one piece, cut."""
        return self.take(answer) + self.flush()

    def _count(self, text: str) -> str:
        if self.max_tokens is None:
            return text
        room = self.max_tokens * CHARS_PER_TOKEN - self._sent
        if len(text) > room:
            text, self.done, self.finish_reason = text[:room], True, "length"
        self._sent += len(text)
        return text
