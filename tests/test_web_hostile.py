"""A hostile review of the web app and the HTTP server behind it (issue 13), against uvicorn on
127.0.0.1 and, for what only a browser shows, Debian's Chromium through Playwright.

Tests marked ``xfail(strict=True)`` reproduce a defect found in the review (the reason names
it); they pass once it is fixed, and strict makes the fix visible. The others check what held
under attack: text from a model, a tool, an uploader or an address never runs as script; the
static route serves its own files only; keys stay out of URLs and logs; tenants, scopes and
concurrent decisions and resumes hold.
"""

from __future__ import annotations

import concurrent.futures
import http.server
import logging
import re
import socket
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from fastapi import FastAPI
from langchain_core.tools import BaseTool, StructuredTool
from playwright.sync_api import Browser, FilePayload, Page, ViewportSize, expect

from orchestrator import Orchestrator
from orchestrator.agents.it_ops import it_ops_agents
from orchestrator.agents.it_ops import tools as it_tools
from orchestrator.agents.policy import requires_approval
from orchestrator.agents.spec import AgentSpec
from orchestrator.config import load_settings
from orchestrator.retrieval.store import KnowledgeStore
from orchestrator.server import KeyStore, create_app
from tests.test_server_native import Served as NativeServed
from tests.test_server_native import serving as native_serving
from tests.test_server_openai import LiveServer
from tests.test_server_openai import no_proxy as no_proxy  # autouse: straight to 127.0.0.1
from tests.test_web_app import LAPTOP, Served, serving, sign_in
from tests.test_web_app import browser as browser  # module-scoped Chromium (Debian's)
from tests.test_web_app import page as page  # a fresh profile; page errors fail the test
from tests.test_web_app import served as served  # the server on the offline model, 0.2 s a call

FAILOVER = "planned failover for web-2"
PAGE_REQUEST = "alert the on-call team that web-3 is down"
# Each payload sets window.__pwned if the page ever treats text as markup or a URL as code.
IMG = '<img src=x onerror="window.__pwned=(window.__pwned||0)+1">'
SVG = '<svg onload="window.__pwned=1"><script>window.__pwned=1</script></svg>'
LINK = "[details](javascript:window.__pwned=1)"
HOSTILE = f"{IMG} {SVG} {LINK}"
NOT_PWNED = """() => ({
  pwned: window.__pwned === undefined ? null : window.__pwned,
  imgs: document.querySelectorAll('img[src="x"], svg[onload], script:not([src])').length,
  scriptLinks: [...document.querySelectorAll('a[href], [src]')].filter((el) =>
    /^\\s*(javascript|data|vbscript):/i.test(el.getAttribute('href') || el.getAttribute('src')
      || '')).length,
})"""
CLEAN = {"pwned": None, "imgs": 0, "scriptLinks": 0}


def route_of(db: sqlite3.Connection, service: str) -> str:
    return str(db.execute("SELECT pool FROM routes WHERE service = ?", (service,)).fetchone()[0])


def client(live: LiveServer, key: str) -> httpx.Client:
    return httpx.Client(base_url=live.url, timeout=60, headers={"Authorization": f"Bearer {key}"})


# --- agents whose tools carry hostile text into the app --------------------------------------


def echoing_pager() -> BaseTool:
    """alert_oncall that echoes its message: the answer then holds what the request said."""
    def page_oncall(service: str, message: str, severity: str = "high") -> str:
        return f"Paged the on-call engineer for {service} ({severity}): {message}"

    return StructuredTool.from_function(page_oncall, name="alert_oncall",
                                        description="Page the on-call engineer.",
                                        args_schema=it_tools.AlertArgs)


def own_copy(tool: BaseTool) -> BaseTool:
    """``tool`` over a function of its own: a policy declared on it (which goes on the tool
    and the function behind it) must not reach the shared function other tests use."""
    func = tool.func  # type: ignore[attr-defined]

    def call(*args: Any, **kwargs: Any) -> Any:  # not functools.wraps: policies follow
        return func(*args, **kwargs)             # __wrapped__ to the shared function

    call.__name__, call.__doc__ = func.__name__, func.__doc__

    return StructuredTool.from_function(call, name=tool.name, description=tool.description,
                                        args_schema=getattr(tool, "args_schema", None))


