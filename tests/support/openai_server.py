"""A small OpenAI-compatible chat-completions server for tests.

It answers ``POST /v1/chat/completions`` with the rules-mode fake model's decisions
(:func:`orchestrator.models.rules.decide`), so a whole run can go through the real
``openai`` client and ``langchain_openai.ChatOpenAI`` over HTTP on 127.0.0.1, tool calls
and structured output included. A request with ``"stream": true`` is answered as
server-sent events (``chat.completion.chunk`` objects, word-sized pieces, then
``data: [DONE]``), with a last chunk carrying the usage when ``stream_options.include_usage``
asks for it, as OpenAI and llama.cpp do. Standard library only on the HTTP side.

Example:
    ```python
    with OpenAICompatServer() as server:
        monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
        monkeypatch.setenv("OPENAI_API_KEY", server.api_key)
        ...
        assert server.requests[0]["tool_choice"]
    ```
"""

from __future__ import annotations

import contextlib
import json
import re
import socket
import threading
import time
import traceback
import uuid
from collections.abc import Callable, Iterator
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from langchain_core.messages import (
    AIMessage,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)

from orchestrator.models import rules
from orchestrator.models.fake import estimate_usage

CHAT_PATH = "/v1/chat/completions"
_SCHEMA_IN_PROMPT = re.compile(r"follows this JSON schema: (\{.*\})\s*$", re.S)
MODELS_PATH = "/v1/models"
EMBEDDINGS_PATH = "/v1/embeddings"


class RequestRejected(Exception):
    """A request the server answers with an OpenAI-style error."""

    def __init__(self, status: int, message: str, *, type_: str = "invalid_request_error",
                 code: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.type = type_
        self.code = code
        self.param = param

    def body(self) -> dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type,
                          "param": self.param, "code": self.code}}


# --- OpenAI JSON <-> langchain-core messages ----------------------------------------------


def _text(content: Any, where: str) -> str:
    """Message content as text: a string, null, or a list of text parts."""
    if content is None:
        return ""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if isinstance(part, dict) and part.get("type") == "text":
                parts.append(str(part.get("text", "")))
            else:
                raise RequestRejected(400, f"{where}: only text content parts are supported")
        return "".join(parts)
    raise RequestRejected(400, f"{where}: content must be a string, null or a list of parts")


def to_langchain_messages(raw: Any) -> list[BaseMessage]:
    """OpenAI chat messages (system/developer/user/assistant/tool) as langchain-core ones."""
    if not isinstance(raw, list) or not raw:
        raise RequestRejected(400, "'messages' must be a non-empty list", param="messages")
    out: list[BaseMessage] = []
    for index, message in enumerate(raw):
        where = f"messages[{index}]"
        if not isinstance(message, dict):
            raise RequestRejected(400, f"{where} must be an object", param="messages")
        role = message.get("role")
        text = _text(message.get("content"), where)
        if role in ("system", "developer"):
            out.append(SystemMessage(text))
        elif role == "user":
            out.append(HumanMessage(text))
        elif role == "assistant":
            calls = []
            for call in message.get("tool_calls") or []:
                fn = call.get("function") or {}
                try:
                    args = json.loads(fn.get("arguments") or "{}")
                except json.JSONDecodeError:
                    raise RequestRejected(
                        400, f"{where}: tool call arguments are not JSON", param="messages"
                    ) from None
                calls.append({"name": fn.get("name", ""), "args": args, "id": call.get("id"),
                              "type": "tool_call"})
            out.append(AIMessage(content=text, tool_calls=calls))
        elif role == "tool":
            call_id = message.get("tool_call_id")
            if not call_id:
                raise RequestRejected(400, f"{where}: a tool message needs tool_call_id",
                                      param="messages")
            out.append(ToolMessage(text, tool_call_id=call_id))
        else:
            raise RequestRejected(400, f"{where}: unsupported role {role!r}", param="messages")
    return out


