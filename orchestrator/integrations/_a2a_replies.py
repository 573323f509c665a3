"""What a remote A2A agent says about one message's task, as it streams in: its status
updates (reported as steps), its artifacts or reply message (the output), and how it
ended (the reply the engine gets)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field

from a2a.types import Part, StreamResponse, TaskState
from google.protobuf.json_format import MessageToDict

from orchestrator.agents.external import ExternalReply, ExternalStatus, Report

FINAL = frozenset({TaskState.TASK_STATE_COMPLETED, TaskState.TASK_STATE_FAILED,
                   TaskState.TASK_STATE_REJECTED, TaskState.TASK_STATE_CANCELED})
NEEDS_INPUT = frozenset({TaskState.TASK_STATE_INPUT_REQUIRED,
                         TaskState.TASK_STATE_AUTH_REQUIRED})
"""Interrupted: the remote task waits for an answer the engine cannot give mid-task."""
_WHY_FAILED = {TaskState.TASK_STATE_FAILED: "the remote task failed",
               TaskState.TASK_STATE_REJECTED: "the remote agent rejected the task",
               TaskState.TASK_STATE_CANCELED: "the remote task was canceled"}
_ASKED_FOR = {TaskState.TASK_STATE_INPUT_REQUIRED: "input",
              TaskState.TASK_STATE_AUTH_REQUIRED: "authorization"}


MAX_OUTPUT_CHARS = 1_000_000
"""Most text kept of a task's artifacts (the engine caps the output it stores far lower)."""


@dataclass
class TaskProgress:
    """What the remote agent has said so far about one message's task."""

    task_id: str = ""
    state: TaskState = TaskState.TASK_STATE_UNSPECIFIED
    status_text: str = ""
    artifacts: dict[str, str] = field(default_factory=dict)
    message: str | None = None
    """Its reply message, when it answered with one."""
    reported: tuple[str, str] | None = None

    @property
    def over(self) -> bool:
        """The remote task ended, or stopped for input, or the agent replied."""
        return self.message is not None or self.state in FINAL | NEEDS_INPUT

    def take(self, response: StreamResponse, report: Report) -> None:
        """Fold in one response; a new status short of the end is reported as a step."""
        payload = response.WhichOneof("payload")
        if payload == "message":
            self.message = parts_text(response.message.parts)
            return
        if payload == "artifact_update":
            update = response.artifact_update
            key, text = update.artifact.artifact_id, parts_text(update.artifact.parts)
            have = self.artifacts.get(key, "") if update.append else ""
            # Kept to a bound as it arrives: a remote agent cannot fill this process's memory
            # (the engine cuts the output it keeps far shorter, saying so).
            room = MAX_OUTPUT_CHARS - len(have) - sum(
                len(t) for k, t in self.artifacts.items() if k != key)
            self.artifacts[key] = have + text[:max(room, 0)]
            return
        if payload == "task":
            task = response.task
            self.task_id = task.id or self.task_id
            self.artifacts = {a.artifact_id or str(i): parts_text(a.parts)[:MAX_OUTPUT_CHARS]
                              for i, a in enumerate(task.artifacts)}
            status = task.status
        elif payload == "status_update":
            self.task_id = response.status_update.task_id or self.task_id
            status = response.status_update.status
        else:
            return
        self.state = status.state
        if status.HasField("message"):
            self.status_text = parts_text(status.message.parts)
        step = (state_name(self.state), self.status_text)
        if self.state not in FINAL and step != self.reported:
            self.reported = step
            report(ExternalStatus(*step))

    def reply(self, url: str) -> ExternalReply:
        """The engine's reply once the responses stopped; ConnectionError when they stopped
        before the task ended (the connection was lost: worth another try)."""
        output = "\n\n".join(t for t in self.artifacts.values() if t)
        said = self.status_text or "no reason given"
        if self.state in _WHY_FAILED:
            return ExternalReply(output, status="failed",
                                 error=f"{_WHY_FAILED[self.state]}: {said}")
        if self.state in NEEDS_INPUT:
            return ExternalReply(output, status="failed", error=(
                f"the remote agent asked for {_ASKED_FOR[self.state]} "
                f"({state_name(self.state)}): {said} - the orchestrator cannot answer it "
                "mid-task; put what it needs in the request (or in the agent's set-up)"))
        if self.message is not None:
            return ExternalReply(self.message or output)
        if self.state == TaskState.TASK_STATE_COMPLETED:
            return ExternalReply(output or self.status_text)
        raise ConnectionError(f"the A2A agent at {url} stopped answering while its task was "
                              f"{state_name(self.state)}")


def parts_text(parts: Sequence[Part]) -> str:
    """A message's or artifact's parts as text: data as JSON, files by name."""
    out: list[str] = []
    for part in parts:
        content = part.WhichOneof("content")
        if content == "text":
            out.append(part.text)
        elif content == "data":
            out.append(json.dumps(MessageToDict(part.data), ensure_ascii=False))
        elif content == "url":
            out.append(f"[{part.filename or 'file'}: {part.url}]")
        elif content == "raw":
            out.append(f"[{part.filename or 'file'} ({part.media_type or 'binary'}, "
                       f"{len(part.raw)} bytes) not shown]")
    return "\n".join(t for t in out if t)


def state_name(state: TaskState) -> str:
    """``TASK_STATE_INPUT_REQUIRED`` -> ``input-required`` (the protocol's own words)."""
    return TaskState.Name(state).removeprefix("TASK_STATE_").lower().replace("_", "-")