def hostile_agents() -> list[AgentSpec]:
    """IT ops agents where logging an incident needs an approval whose reason and preview
    repeat the summary (tool arguments, preview and why all carry the request's text)."""
    specs = []
    for spec in it_ops_agents():
        tools = list(spec.tools)
        if spec.name == "incident_log":
            tools = [requires_approval(
                own_copy(t), when=lambda a: f"the summary says {a.get('summary')}",
                preview=lambda a: f"would log: {a.get('summary')}")
                if t.name == "log_incident" else t for t in tools]
        if spec.name == "notifications":
            tools = [echoing_pager()]
        specs.append(AgentSpec(name=spec.name, description=spec.description, skills=spec.skills,
                               prompt=spec.prompt, tools=tools, collections=spec.collections,
                               domain=spec.domain))
    return specs


# --- XSS: nothing the server sends runs in the page -------------------------------------------


def test_hostile_text_from_requests_tools_approvals_uploads_and_errors_never_runs(
        page: Page, domain_db: Path, tmp_path: Path) -> None:
    with serving(domain_db, tmp_path, hostile_agents()) as served:
        key = served.keys.create("ana", "chat,approve,ingest")
        api = served.api(key)
        # A paused run whose goal, tool arguments, preview and reason all hold the payload.
        paused = api.post("/api/runs", json={
            "request": f"log an incident for web-3 with high severity: {HOSTILE}",
            "thread_id": "cr-1"}).json()
        assert paused["status"] == "paused", paused
        (waiting,) = paused["pending_approvals"]
        assert IMG in waiting["args"]["summary"] and IMG in waiting["preview"]
        # An answer that repeats the request (the pager echoes its message).
        echoed = api.post("/api/runs", json={"request": f"{PAGE_REQUEST}: {HOSTILE}",
                                             "thread_id": "inc-1"}).json()
        assert IMG in echoed["answer"], echoed["answer"]
        # An event whose data lands in a playbook's goals.
        fired = api.post("/api/events", headers={"X-Thread-Id": "ev-1"}, json={
            "name": "service_down", "data": {"service": f"web-3 {IMG}"}})
        assert fired.status_code == 200, fired.text

        sign_in(page, served, key, "/#/chat/cr-1")
        card = page.locator("#page-chat .approval")
        expect(card.locator(".call-args")).to_contain_text("onerror")
        expect(card.locator(".call-preview")).to_contain_text(IMG)
        expect(card.locator(".call-why")).to_contain_text(IMG)
        expect(page.locator(".thread-link").first).to_be_visible()
        assert page.evaluate(NOT_PWNED) == CLEAN

        # The answer streamed into the chat, with the plan graph's goals.
        page.goto(f"{served.live.url}/#/chat/new")
        page.get_by_label("Message to the supervisor").fill(f"{PAGE_REQUEST}: {HOSTILE}")
        page.get_by_role("button", name="Send").click()
        expect(page.locator(".run-line")).to_contain_text("ok", timeout=30_000)
        expect(page.locator(".message.assistant .answer").last).to_contain_text(IMG)
        expect(page.locator(".plan .node-goal").first).to_contain_text(IMG)
        assert page.evaluate(NOT_PWNED) == CLEAN

        for path, shown in (
                ("/#/chat/inc-1", ".message.assistant .answer"),
                ("/#/approvals", ".approval .call-preview"),
                (f"/#/runs/{echoed['run_id']}", ".run-title"),
                (f"/#/runs/{paused['run_id']}", ".run-title"),
                (f"/#/runs/{fired.json()['run_id']}", ".plan .node-goal"),
                ("/#/runs", ".run-request"),
                (f"/#/runs/{IMG}", "#page-runs .error"),  # the id comes back in the error
                (f"/#/chat/{IMG}", "#page-chat .chat-title")):
            page.goto(f"{served.live.url}{path}")
            expect(page.locator(shown).first).to_contain_text("onerror", timeout=30_000)
            assert page.evaluate(NOT_PWNED) == CLEAN, path
        page.goto(f"{served.live.url}/#/runs/{echoed['run_id']}")
        page.locator(".event-log").first.evaluate("(el) => el.closest('details').open = true")
        expect(page.locator(".answer")).to_contain_text(IMG)
        expect(page.locator(".bar.run").first).to_be_visible()

        # Uploads: a collection name that is markup is refused in words that quote it, and a
        # document whose title, heading and text are markup is found and shown as text.
        page.goto(f"{served.live.url}/#/knowledge")
        page.get_by_label("Collection (new or existing)").fill(IMG)
        document = f"# {IMG}\n\n## {SVG}\n\nquasar failover {HOSTILE}\n".encode()
        page.get_by_label("File (Markdown, text, HTML, PDF or JSONL)").set_input_files(
            files=[FilePayload(name="evil.md", mimeType="text/markdown", buffer=document)])
        page.get_by_role("button", name="Upload and ingest").click()
        expect(page.locator("#page-knowledge .error")).to_contain_text("onerror")
        page.get_by_label("Collection (new or existing)").fill("hostile")
        page.get_by_label("File (Markdown, text, HTML, PDF or JSONL)").set_input_files(
            files=[FilePayload(name="evil.html", mimeType="text/html", buffer=(
                b"<html><head><title>" + IMG.encode() + b"</title></head><body><h1>quasar</h1>"
                b"<p>quasar failover &lt;img src=x onerror=\"window.__pwned=1\"&gt;</p>"
                b"<script>window.__pwned=1</script></body></html>"))])
        page.get_by_role("button", name="Upload and ingest").click()
        expect(page.locator(".success")).to_contain_text("Ingested evil.html into hostile")
        page.get_by_label("Collection (new or existing)").fill("hostile")
        page.get_by_label("File (Markdown, text, HTML, PDF or JSONL)").set_input_files(
            files=[FilePayload(name="evil.md", mimeType="text/markdown", buffer=document)])
        page.get_by_role("button", name="Upload and ingest").click()
        expect(page.locator(".success")).to_contain_text("Ingested evil.md into hostile")
        page.get_by_label("What to look for").fill("quasar failover")
        page.get_by_role("button", name="Search", exact=True).click()
        expect(page.locator(".hit").first).to_contain_text("onerror")
        assert page.evaluate(NOT_PWNED) == CLEAN

        # Deciding shows the run's result, which repeats the call.
        page.goto(f"{served.live.url}/#/approvals")
        page.locator(".approval").first.get_by_role("button", name="Deny").click()
        expect(page.locator(".decided")).to_contain_text("Denied by ana", timeout=30_000)
        assert page.evaluate(NOT_PWNED) == CLEAN