def to_openai_message(reply: AIMessage) -> dict[str, Any]:
    """An assistant reply in the chat.completion ``message`` shape."""
    message: dict[str, Any] = {"role": "assistant", "content": reply.text or None,
                               "refusal": None}
    if reply.tool_calls:
        message["tool_calls"] = [
            {"id": call.get("id") or f"call_{uuid.uuid4().hex[:16]}", "type": "function",
             "function": {"name": call["name"], "arguments": json.dumps(call["args"])}}
            for call in reply.tool_calls
        ]
    elif message["content"] is None:
        message["content"] = ""
    return message


# --- the server -----------------------------------------------------------------------------


class OpenAICompatServer:
    """An OpenAI-compatible server on 127.0.0.1 (a free port) in a background thread.

    Attributes:
        api_key: The key clients must send as ``Authorization: Bearer <key>``.
        requests: Every authorised, well-formed JSON body posted to the chat endpoint, in
            order of arrival (a copy; safe to read while requests run).
        rejected: ``(status, message)`` for each request answered with an error.
        cut_off: Why each streamed reply stopped part-way (``before_piece`` raised, or the
            client went away), in order.
    """

    def __init__(self, api_key: str = "sk-test-local", *, model: str = "fake-rules",
                 tool_calls_as_text: str | None = None, ignores_forced_tools: bool | int = False,
                 before_piece: Callable[[int, str], None] | None = None) -> None:
        """``tool_calls_as_text``: behave like llama.cpp serving a model whose tool calls
        its template does not parse: ``"tagged"`` writes each call in the message text as
        ``<tool_call>{...}</tool_call>`` (Qwen, Hermes), ``"fenced"`` as a fenced JSON
        block; the ``tool_calls`` field stays empty and ``tool_choice`` is ignored.
        ``ignores_forced_tools``: a request that forces a named tool gets a prose answer
        (as a server that ignores ``tool_choice`` and a model that does not call); a number:
        only that many such requests do.

        A ``response_format`` of type ``json_schema`` is honoured as llama.cpp does (the
        reply is constrained to the schema): the reply is the object the rules model fills
        in for that schema, as JSON text; for an agent's action schema, the rules model's
        first call as ``{"tool": ..., "arguments": ...}`` or its text as
        ``{"report": ...}``.

        ``before_piece``: called on the server's thread before each piece of a streamed
        reply's text is sent, with its index and text; it may wait (to see what the client
        has received by then, or to stall the stream) or raise, which drops the connection
        there, mid-stream."""
        if tool_calls_as_text not in (None, "tagged", "fenced"):
            raise ValueError(f"tool_calls_as_text must be tagged or fenced, not "
                             f"{tool_calls_as_text!r}")
        self.api_key = api_key
        self.model = model
        self.tool_calls_as_text = tool_calls_as_text
        self.ignores_forced_tools = ignores_forced_tools
        self.before_piece = before_piece
        self._ignored = 0
        self._requests: list[dict[str, Any]] = []
        self._rejected: list[tuple[int, str]] = []
        self._cut_off: list[str] = []
        self._lock = threading.Lock()
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # --- lifecycle ------------------------------------------------------------------------

    def start(self) -> OpenAICompatServer:
        if self._httpd is not None:
            raise RuntimeError("the server is already running")
        handler = type("Handler", (_Handler,), {"app": self})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="openai-compat-server", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, thread = self._httpd, self._thread
        self._httpd = self._thread = None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if thread is not None:
            thread.join(timeout=5)

    def __enter__(self) -> OpenAICompatServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # --- what tests read ------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._httpd is None:
            raise RuntimeError("the server is not running")
        return int(self._httpd.server_address[1])

    @property
    def base_url(self) -> str:
        """The address to give the openai client (``OPENAI_BASE_URL``); ends in ``/v1``."""
        return f"http://127.0.0.1:{self.port}/v1"

    @property
    def requests(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._requests)

    @property
    def rejected(self) -> list[tuple[int, str]]:
        with self._lock:
            return list(self._rejected)

    @property
    def cut_off(self) -> list[str]:
        with self._lock:
            return list(self._cut_off)

    def clear(self) -> None:
        """Forget the requests seen so far."""
        with self._lock:
            self._requests.clear()
            self._rejected.clear()
            self._cut_off.clear()

    # --- answering ------------------------------------------------------------------------

    def _record(self, body: dict[str, Any]) -> None:
        with self._lock:
            self._requests.append(body)

    def _note_rejection(self, status: int, message: str) -> None:
        with self._lock:
            self._rejected.append((status, message))

    def _note_cut_off(self, why: str) -> None:
        with self._lock:
            self._cut_off.append(why)

    def _check_auth(self, header: str | None) -> None:
        scheme, _, key = (header or "").partition(" ")
        if scheme.lower() != "bearer" or key.strip() != self.api_key:
            raise RequestRejected(401, "Incorrect API key provided.", code="invalid_api_key")

    def chat_completion(self, body: dict[str, Any]) -> dict[str, Any]:
        """The chat.completion answer to a request body (already authorised and parsed)."""
        reply, usage = self._answer(body)
        finish = "tool_calls" if reply.tool_calls else "stop"
        cap = body.get("max_completion_tokens") or body.get("max_tokens")
        if isinstance(cap, int) and not reply.tool_calls and \
                len(pieces := word_pieces(reply.text)) > cap:
            # as llama.cpp does: the text up to the cap, finish_reason "length"
            reply, finish = AIMessage(content="".join(pieces[:cap])), "length"
            usage = {**usage, "output_tokens": cap,
                     "total_tokens": usage["input_tokens"] + cap}
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model") or self.model,
            "system_fingerprint": None,
            "choices": [{
                "index": 0,
                "message": to_openai_message(reply),
                "logprobs": None,
                "finish_reason": finish,
            }],
            "usage": _openai_usage(usage),
        }

    def chat_completion_chunks(self, body: dict[str, Any]) -> Iterator[dict[str, Any]]:
        """The ``chat.completion.chunk`` objects streamed for a request with ``stream``:
        the role, the text in word-sized pieces (``before_piece`` is called before each),
        each tool call whole, the finish reason, and, when ``stream_options.include_usage``
        asks for it, a last chunk with no choices and the usage (the other chunks then carry
        ``"usage": null``). The reply is decided before the first chunk, so a bad request is
        still an HTTP error."""
        reply, usage = self._answer(body)
        options = body.get("stream_options")
        if options is not None and not isinstance(options, dict):
            raise RequestRejected(400, "'stream_options' must be an object",
                                  param="stream_options")
        with_usage = bool((options or {}).get("include_usage"))
        head = {"id": f"chatcmpl-{uuid.uuid4().hex[:24]}", "object": "chat.completion.chunk",
                "created": int(time.time()), "model": body.get("model") or self.model,
                "system_fingerprint": None}
        return self._chunks(reply, usage, head, with_usage)

    def _chunks(self, reply: AIMessage, usage: dict[str, int], head: dict[str, Any],
                with_usage: bool) -> Iterator[dict[str, Any]]:
        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            out = {**head, "choices": [{"index": 0, "delta": delta, "logprobs": None,
                                        "finish_reason": finish}]}
            return {**out, "usage": None} if with_usage else out

        yield chunk({"role": "assistant", "content": "", "refusal": None})
        for index, piece in enumerate(word_pieces(reply.text)):
            if self.before_piece is not None:
                self.before_piece(index, piece)
            yield chunk({"content": piece})
        for index, call in enumerate(to_openai_message(reply).get("tool_calls") or []):
            yield chunk({"tool_calls": [{"index": index, **call}]})
        yield chunk({}, "tool_calls" if reply.tool_calls else "stop")
        if with_usage:
            yield {**head, "choices": [], "usage": _openai_usage(usage)}

    def _answer(self, body: dict[str, Any]) -> tuple[AIMessage, dict[str, int]]:
        """The reply to a request body and its usage, whether streamed or not."""
        messages = to_langchain_messages(body.get("messages"))
        tools = body.get("tools") or []
        if not isinstance(tools, list) or any(
            not isinstance(t, dict) or t.get("type") != "function" or "function" not in t
            for t in tools
        ):
            raise RequestRejected(400, "'tools' must be a list of function tools", param="tools")
        schema = _json_schema_format(body.get("response_format"), messages)
        forced = isinstance(body.get("tool_choice"), dict)
        actions = _action_tools(schema[1]) if schema is not None else None
        if actions is not None:  # one action of an agent: a tool of the schema's, or a report
            tools = actions
        elif schema is not None:  # constrained to the schema: fill it in, answer as JSON
            name, parameters = schema
            tools = [{"type": "function", "function": {"name": name,
                                                       "parameters": parameters}}]
        reply = rules.decide(messages, tools)
        usage = estimate_usage(messages, tools, reply)
        if actions is not None:
            first = reply.tool_calls[0] if reply.tool_calls else None
            reply = AIMessage(content=json.dumps(
                {"tool": first["name"], "arguments": first["args"]} if first
                else {"report": reply.text}))
        elif schema is not None:
            filled = reply.tool_calls[0]["args"] if reply.tool_calls else {}
            reply = AIMessage(content=json.dumps(filled))
        elif forced and self._ignores_this_one():
            reply = AIMessage(content="Here is what I would do: look at the service first.")
        elif self.tool_calls_as_text and reply.tool_calls:
            reply = AIMessage(content=calls_as_text(reply, self.tool_calls_as_text))
        return reply, usage

    def _ignores_this_one(self) -> bool:
        with self._lock:
            limit = self.ignores_forced_tools
            if limit is True or (limit and self._ignored < limit):
                self._ignored += 1
                return True
            return False

    def models(self) -> dict[str, Any]:
        return {"object": "list", "data": [
            {"id": self.model, "object": "model", "created": 0, "owned_by": "tests"}]}