def test_a_malformed_escape_in_the_address_does_not_break_the_app(
        browser: Browser, served: Served) -> None:
    context = browser.new_context(viewport=ViewportSize(width=LAPTOP["width"],
                                                     height=LAPTOP["height"]))
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    try:
        sign_in(opened, served, served.keys.create("ana", "chat"))
        opened.goto(f"{served.live.url}/#/runs/%E0%A4%A")
        opened.reload()
        expect(opened.locator("#page-runs, #page-chat").locator("visible=true").first
               ).to_be_visible()
        assert errors == []
    finally:
        context.close()


# --- headers: CSP, framing, third-party script on the key's origin ----------------------------


def test_the_page_sends_a_strict_csp_and_refuses_to_be_framed(served: Served) -> None:
    page = httpx.get(f"{served.live.url}/", timeout=30)
    assert page.headers["x-content-type-options"] == "nosniff"
    csp = page.headers.get("content-security-policy", "")
    directives = {d.strip().split(" ")[0]: d.strip() for d in csp.split(";") if d.strip()}
    assert "default-src 'self'" in directives.get("default-src", ""), csp
    assert "unsafe-inline" not in directives.get("script-src", directives["default-src"])
    assert "unsafe-eval" not in csp
    framing = directives.get("frame-ancestors", "")
    assert framing in ("frame-ancestors 'none'", "frame-ancestors 'self'") or page.headers.get(
        "x-frame-options", "").upper() in ("DENY", "SAMEORIGIN"), dict(page.headers)


@contextmanager
def attacker_site(html: str) -> Iterator[str]:
    """A page served from another origin (another port of 127.0.0.1: the same site)."""
    body = html.encode()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/"
    finally:
        server.shutdown()
        server.server_close()


def test_another_origin_cannot_frame_the_approve_button(
        page: Page, served: Served, db: sqlite3.Connection) -> None:
    key = served.keys.create("ana", "chat,approve")
    assert served.api(key).post("/api/runs", json={"request": FAILOVER, "thread_id": "cr-1"}
                                ).json()["status"] == "paused"
    sign_in(page, served, key, "/#/approvals")  # the key is now stored for the app's origin
    expect(page.locator(".approval")).to_be_visible()
    decoy = (f'<p>Win a prize: click the button!</p><iframe id="victim" '
             f'src="{served.live.url}/#/approvals" width="900" height="700" '
             'style="opacity:0.01;position:absolute;top:0;left:0"></iframe>')
    with attacker_site(decoy) as evil:
        page.goto(evil)
        framed = page.frame_locator("#victim").locator(".approval button.primary")
        deadline = time.monotonic() + 8
        while time.monotonic() < deadline and framed.count() == 0:
            page.wait_for_timeout(200)
        assert framed.count() == 0, "the approve button is live inside another origin's frame"
    assert route_of(db, "web-2") == "web-primary"


def test_no_page_on_the_apps_origin_runs_a_third_party_script(served: Served) -> None:
    for path in ("/", "/docs", "/redoc"):
        response = httpx.get(f"{served.live.url}{path}", timeout=30)
        if response.status_code == 404:
            continue
        scripts = re.findall(r"""<script[^>]+src=["']([^"']+)""", response.text)
        foreign = [s for s in scripts if re.match(r"^(https?:)?//", s)]
        assert foreign == [], f"{path} loads {foreign}"


# --- the static route ---------------------------------------------------------------------------


def test_the_static_route_serves_only_its_own_files_with_their_types(served: Served) -> None:
    base = served.live.url
    for path, kind in (("/", "text/html"), ("/app/js/app.js", "text/javascript"),
                       ("/app/app.css", "text/css"), ("/app/icon.svg", "image/svg+xml")):
        response = httpx.get(base + path, timeout=30)
        assert response.status_code == 200 and response.headers["content-type"].startswith(kind)
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.headers["cache-control"] == "no-cache"
    for path in ("/app/../webapp.py", "/app/%2e%2e/webapp.py", "/app/%2e%2e%2fwebapp.py",
                 "/app/..%2f..%2fpyproject.toml", "/app/%2e%2e/%2e%2e/keys.py",
                 "/app//etc/passwd", "/app/%2fetc%2fpasswd", "/app/", "/app/js", "/app/js/",
                 "/app/JS/APP.JS", "/app/js/app.js%00.html", "/app/js/app.js/",
                 "/app/..\\webapp.py", "/app/web/index.html"):
        response = httpx.get(base + path, timeout=30)
        assert response.status_code == 404, path
        assert response.headers["content-type"] == "application/json", path
        assert "import" not in response.text and "root:" not in response.text, path
    listing = httpx.get(base + "/app/js/", timeout=30)
    assert "app.js" not in listing.text  # no directory listing
    home = httpx.get(base + "/", timeout=30).text
    assert not re.search(r"ok_[A-Za-z0-9_-]{20}", home)  # the page holds no key


def test_api_me_says_who_the_key_is_and_nothing_of_other_keys(served: Served) -> None:
    mine = served.keys.create("ana", "chat,approve", tenant="acme")
    served.keys.create("boss", "admin,chat,approve,ingest", tenant="globex")
    me = client(served.live, mine).get("/api/me")
    assert me.json() == {"name": "ana", "tenant": "acme", "scopes": ["approve", "chat"]}
    assert "globex" not in me.text and "boss" not in me.text and "ok_" not in me.text
    assert httpx.get(f"{served.live.url}/api/me", timeout=30).status_code == 401
    wrong = client(served.live, mine + "x").get("/api/me")
    assert wrong.status_code == 401 and mine not in wrong.text
    served.keys.revoke("ana")
    assert client(served.live, mine).get("/api/me").status_code == 401


# --- keys stay out of URLs and logs -------------------------------------------------------------


class LoggedServer(LiveServer):
    """LiveServer with uvicorn's access log on (what an operator's log would hold)."""

    def __init__(self, app: FastAPI) -> None:
        super().__init__(app)
        self.server = uvicorn.Server(uvicorn.Config(app, log_level="info", access_log=True))
        self.thread = threading.Thread(target=self.server.run, kwargs={
            "sockets": [self.socket]}, daemon=True)


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(record.getMessage() + (str(record.exc_info) if record.exc_info
                                                 else ""))