class _Handler(BaseHTTPRequestHandler):
    app: OpenAICompatServer  # set on the per-server subclass
    protocol_version = "HTTP/1.1"  # keep-alive, as the openai client expects
    timeout = 30  # idle keep-alive connections close after this many seconds
    server_version = "OpenAICompatTestServer/1.0"

    def log_message(self, format: str, *args: Any) -> None:
        pass  # quiet: tests read .requests and .rejected instead

    def do_GET(self) -> None:
        try:
            self.app._check_auth(self.headers.get("Authorization"))
            if self.path.split("?")[0].rstrip("/") != MODELS_PATH:
                raise RequestRejected(404, f"unknown path {self.path}", code="not_found")
            self._send(200, self.app.models())
        except RequestRejected as exc:
            self._reject(exc)

    def do_POST(self) -> None:
        raw = self._read_body()  # always read it, so the connection stays usable
        try:
            self.app._check_auth(self.headers.get("Authorization"))
            path = self.path.split("?")[0].rstrip("/")
            if path not in (CHAT_PATH, EMBEDDINGS_PATH):
                raise RequestRejected(404, f"unknown path {self.path}", code="not_found")
            try:
                body = json.loads(raw or b"")
            except (json.JSONDecodeError, UnicodeDecodeError) as exc:
                raise RequestRejected(400, f"the body is not valid JSON: {exc}") from None
            if not isinstance(body, dict):
                raise RequestRejected(400, "the body must be a JSON object")
            self.app._record(body)
            if path == EMBEDDINGS_PATH:
                self._send(200, embeddings_response(body))
            elif body.get("stream"):
                self._send_events(self.app.chat_completion_chunks(body))
            else:
                self._send(200, self.app.chat_completion(body))
        except RequestRejected as exc:
            self._reject(exc)
        except Exception as exc:  # a bug in the rules or here: say so, as a real API would
            traceback.print_exc()
            self._reject(RequestRejected(500, f"{type(exc).__name__}: {exc}",
                                         type_="server_error"))

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    def _reject(self, exc: RequestRejected) -> None:
        self.app._note_rejection(exc.status, exc.message)
        self._send(exc.status, exc.body())

    def _send_events(self, chunks: Iterator[dict[str, Any]]) -> None:
        """Server-sent events, one HTTP chunk each, flushed as they are made; a failure
        while streaming (``before_piece`` raised) drops the connection there."""
        self.send_response(200, "OK")
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for item in chunks:
                self._write_chunk(f"data: {json.dumps(item)}\n\n".encode())
            self._write_chunk(b"data: [DONE]\n\n")
            self._write_chunk(b"")
        except Exception as exc:  # cut off mid-stream: the client sees the connection drop
            self.app._note_cut_off(f"{type(exc).__name__}: {exc}")
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)

    def _write_chunk(self, data: bytes) -> None:
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _send(self, status: int, payload: dict[str, Any]) -> None:
        data = json.dumps(payload).encode("utf-8")
        self.send_response(status, HTTPStatus(status).phrase)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)