def test_the_key_is_never_in_a_url_or_a_server_log_line(
        page: Page, domain_db: Path, tmp_path: Path) -> None:
    lines = Lines()
    loggers = [logging.getLogger(n) for n in ("uvicorn.access", "uvicorn.error", "uvicorn",
                                              "orchestrator", "")]
    orch = Orchestrator("fake", domain_db=domain_db,
                        knowledge=KnowledgeStore(tmp_path / "chroma", embedder="hash"),
                        checkpointer=tmp_path / "checkpoints.sqlite", settings=load_settings())
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    try:
        with KeyStore.from_settings() as keys, LoggedServer(create_app(orch, keys)) as live:
            for logger in loggers:  # after uvicorn configured its loggers at start
                logger.addHandler(lines)
            key = keys.create("ana", "chat,approve,ingest")
            served = Served(live, orch, keys)
            sign_in(page, served, key)
            page.get_by_label("Message to the supervisor").fill(PAGE_REQUEST)
            page.get_by_role("button", name="Send").click()
            expect(page.locator(".run-line")).to_contain_text("ok", timeout=30_000)
            for where in ("#/approvals", "#/runs", "#/agents", "#/knowledge"):
                page.goto(f"{live.url}/{where}")
                expect(page.locator(".page:not([hidden]) h1")).to_be_visible()
            # A refused, a revoked and a malformed key, and a key sent where keys do not go.
            for bad in (key + "x", "ok_" + "A" * 43, key.replace("ok_", "ko_")):
                assert client(live, bad).get("/api/runs").status_code == 401
            assert httpx.get(f"{live.url}/api/runs", params={"key": key}, timeout=30
                             ).status_code == 401
            assert client(live, key).get("/api/runs/nope").status_code == 404
            keys.revoke("ana")
            assert client(live, key).get("/api/me").status_code == 401
            time.sleep(0.2)  # the access log line is written after the response
    finally:
        for logger in loggers:
            logger.removeHandler(lines)
        orch.close()
    assert any("GET /api/me" in line for line in lines.lines), lines.lines[:5]
    secret = key.removeprefix("ok_")
    leaked = [line for line in lines.lines if secret in line and "key=" not in line]
    assert leaked == []
    assert [u for u in urls if secret in u] == []


# --- tenancy, scopes and concurrency through the changed routes ---------------------------------


@pytest.fixture
def native(domain_db: Path, tmp_path: Path) -> Iterator[NativeServed]:
    with native_serving(domain_db, tmp_path) as running:
        yield running


@pytest.fixture
def slow_native(domain_db: Path, tmp_path: Path) -> Iterator[NativeServed]:
    with native_serving(domain_db, tmp_path, "fake:latency=0.3") as running:
        yield running


def test_concurrent_decisions_on_one_approval_decide_it_once(
        native: NativeServed, db: sqlite3.Connection) -> None:
    chat = native.client("ops")
    paused = chat.post("/api/runs", json={"request": FAILOVER, "thread_id": "cr-1"}).json()
    assert paused["status"] == "paused"
    deciders = [native.keys.create(f"boss-{i}", "chat,approve", tenant="acme") for i in range(6)]

    def decide(i: int) -> httpx.Response:
        with client(native.live, deciders[i]) as boss:
            return boss.post("/api/threads/cr-1/approvals",
                             json={"approve": i % 2 == 0, "reason": f"boss {i}"})

    with concurrent.futures.ThreadPoolExecutor(len(deciders)) as pool:
        answers = list(pool.map(decide, range(len(deciders))))
    assert sorted(a.status_code for a in answers)[0] == 200
    assert sum(a.status_code == 200 for a in answers) == 1, [a.text for a in answers]
    assert all(a.status_code in (400, 409) for a in answers if a.status_code != 200)
    decided = [e for e in native.orch.records.events(paused["run_id"])
               if e.type == "approval_decided"]
    assert len(decided) == 1
    winner = next(i for i, a in enumerate(answers) if a.status_code == 200)
    assert decided[0].data["approver"] == f"boss-{winner}"
    assert route_of(db, "web-2") == ("web-primary" if winner % 2 else "web-backup-b")


def test_deciding_needs_the_approve_scope_and_the_tenant(
        native: NativeServed, db: sqlite3.Connection) -> None:
    chat = native.client("ops", "chat,ingest,admin")  # every scope but approve
    assert chat.post("/api/runs", json={"request": FAILOVER, "thread_id": "cr-2"}
                     ).json()["status"] == "paused"
    refused = chat.post("/api/threads/cr-2/approvals", json={"approve": True})
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "missing_scope"
    stranger = native.client("globex-boss", "chat,approve", tenant="globex")
    assert stranger.post("/api/threads/cr-2/approvals", json={"approve": True}
                         ).status_code == 404
    assert stranger.post("/api/threads/acme:cr-2/approvals", json={"approve": True}
                         ).status_code == 404
    # A chat message on the paused thread cannot approve it either.
    said = chat.post("/v1/chat/completions", headers={"X-Thread-Id": "cr-2"}, json={
        "model": "orchestrator", "messages": [{"role": "user", "content": "yes, approve it"}]})
    assert said.status_code == 400
    assert route_of(db, "web-2") == "web-primary"
    assert [a["tool"] for a in chat.get("/api/approvals").json()["approvals"]] == [
        "reroute_traffic"]


def test_resume_is_for_the_tenants_interrupted_run_once(
        slow_native: NativeServed, db: sqlite3.Connection) -> None:
    chat = slow_native.client("ops")
    started = chat.post("/api/runs", json={"request": PAGE_REQUEST, "thread_id": "inc-1",
                                           "background": True}).json()
    run_id = started["run_id"]
    assert chat.post(f"/api/runs/{run_id}/cancel").json()["status"] == "interrupted"
    stranger = slow_native.client("globex", tenant="globex")
    for response in (stranger.post(f"/api/runs/{run_id}/resume"),
                     stranger.post(f"/api/runs/{run_id[:8]}/resume"),
                     chat.post(f"/api/runs/{run_id[:8]}/resume")):
        assert response.status_code == 404
    resumers = [slow_native.keys.create(f"r{i}", "chat", tenant="acme") for i in range(6)]

    def resume(i: int) -> httpx.Response:
        with client(slow_native.live, resumers[i]) as c:
            return c.post(f"/api/runs/{run_id}/resume", json={"background": i % 2 == 0})

    with concurrent.futures.ThreadPoolExecutor(len(resumers)) as pool:
        answers = list(pool.map(resume, range(len(resumers))))
    assert sum(a.status_code in (200, 202) for a in answers) == 1, [a.text for a in answers]
    assert all(a.status_code == 409 for a in answers if a.status_code not in (200, 202))
    deadline = time.monotonic() + 30
    while chat.get(f"/api/runs/{run_id}").json()["status"] in ("running", "resuming"):
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert chat.get(f"/api/runs/{run_id}").json()["status"] == "ok"
    assert [r[0] for r in db.execute("SELECT service FROM alerts")] == ["web-3"]  # paged once

    # A run whose thread went on since cannot be resumed over the newer turn.
    other = chat.post("/api/runs", json={"request": PAGE_REQUEST, "thread_id": "inc-2",
                                         "background": True}).json()["run_id"]
    chat.post(f"/api/runs/{other}/cancel")
    assert chat.post("/api/runs", json={"request": "check web-1 health", "thread_id": "inc-2"}
                     ).json()["status"] == "ok"
    late = chat.post(f"/api/runs/{other}/resume")
    assert late.status_code == 409 and "went on" in late.json()["error"]["message"]


def test_another_tenants_event_stream_trace_and_history_are_404(native: NativeServed) -> None:
    acme = native.client("ops")
    run = acme.post("/api/runs", json={"request": FAILOVER, "thread_id": "cr-3"}).json()
    globex = native.client("spy", "chat,approve,ingest,admin", tenant="globex")
    for response in (globex.get(f"/api/runs/{run['run_id']}/events",
                                headers={"Last-Event-ID": "0"}),
                     globex.get(f"/api/runs/{run['run_id']}/trace"),
                     globex.get("/api/threads/cr-3/history"),
                     globex.get("/api/approvals", params={"thread_id": "cr-3"})):
        assert response.status_code == 404, response.request.url
        assert "web-2" not in response.text
    assert globex.get("/api/approvals").json() == {"approvals": []}