def _json_schema_format(value: Any, messages: list[BaseMessage]
                        ) -> tuple[str, dict[str, Any]] | None:
    """``(name, schema)`` of a ``response_format`` of type ``json_schema``; for JSON mode
    (``json_object``), the schema the prompt gives (as a model that follows it would); else
    None."""
    if isinstance(value, dict) and value.get("type") == "json_object":
        for message in messages:
            found = _SCHEMA_IN_PROMPT.search(message.text)
            if found:
                schema = json.loads(found.group(1))
                return str(schema.get("title") or "response"), schema
        raise RequestRejected(400, "JSON mode needs the word JSON and a schema in the prompt",
                              param="response_format")
    if not isinstance(value, dict) or value.get("type") != "json_schema":
        return None
    spec = value.get("json_schema")
    if not isinstance(spec, dict) or not isinstance(spec.get("schema"), dict):
        raise RequestRejected(400, "response_format.json_schema needs a schema",
                              param="response_format")
    return str(spec.get("name") or "response"), spec["schema"]


def _action_tools(schema: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The tools an action schema (``{"tool": <one name>, "arguments": {...}}`` variants,
    see ``orchestrator.json_actions``) offers, as function tools; None for other schemas."""
    variants = schema.get("anyOf", [schema])
    tools = []
    for variant in variants:
        props = variant.get("properties", {}) if isinstance(variant, dict) else {}
        if "tool" in props:
            tools.append({"type": "function", "function": {
                "name": props["tool"]["enum"][0], "parameters": props.get("arguments", {})}})
    return tools or None


def _openai_usage(usage: dict[str, int]) -> dict[str, int]:
    return {"prompt_tokens": usage["input_tokens"],
            "completion_tokens": usage["output_tokens"],
            "total_tokens": usage["total_tokens"]}


def word_pieces(text: str) -> list[str]:
    """``text`` in word-sized pieces (a word and the space after it) that join back to it."""
    return re.findall(r"\s*\S+\s*", text) or ([text] if text else [])


def calls_as_text(reply: AIMessage, style: str) -> str:
    """A reply's tool calls written in its text, as small models behind llama.cpp do."""
    parts = [json.dumps({"name": c["name"], "arguments": c["args"]}) for c in reply.tool_calls]
    if style == "tagged":
        return "\n".join(f"<tool_call>\n{p}\n</tool_call>" for p in parts)
    return "I will call the tool.\n```json\n" + "\n".join(parts if len(parts) == 1 else [
        "[" + ", ".join(parts) + "]"]) + "\n```"


def embeddings_response(body: dict[str, Any]) -> dict[str, Any]:
    """``/v1/embeddings``: deterministic hashing vectors (64 dims) for each input string."""
    from orchestrator.retrieval.embedders import HashEmbedder

    inputs = body.get("input")
    texts = [inputs] if isinstance(inputs, str) else list(inputs or [])
    if not texts or not all(isinstance(t, str) for t in texts):
        raise RequestRejected(400, "input must be a string or a list of strings")
    vectors = HashEmbedder(64).embed_documents(texts)
    tokens = sum(len(t.split()) for t in texts)
    return {"object": "list", "model": body.get("model", "test-embedding"),
            "data": [{"object": "embedding", "index": i, "embedding": v}
                     for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}


def use_server(server: OpenAICompatServer, monkeypatch: Any) -> OpenAICompatServer:
    """Point the ``openai`` client at ``server`` for one test (``monkeypatch``): its address
    and key, and no proxy between the client and 127.0.0.1."""
    monkeypatch.setenv("OPENAI_BASE_URL", server.base_url)
    monkeypatch.setenv("OPENAI_API_KEY", server.api_key)
    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy",
                 "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    return server