# --- an approval card decides what it showed, not what came after ----------------------------


def test_a_stale_approval_card_cannot_approve_a_call_it_never_showed(
        page: Page, served: Served, db: sqlite3.Connection) -> None:
    ana = served.keys.create("ana", "chat,approve")
    sign_in(page, served, ana, "/#/approvals")
    api = served.api(served.keys.create("ops", "chat,approve"))
    first = api.post("/api/runs", json={"request": FAILOVER, "thread_id": "cr-1"}).json()
    assert first["status"] == "paused"
    page.get_by_role("button", name="Refresh").click()
    card = page.locator('.approval[data-thread="cr-1"]')
    expect(card.locator(".call-preview")).to_contain_text("web-2")

    # Meanwhile a colleague denies it, and the thread goes on to another call.
    assert api.post("/api/threads/cr-1/approvals", json={"approve": False}).status_code == 200
    second = api.post("/api/runs", json={"request": "planned failover for web-1",
                                         "thread_id": "cr-1"}).json()
    assert second["status"] == "paused"
    assert second["pending_approvals"][0]["args"] == {"service": "web-1"}

    # Ana approves what her card shows: moving web-2.
    card.get_by_role("button", name="Approve").click()
    expect(card.locator(".decided, .error")).to_be_visible(timeout=30_000)
    assert route_of(db, "web-1") == "web-primary", "web-1 moved on an approval of web-2"
    assert [a["args"] for a in api.get("/api/approvals").json()["approvals"]] == [
        {"service": "web-1"}]  # still waits for someone who has seen it


# --- robustness -------------------------------------------------------------------------------


def test_malformed_bodies_are_client_errors_and_the_server_stays_up(
        native: NativeServed) -> None:
    chat = native.client("ops", "chat,approve")
    json_type = {"Content-Type": "application/json"}
    deep = b"[" * 200_000 + b"]" * 200_000
    for path, body in (
            ("/v1/chat/completions", b'{"model":"orchestrator","messages":[{"role":"user",'
             b'"content":"hi"}],"x":' + deep + b"}"),
            ("/api/runs", b'{"request":"hi","x":' + deep + b"}"),
            ("/api/threads/x/approvals", b'{"approve":true,"reason":' + deep + b"}"),
            ("/api/events", b'{"name":"service_down","data":' + b'{"a":' * 100_000 + b"1"
             + b"}" * 100_000 + b"}"),
            ("/api/runs", b'{"request":"check web-1 health \xff\xfe"}'),
            ("/v1/chat/completions", b'{"model":"orchestrator","messages":[{"role":"user",'
             b'"content":"hi \xc3\x28"}]}')):
        with client(native.live, chat.headers["Authorization"][7:]) as fresh:
            answer = fresh.post(path, content=body, headers=json_type)
        assert 400 <= answer.status_code < 500, (path, answer.status_code, answer.text[:200])
        assert "error" in answer.json()
    huge = chat.post("/api/runs", json={"request": "check web-1 health " + "x" * 20_000})
    assert huge.status_code in (400, 413, 422)
    assert chat.post("/api/runs", json={"request": "check web-1 health"}).json()["status"] == "ok"


@pytest.mark.parametrize("path", ["/api/runs", "/v1/chat/completions"])
def test_a_lone_surrogate_in_a_request_is_a_client_error(native: NativeServed,
                                                         path: str) -> None:
    key = native.keys.create("ops", "chat", tenant="acme")
    body = (b'{"request":"check web-1 health \\ud800","thread_id":"s-1"}' if path == "/api/runs"
            else b'{"model":"orchestrator","messages":[{"role":"user","content":'
                 b'"check web-1 health \\ud800"}]}')
    with client(native.live, key) as chat:
        answer = chat.post(path, content=body, headers={"Content-Type": "application/json",
                                                        "X-Thread-Id": "s-1"})
    with client(native.live, key) as chat:  # a 500 closes the connection: a new one
        after = chat.post("/api/runs", json={"request": "check web-1 health",
                                             "thread_id": "s-1"})
    assert after.status_code == 200 and after.json()["status"] == "ok"  # the thread is free
    assert 400 <= answer.status_code < 500, answer.text

def test_a_lone_surrogate_in_a_decision_or_an_event_is_refused_before_anything_happens(
        native: NativeServed, db: sqlite3.Connection) -> None:
    # It used to pass the checks, take the approval off the run (which then stayed
    # "resuming" for good) or start the event's run (its writes done, the caller told 500).
    key = native.keys.create("ops", "chat,approve", tenant="acme")
    json_type = {"Content-Type": "application/json"}
    with client(native.live, key) as api:
        paused = api.post("/api/runs", json={"request": FAILOVER, "thread_id": "f-1"}).json()
        assert paused["status"] == "paused"
        refused = api.post("/api/threads/f-1/approvals", headers=json_type,
                           content=b'{"approve": false, "reason": "no \\ud800"}')
        assert refused.status_code == 422, refused.text
        error = refused.json()["error"]
        assert (error["param"], error["code"]) == ("reason", "invalid_body")
        assert "unpaired surrogate" in error["message"]
        # The run still waits for its decision, which a valid reason then makes.
        assert api.get(f"/api/runs/{paused['run_id']}").json()["status"] == "paused"
        denied = api.post("/api/threads/f-1/approvals", json={"approve": False,
                                                              "reason": "no \U0001f600"})
        assert denied.status_code == 200 and denied.json()["status"] == "partial", denied.text

        for body in (b'{"name": "service_down", "data": {"service": "web-3\\ud800"}}',
                     b'{"name": "service_down", "data": {"\\udc00": "web-3"}}'):
            fired = api.post("/api/events", headers=json_type, content=body)
            assert fired.status_code == 422, fired.text
            assert "unpaired surrogate" in fired.json()["error"]["message"]
        # Nor spelled in the bytes (UTF-8 cannot hold a surrogate; Python's JSON reader
        # takes one), nor in a body that is not UTF-8 at all.
        for body in (b'{"approve": false, "reason": "no \xed\xa0\x80"}',
                     '{"approve": false, "reason": "no"}'.encode("utf-16")):
            refused = api.post("/api/threads/f-1/approvals", headers=json_type, content=body)
            assert refused.status_code == 422, refused.text
            assert "not UTF-8" in refused.json()["error"]["message"]
        raw = api.post("/api/events", headers=json_type,
                       content=b'{"name": "service_down", "data": {"service": "\xed\xa0\x80"}}')
        assert raw.status_code == 422, raw.text
        # Nested past any recursion limit, with an escape: a clear error, not a 500.
        deep = b'{"name": "service_down", "data": ' + b'{"a": ' * 5000 + b'"\\ud800"' \
            + b"}" * 5000 + b"}"
        nested = api.post("/api/events", headers=json_type, content=deep)
        assert 400 <= nested.status_code < 500, nested.text[:200]
    assert [r.run_id for r in native.orch.records.runs()] == [paused["run_id"]]
    assert str(db.execute("SELECT pool FROM routes WHERE service = 'web-2'").fetchone()[0]) \
        == "web-primary"


# One key's idle event streams: capped per key and per server, tested without timing in
# tests/test_server_failures.py (test_a_key_holds_a_bounded_number_of_event_streams_...).


def test_a_chat_stream_nobody_reads_does_not_hold_the_run(native: NativeServed) -> None:
    key = native.keys.create("ops", "chat", tenant="acme")
    conns = []
    body = (b'{"model":"orchestrator","stream":true,"messages":[{"role":"user","content":"'
            + b"check web-1 health, check web-2 health" + b'"}]}')
    for i in range(20):
        conn = socket.create_connection(("127.0.0.1", native.live.port), timeout=30)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1024)
        conn.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer "
                     + key.encode() + b"\r\nContent-Type: application/json\r\nX-Thread-Id: s-"
                     + str(i).encode() + b"\r\nContent-Length: " + str(len(body)).encode()
                     + b"\r\n\r\n" + body)
        conns.append(conn)
    try:
        deadline = time.monotonic() + 60
        with client(native.live, key) as chat:
            while len([r for r in chat.get("/api/runs", params={"status": "ok"}).json()[
                    "runs"]]) < 20:
                assert time.monotonic() < deadline, chat.get("/api/runs", params={
                    "limit": 50}).text
                time.sleep(0.2)
    finally:
        for conn in conns:
            conn.close()

