"""The web app in a real browser: Debian's Chromium driven by Playwright against the server
under uvicorn on 127.0.0.1 with the offline model; checked on the page (Playwright's
auto-waiting ``expect``, no sleeps) and in the business database and the run store."""

from __future__ import annotations

import fnmatch
import json
import re
import shutil
import sqlite3
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright

from orchestrator import Orchestrator
from orchestrator.agents.it_ops import tools as it_tools
from orchestrator.agents.spec import AgentSpec
from orchestrator.config import load_settings
from orchestrator.events import Event
from orchestrator.retrieval.store import KnowledgeStore
from orchestrator.server import KeyStore, create_app
from orchestrator.server.progress import progress
from orchestrator.server.webapp import WEB_ROOT
from tests.conftest import INCIDENT_REQUEST
from tests.test_recovery import Faults, agents_with, alert_rows
from tests.test_server_openai import LiveServer, alerts
from tests.test_server_openai import no_proxy as no_proxy  # autouse: straight to 127.0.0.1

ROOT = Path(__file__).resolve().parents[1]
CHECKS = "check web-1 health, check web-2 health, check web-3 health"
FAILOVER = "planned failover for web-2"
ROUTE = "SELECT pool FROM routes WHERE service = 'web-2'"
LAPTOP = {"width": 1280, "height": 800}
PHONE = {"width": 390, "height": 844}
RUNBOOK = b"""# Failover of the quasar pool

When the quasar pool is saturated, move traffic to quasar-backup-7 and page the owner.
"""
# Counts, from inside the page, what a test cannot see by polling: how many times the answer
# grew while it streamed, and the most subtasks running at one moment.
WATCH = """() => {
  window.watched = {answerUpdates: 0, maxRunning: 0};
  new MutationObserver(() => {
    const running = document.querySelectorAll('.node[data-status="running"]').length;
    window.watched.maxRunning = Math.max(window.watched.maxRunning, running);
  }).observe(document.body, {subtree: true, childList: true, attributes: true});
  new MutationObserver((changes) => {
    if (changes.some((c) => c.target.closest && c.target.closest('.answer'))) {
      window.watched.answerUpdates += 1;
    }
  }).observe(document.body, {subtree: true, childList: true, characterData: true});
}"""


@dataclass
class Served:
    live: LiveServer
    orch: Orchestrator
    keys: KeyStore

    def api(self, key: str) -> httpx.Client:
        return httpx.Client(base_url=self.live.url, timeout=60,
                            headers={"Authorization": f"Bearer {key}"})


@contextmanager
def serving(domain_db: Path, folder: Path, agents: list[AgentSpec] | None = None,
            **settings: object) -> Iterator[Served]:
    """The server over the offline model at 0.2 s a call (a run lasts long enough to be
    watched), a knowledge store on the hash embedder and the test's business database."""
    orch = Orchestrator("fake:latency=0.2", domain_db=domain_db, agents=agents,
                        knowledge=KnowledgeStore(folder / "chroma", embedder="hash"),
                        checkpointer=folder / "checkpoints.sqlite",
                        settings=load_settings(**settings))
    try:
        with KeyStore.from_settings() as keys, LiveServer(create_app(orch, keys)) as live:
            yield Served(live, orch, keys)
    finally:
        orch.close()


@pytest.fixture
def served(domain_db: Path, tmp_path: Path) -> Iterator[Served]:
    with serving(domain_db, tmp_path) as running:
        yield running


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    """Debian's Chromium (``apt-get install chromium``); a missing one fails the tests."""
    chromium = shutil.which("chromium")
    if chromium is None:
        pytest.fail("chromium is not installed: apt-get install chromium (the web app's "
                    "tests drive it with Playwright)")
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=chromium)
        yield launched
        launched.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    """A fresh browser profile (no key stored) at laptop size; page errors fail the test."""
    context = browser.new_context(viewport=LAPTOP)
    opened = context.new_page()
    errors: list[str] = []
    opened.on("pageerror", lambda error: errors.append(str(error)))
    yield opened
    context.close()
    assert errors == [], f"errors in the page's scripts: {errors}"


def sign_in(page: Page, served: Served, key: str, path: str = "/") -> None:
    page.goto(served.live.url + path)
    dialog = page.get_by_role("dialog", name="Sign in with an API key")
    expect(dialog).to_be_visible()
    page.get_by_label("API key", exact=True).fill(key)
    page.get_by_role("button", name="Sign in").click()
    expect(dialog).to_be_hidden()


def send(page: Page, text: str) -> None:
    page.get_by_label("Message to the supervisor").fill(text)
    page.get_by_role("button", name="Send").click()


def route_of(db: sqlite3.Connection) -> str:
    return str(db.execute(ROUTE).fetchone()[0])


# --- chat ---------------------------------------------------------------------------------


def test_a_key_is_asked_for_then_the_answer_streams_in_and_the_key_is_kept(
        page: Page, served: Served) -> None:
    sign_in(page, served, served.keys.create("ops", "chat", tenant="acme"))
    expect(page.get_by_text("ops · acme")).to_be_visible()
    page.evaluate(WATCH)
    asked: list[str] = []
    page.on("request", lambda sent: asked.append(sent.url))
    send(page, CHECKS)

    answer = page.locator(".message.assistant .answer").last
    expect(answer).to_contain_text("Completed 3 of 3 subtasks", timeout=30_000)
    expect(page.locator(".run-line")).to_contain_text("ok")
    (run,) = served.orch.records.runs()
    record = served.orch.records.run(run.run_id)
    assert run.thread_id.startswith("acme:web-")
    assert answer.inner_text().strip() == record["answer"].strip()
    # The answer was written piece by piece as the synthesizer streamed it, not in one go.
    assert page.evaluate("window.watched.answerUpdates") > 5
    # The stream named its run: the turn shows that run, read by its id, not looked up.
    expect(page.locator(f'.message.assistant[data-run-id="{run.run_id}"] .run-line a')
           .first).to_have_text(run.run_id[:8])
    assert f"{served.live.url}/api/runs/{run.run_id}" in asked
    assert not [url for url in asked if "/api/runs?" in url], asked

    # The key stays in this browser: a new visit goes straight to the conversation.
    page.reload()
    expect(page.get_by_role("dialog")).to_be_hidden()
    expect(page.locator(".message.user .bubble")).to_have_text(CHECKS)
    expect(page.locator(".thread-link[aria-current=page]")).to_contain_text(CHECKS[:20])


@pytest.mark.parametrize("size", [LAPTOP, PHONE], ids=["laptop", "phone"])
def test_a_new_turn_in_a_long_conversation_stays_in_view_above_the_composer(
        page: Page, served: Served, size: dict[str, int]) -> None:
    page.set_viewport_size(size)
    sign_in(page, served, served.keys.create("ops", "chat"))
    for turn in range(3):  # earlier turns fill the page
        send(page, CHECKS)
        expect(page.locator(".run-line")).to_have_count(turn + 1, timeout=30_000)

    def hidden_under_composer(selector: str) -> float:
        return float(page.evaluate("""(selector) => {
            const box = [...document.querySelectorAll(selector)].pop().getBoundingClientRect();
            return box.bottom - document.querySelector('.composer').getBoundingClientRect().top;
        }""", selector))

    # The newest answer, its plan and its run line end above the composer, not under it.
    assert hidden_under_composer(".message.assistant") <= 0
    assert hidden_under_composer(".message.assistant .run-line") <= 0


def test_a_reloaded_conversation_shows_each_earlier_plan_folded_and_only_its_tenants(
        page: Page, served: Served) -> None:
    key = served.keys.create("ops", "chat", tenant="acme")
    api = served.api(key)
    first = api.post("/api/runs", json={"request": INCIDENT_REQUEST,
                                        "thread_id": "inc-7"}).json()
    second = api.post("/api/runs", json={"request": CHECKS, "thread_id": "inc-7"}).json()
    assert (first["status"], second["status"]) == ("ok", "ok")
    theirs = served.api(served.keys.create("them", "chat", tenant="globex"))
    assert theirs.post("/api/runs", json={"request": FAILOVER,
                                          "thread_id": "cr-8"}).status_code == 200
    sign_in(page, served, key, "/#/chat/inc-7")

    plans = page.locator(".message.assistant .past-plan")
    expect(plans).to_have_count(2)
    assert plans.evaluate_all("ps => ps.map(p => [p.dataset.runId, p.open])") == [
        [first["run_id"], False], [second["run_id"], False]]
    expect(plans.nth(0).locator(".node")).to_be_hidden()  # folded until asked for
    plans.nth(0).locator("summary").click()
    nodes = plans.nth(0).locator(".plan .node")
    expect(nodes).to_have_count(4)
    expect(plans.nth(0).locator('.node[data-status="done"]')).to_have_count(4)
    assert sorted(nodes.locator(".node-agent").all_inner_texts()) == [
        "diagnostics", "incident_log", "notifications", "traffic"]
    plans.nth(1).locator("summary").click()
    expect(plans.nth(1).locator('.plan .node[data-status="done"]')).to_have_count(3)
    line = page.locator(".message.assistant .run-line").nth(1)
    expect(line.locator(".pill")).to_have_text("ok")
    expect(line.locator("a").first).to_have_attribute("href", f"#/runs/{second['run_id']}")

    # The list of conversations is the tenant's, from GET /api/threads.
    links = page.locator(".thread-link")
    expect(links).to_have_count(1)
    expect(links.first).to_have_attribute("data-thread", "inc-7")
    expect(links.first.locator(".thread-title")).to_have_text(INCIDENT_REQUEST)
    expect(links.first.locator(".thread-meta")).to_contain_text("2 runs")


def test_a_reopened_paused_conversation_draws_its_plan_and_follows_the_decision(
        page: Page, served: Served, db: sqlite3.Connection) -> None:
    key = served.keys.create("ana", "chat,approve")
    paused = served.api(key).post("/api/runs", json={"request": FAILOVER,
                                                     "thread_id": "cr-3"}).json()
    assert paused["status"] == "paused"
    sign_in(page, served, key, "/#/chat/cr-3")

    reroute = page.locator('.message.assistant .plan .node[data-subtask-id="reroute"]')
    expect(reroute).to_have_attribute("data-status", "approval")
    expect(page.locator(".thread-link .pill")).to_have_text("paused")
    page.locator(".approval").get_by_role("button", name="Approve").click()
    expect(page.locator(".approval .decided")).to_contain_text("Approved by ana",
                                                               timeout=30_000)
    expect(page.locator('.message.assistant .plan .node[data-status="done"]')).to_have_count(3)
    assert route_of(db) == "web-backup-b"


def test_a_parallel_plan_is_a_graph_whose_subtasks_run_side_by_side_and_finish(
        page: Page, served: Served, db: sqlite3.Connection) -> None:
    sign_in(page, served, served.keys.create("ops", "chat"))
    page.evaluate(WATCH)
    send(page, INCIDENT_REQUEST)

    nodes = page.locator(".plan .node")
    expect(nodes).to_have_count(4, timeout=30_000)
    expect(page.locator(".plan .plan-row")).to_have_count(1)  # no dependencies: one row
    expect(page.locator('.plan .node[data-status="done"]')).to_have_count(4, timeout=30_000)
    expect(page.locator(".run-line")).to_contain_text("ok", timeout=30_000)
    assert page.evaluate("window.watched.maxRunning") >= 2  # seen running at the same time
    agents = [nodes.nth(i).locator(".node-agent").inner_text() for i in range(4)]
    assert sorted(agents) == ["diagnostics", "incident_log", "notifications", "traffic"]
    for i in range(4):  # each finished node shows its time and its tokens
        expect(nodes.nth(i).locator(".elapsed")).to_have_text(re.compile(r"^\d+(\.\d)? (ms|s)$"))
        expect(nodes.nth(i).locator(".tokens")).to_have_text(re.compile(r"^[\d,]+ tok$"))
    assert alerts(db) == ["web-3"]


def test_recovery_shows_on_the_node_as_it_happens_retried_then_reassigned(
        page: Page, domain_db: Path, tmp_path: Path, db: sqlite3.Connection) -> None:
    broken = Faults().wrap("alert_oncall", it_tools.alert_oncall, "Page the on-call engineer.")
    backup = AgentSpec(
        name="backup_pager", description="Second paging channel: pages on-call engineers.",
        skills=["alert", "page", "on-call"], tools=[it_tools.alert_oncall], domain="it_ops")
    with serving(domain_db, tmp_path, agents_with(broken, backup), max_retries=1) as served:
        sign_in(page, served, served.keys.create("ops", "chat"))
        send(page, "check the health of web-2 and alert the on-call engineer for web-3: "
             "disk full")

        paged = page.locator(".plan .node", has_text="alert the on-call engineer")
        expect(paged).to_have_attribute("data-status", "done", timeout=30_000)
        expect(paged.locator(".node-agent")).to_have_text("backup_pager")
        notes = paged.locator(".node-notes li")
        expect(notes).to_have_count(2)
        expect(notes.nth(0)).to_contain_text("retried, attempt 2 after:")
        expect(notes.nth(0)).to_contain_text("503")
        expect(notes.nth(1)).to_contain_text("reassigned from notifications to backup_pager")
        expect(paged.locator(".attempts")).to_have_text("3 attempts")
        assert alert_rows(db) == [("web-3", "Dana Okafor")]


# --- approvals ----------------------------------------------------------------------------


def test_approving_a_paused_run_from_its_card_moves_the_traffic(
        page: Page, served: Served, db: sqlite3.Connection) -> None:
    sign_in(page, served, served.keys.create("ana", "chat,approve"))
    send(page, FAILOVER)

    card = page.locator(".approval")
    expect(card).to_be_visible(timeout=30_000)
    expect(card.locator(".call-tool")).to_have_text("reroute_traffic")
    expect(card.locator(".call-args")).to_contain_text('"service": "web-2"')
    expect(card.locator(".call-preview")).to_contain_text("web-primary -> web-backup-b")
    expect(page.locator('.plan .node[data-subtask-id="reroute"]')).to_have_attribute(
        "data-status", "approval")
    expect(page.locator(".plan .plan-row")).to_have_count(2)  # log waits for the other two
    expect(page.locator(".plan .edge")).to_have_count(2)
    assert route_of(db) == "web-primary"  # nothing moved before the approval
    # The page decides it: the answer says it waits, not how to decide it through the API
    # or the CLI, and the conversation takes no message until then.
    paused_answer = page.locator(".message.assistant .answer").last
    expect(paused_answer).to_have_text(
        "Paused: this request needs an approval before it goes on.")
    expect(page.get_by_role("button", name="Awaiting approval")).to_be_disabled()

    card.get_by_label("Reason (stored with the decision)").fill("change CR-42")
    card.get_by_role("button", name="Approve").click()
    expect(card.locator(".decided")).to_contain_text("Approved by ana", timeout=30_000)
    expect(card.locator(".decided .pill")).to_have_text("ok")
    expect(page.get_by_role("button", name="Send")).to_be_enabled()
    expect(card.locator(".answer")).to_contain_text("web-backup-b")
    expect(page.locator('.plan .node[data-status="done"]')).to_have_count(3)
    assert route_of(db) == "web-backup-b"
    (run,) = served.orch.records.runs()
    (decided,) = [e for e in served.orch.records.events(run.run_id)
                  if e.type == "approval_decided"]
    assert (decided.data["approved"], decided.data["approver"], decided.data["reason"]) == (
        True, "ana", "change CR-42")


def test_a_denial_on_the_approvals_page_leaves_the_database_as_it_was(
        page: Page, served: Served, db: sqlite3.Connection) -> None:
    key = served.keys.create("ana", "chat,approve")
    paused = served.api(key).post("/api/runs", json={"request": FAILOVER,
                                                     "thread_id": "cr-7"}).json()
    assert paused["status"] == "paused"
    sign_in(page, served, key, "/#/approvals")
    expect(page.locator("#approval-count")).to_have_text("1")

    card = page.locator('.approval[data-thread="cr-7"]')
    expect(card.locator(".call-why")).to_contain_text("needs an approval")
    card.get_by_label("Reason (stored with the decision)").fill("not in the window")
    card.get_by_role("button", name="Deny").click()
    expect(card.locator(".decided")).to_contain_text("Denied by ana", timeout=30_000)
    assert route_of(db) == "web-primary"
    (decided,) = [e for e in served.orch.records.events(paused["run_id"])
                  if e.type == "approval_decided"]
    assert (decided.data["approved"], decided.data["reason"]) == (False, "not in the window")
    page.reload()
    expect(page.get_by_text("Nothing waits for an approval.")).to_be_visible()
    expect(page.locator("#approval-count")).to_be_hidden()


def test_a_key_without_the_approve_scope_sees_the_call_and_why_it_cannot_decide(
        page: Page, served: Served, db: sqlite3.Connection) -> None:
    key = served.keys.create("bob", "chat")
    served.api(key).post("/api/runs", json={"request": FAILOVER, "thread_id": "cr-9"})
    sign_in(page, served, key, "/#/approvals")

    card = page.locator('.approval[data-thread="cr-9"]')
    expect(card.locator(".call-tool")).to_have_text("reroute_traffic")
    expect(card.locator(".scope-notice")).to_contain_text("needs the approve scope")
    expect(card.get_by_role("button")).to_have_count(0)
    assert route_of(db) == "web-primary"



def test_a_card_that_went_stale_between_its_check_and_its_decision_decides_nothing(
        page: Page, served: Served, db: sqlite3.Connection) -> None:
    ops = served.api(served.keys.create("ops", "chat,approve"))
    assert ops.post("/api/runs", json={"request": FAILOVER, "thread_id": "cr-1"}
                    ).json()["status"] == "paused"
    shown = ops.get("/api/approvals", params={"thread_id": "cr-1"}).text
    sign_in(page, served, served.keys.create("ana", "chat,approve"), "/#/approvals")
    card = page.locator('.approval[data-thread="cr-1"]')
    expect(card.locator(".call-args")).to_contain_text('"service": "web-2"')
    # A colleague denies it and the thread goes on to another call; the card's own check
    # still sees the old call (the change lands between its check and its decision).
    assert ops.post("/api/threads/cr-1/approvals", json={"approve": False}).status_code == 200
    assert ops.post("/api/runs", json={"request": "planned failover for web-1",
                                       "thread_id": "cr-1"}).json()["status"] == "paused"
    page.route("**/api/approvals?thread_id=cr-1",
               lambda route: route.fulfill(status=200, body=shown,
                                           content_type="application/json"), times=1)
    decisions: list[object] = []
    page.on("request", lambda r: decisions.append(r.post_data_json)
            if r.method == "POST" and r.url.endswith("/api/threads/cr-1/approvals") else None)

    card.get_by_role("button", name="Approve").click()
    expect(card.locator(".changed")).to_contain_text(
        "changed since this card was shown, so nothing was decided")
    expect(card.locator(".call-args")).to_contain_text('"service": "web-1"')
    expect(card.locator(".call-args")).to_have_count(1)
    (key,) = [a["key"] for a in ops.get("/api/approvals").json()["approvals"]]
    assert decisions == [{"approve": True, "reason": None,
                          "keys": [a["key"] for a in json.loads(shown)["approvals"]]}]
    web_1 = "SELECT pool FROM routes WHERE service = 'web-1'"
    assert db.execute(web_1).fetchone()[0] == "web-primary"  # nothing moved

    card.get_by_role("button", name="Approve").click()  # what it shows now, seen
    expect(card.locator(".decided")).to_contain_text("Approved by ana", timeout=30_000)
    assert decisions[1] == {"approve": True, "reason": None, "keys": [key]}
    assert db.execute(web_1).fetchone()[0] == "web-backup-b"

# --- runs and traces ------------------------------------------------------------------------


def test_the_runs_list_opens_a_trace_with_one_lane_per_agent(
        page: Page, served: Served) -> None:
    key = served.keys.create("ops", "chat")
    done = served.api(key).post("/api/runs", json={"request": INCIDENT_REQUEST,
                                                   "thread_id": "inc-1"}).json()
    assert done["status"] == "ok"
    sign_in(page, served, key, "/#/runs")

    item = page.locator(f'.run-item[data-run-id="{done["run_id"]}"]')
    expect(item).to_contain_text(INCIDENT_REQUEST)
    expect(item.locator(".pill")).to_have_text("ok")
    item.click()
    expect(page.locator(".run-title")).to_have_text(INCIDENT_REQUEST)
    lanes = page.locator(".timeline .lane[data-agent]")
    expect(lanes).to_have_count(4)
    trace = served.api(key).get(f"/api/runs/{done['run_id']}/trace").json()
    assert sorted(lanes.evaluate_all("ls => ls.map(l => l.dataset.agent)")) == sorted(
        lane["agent"] for lane in trace["agents"])
    for span in trace["subtasks"]:
        expect(page.locator(f'.bar.run[data-subtask-id="{span["id"]}"]')).to_be_visible()
    expect(page.locator(".trace-summary")).to_contain_text("Ran in parallel: t1")
    expect(page.locator('.plan .node[data-status="done"]')).to_have_count(4)
    expect(page.locator(".answer")).to_contain_text("Completed 4 of 4 subtasks")


# --- agents and knowledge -------------------------------------------------------------------


def test_a_filter_that_matches_no_run_and_an_unknown_run_say_so_alone(
        page: Page, served: Served) -> None:
    key = served.keys.create("ops", "chat")
    served.api(key).post("/api/runs", json={"request": CHECKS})
    sign_in(page, served, key, "/#/runs?status=failed")
    expect(page.get_by_text("No failed runs here.")).to_be_visible()
    expect(page.get_by_text("No runs yet.")).to_have_count(0)
    expect(page.get_by_role("link", name="see all runs")).to_be_visible()

    page.goto(served.live.url + "/#/runs/doesnotexist")
    expect(page.get_by_role("alert")).to_contain_text("This run could not be loaded")
    expect(page.get_by_role("heading", name="Timeline per agent")).to_have_count(0)
    expect(page.get_by_role("link", name="← All runs")).to_be_visible()


def test_a_stopped_run_shows_in_its_conversation_and_resumes_from_its_page(
        page: Page, served: Served, db: sqlite3.Connection) -> None:
    key = served.keys.create("ops", "chat")
    api = served.api(key)
    started = api.post("/api/runs", json={"request": "alert the on-call team that web-3 is "
                                          "down", "thread_id": "stop-1", "background": True})
    run_id = started.json()["run_id"]
    stopped = api.post(f"/api/runs/{run_id}/cancel")
    assert stopped.json()["status"] == "interrupted", stopped.text

    sign_in(page, served, key, "/#/chat/stop-1")
    unanswered = page.locator(".message.unanswered")
    expect(unanswered).to_contain_text("No answer: this run was interrupted.")
    unanswered.get_by_role("link", name="trace").click()
    page.get_by_role("button", name="Resume").click()
    expect(page.locator(".page-head .pill")).to_have_text("ok", timeout=30_000)
    expect(page.locator(".answer")).to_contain_text("Paged")
    assert api.get(f"/api/runs/{run_id}").json()["status"] == "ok"
    assert [row[0] for row in db.execute("SELECT service FROM alerts")] == ["web-3"]


def test_a_trace_shows_a_wait_for_a_decision_in_the_words_of_the_plan(
        page: Page, served: Served) -> None:
    key = served.keys.create("ana", "chat,approve")
    api = served.api(key)
    paused = api.post("/api/runs", json={"request": FAILOVER, "thread_id": "t-w"}).json()
    sign_in(page, served, key, f"/#/runs/{paused['run_id']}")
    # Waiting: the graph, the timeline and the table say the same thing.
    expect(page.locator('.plan .node[data-subtask-id="reroute"]')).to_have_attribute(
        "data-status", "approval")
    rows = page.locator("table.spans tbody tr")
    expect(rows.filter(has_text="reroute")).to_contain_text("needs approval")
    expect(rows.filter(has_text="log")).to_contain_text("waiting")
    expect(page.locator(".bar.decision")).to_have_count(1)
    api.post("/api/threads/t-w/approvals", json={"approve": False, "reason": "not now"})
    page.reload()
    expect(page.locator('.plan .node[data-subtask-id="reroute"]')).to_have_attribute(
        "data-status", "denied")
    expect(rows.filter(has_text="reroute")).to_contain_text("denied")
    expect(page.locator(".legend")).to_contain_text("waited for a decision")


def test_agents_show_their_tools_and_statistics(page: Page, served: Served) -> None:
    key = served.keys.create("ops", "chat")
    served.api(key).post("/api/runs", json={"request": CHECKS})
    sign_in(page, served, key, "/#/agents")

    monitoring = page.locator('.agent[data-agent="monitoring"]')
    expect(monitoring.locator(".stats")).to_contain_text("Success")
    stats = served.api(key).get("/api/agents").json()
    (mine,) = [a for a in stats if a["name"] == "monitoring"]
    expect(monitoring.locator(".stats")).to_contain_text(f"Attempts{mine['stats']['attempts']}")
    # Each value sits under its own label (they used to drift a column apart).
    pairs = page.evaluate("""() => [...document.querySelectorAll(
        '.agent[data-agent="monitoring"] .stats dt')].map((dt) => [dt.textContent,
        dt.getBoundingClientRect().left, dt.nextElementSibling.getBoundingClientRect().left,
        dt.nextElementSibling.textContent])""")
    assert [label for label, *_ in pairs] == ["Runs", "Attempts", "Success", "Mean time",
                                              "p95 time", "Tokens"]
    assert all(dt_left == dd_left for _, dt_left, dd_left, _ in pairs), pairs
    assert dict((label, value) for label, _, _, value in pairs)["Attempts"] == str(
        mine["stats"]["attempts"])
    expect(page.get_by_role("heading", name="it ops")).to_be_visible()
    expect(monitoring.get_by_text("check_service_health")).to_be_visible()
    page.get_by_label("Filter").fill("zzz-no-such-agent")
    expect(page.get_by_text("No agent matches.")).to_be_visible()


def test_a_file_is_uploaded_then_found_with_its_citation(
        page: Page, served: Served) -> None:
    sign_in(page, served, served.keys.create("kb", "chat,ingest"), "/#/knowledge")
    expect(page.get_by_text("No collections yet.")).to_be_visible()
    page.get_by_label("Collection (new or existing)").fill("runbooks")
    page.get_by_label("File (Markdown, text, HTML, PDF or JSONL)").set_input_files(
        files=[{"name": "quasar.md", "mimeType": "text/markdown", "buffer": RUNBOOK}])
    page.get_by_role("button", name="Upload and ingest").click()
    expect(page.locator(".success")).to_contain_text("Ingested quasar.md into runbooks")
    expect(page.locator('tr[data-collection="runbooks"]')).to_be_visible()

    page.get_by_label("What to look for").fill("where does quasar traffic go when saturated")
    page.get_by_role("button", name="Search", exact=True).click()
    hit = page.locator(".hit").first
    expect(hit.locator(".citation")).to_have_text(re.compile(r"^quasar\.md#\d+$"))
    expect(hit).to_contain_text("quasar-backup-7")

    # A wrong upload is refused in the server's words.
    page.get_by_label("Collection (new or existing)").fill("runbooks")
    page.get_by_label("File (Markdown, text, HTML, PDF or JSONL)").set_input_files(
        files=[{"name": "tool.exe", "mimeType": "application/octet-stream", "buffer": b"MZ"}])
    page.get_by_role("button", name="Upload and ingest").click()
    expect(page.locator("#page-knowledge .error")).to_contain_text("unsupported file type '.exe'")


# --- keys and layout ------------------------------------------------------------------------


def test_a_wrong_or_revoked_key_is_refused_in_words_and_asked_again(
        page: Page, served: Served) -> None:
    page.goto(served.live.url + "/")
    page.get_by_label("API key", exact=True).fill("ok_not-a-key")
    page.get_by_role("button", name="Sign in").click()
    error = page.locator("#key-error")
    expect(error).to_contain_text("That key was refused (invalid or revoked API key)")
    expect(page.get_by_role("dialog")).to_be_visible()

    page.get_by_label("API key", exact=True).fill(served.keys.create("temp", "chat"))
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_role("dialog")).to_be_hidden()
    served.keys.revoke("temp")
    page.reload()  # the key kept in the browser is checked again, and refused
    expect(page.get_by_role("dialog")).to_be_visible()
    expect(error).to_contain_text("That key was refused (invalid or revoked API key)")


@pytest.mark.parametrize("viewport", [LAPTOP, PHONE], ids=["1280x800", "390x844"])
def test_every_page_fits_the_window_without_horizontal_scroll(
        browser: Browser, served: Served, viewport: dict[str, int]) -> None:
    key = served.keys.create("ana", "chat,approve,ingest")
    api = served.api(key)
    done = api.post("/api/runs", json={"request": INCIDENT_REQUEST, "thread_id": "inc-2"}).json()
    api.post("/api/runs", json={"request": FAILOVER, "thread_id": "cr-1"})
    context = browser.new_context(viewport=viewport)
    page = context.new_page()
    try:
        sign_in(page, served, key, "/#/chat/inc-2")
        checks = {
            "/#/chat/inc-2": "#page-chat .message.assistant .answer",
            "/#/chat/cr-1": "#page-chat .approval .call-args",
            "/#/approvals": "#page-approvals .approval .decide",
            "/#/runs": "#page-runs .run-item",
            f"/#/runs/{done['run_id']}": "#page-runs .timeline .bar.run",
            "/#/agents": "#page-agents .agent .tools",
            "/#/knowledge": "#page-knowledge #kb-query",
        }
        for path, ready in checks.items():
            page.goto(served.live.url + path)
            expect(page.locator(ready).first).to_be_visible()
            width, inner = page.evaluate(
                "[document.documentElement.scrollWidth, window.innerWidth]")
            assert width <= inner, f"{path} is {width}px wide in a {inner}px window"
    finally:
        context.close()


# --- the server side of the app -------------------------------------------------------------


def test_the_page_and_its_files_need_no_key_and_nothing_else_is_served(
        served: Served) -> None:
    url = served.live.url
    page = httpx.get(f"{url}/", timeout=30)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert 'src="/app/js/app.js"' in page.text
    script = httpx.get(f"{url}/app/js/chat.js", timeout=30)
    assert script.headers["content-type"].startswith("text/javascript")
    for missing in ("/app/js/nope.js", "/app/../webapp.py", "/app/%2e%2e/webapp.py",
                    "/app/js/../../webapp.py"):
        assert httpx.get(f"{url}{missing}", timeout=30).status_code == 404, missing
    # No CDN, no external font: every file the page loads comes from this server.
    for path in WEB_ROOT.rglob("*"):
        if path.is_file():
            text = path.read_text("utf-8")
            assert "http://" not in text.replace("http://www.w3.org/2000/svg", "")
            assert "https://" not in text, path



def test_the_api_reference_at_docs_is_drawn_from_the_schema_by_the_servers_own_files(
        page: Page, served: Served) -> None:
    sign_in(page, served, served.keys.create("ana", "chat"))  # a key is stored in the browser
    # The reference in a page of its own (same browser storage): the app's page may still be
    # loading its conversations with the key, and only the reference's requests count here.
    page = page.context.new_page()
    sent: list[tuple[str, str | None]] = []
    page.on("request", lambda r: sent.append((r.url, r.headers.get("authorization"))))
    response = page.goto(f"{served.live.url}/docs")
    assert response is not None and "frame-ancestors 'none'" in response.headers[
        "content-security-policy"]

    page.get_by_label("Filter routes").fill("POST runs")
    start = page.locator("#post-api-runs")
    expect(start).to_have_attribute("open", "")  # a filter that leaves a few opens them
    expect(start.locator(".route-head")).to_contain_text("Start Run")
    body = start.locator(".media.body")
    expect(body.locator(".media-head")).to_contain_text("application/json · RunRequest")
    expect(body.locator("> .fields > .field")).to_have_count(4)
    request = body.locator('.field[data-field="request"]')
    expect(request.locator(".field-required")).to_have_text("required")
    expect(request).to_contain_text("What to do, in words.")
    expect(body.locator('.field[data-field="thread_id"] .field-type')).to_have_text(
        "string or null")
    expect(body.locator('.field[data-field="background"]')).to_contain_text("default false")
    expect(body.locator('.field[data-field="request_id"]')).to_contain_text("Idempotency-Key")
    expect(start.locator('.response[data-status="202"]')).to_contain_text("RunAccepted")
    expect(page.locator("#docs-count")).to_contain_text(" of ")

    page.get_by_label("Filter routes").fill("")
    page.goto(f"{served.live.url}/docs#get-api-runs")  # a link to a route opens it
    listing = page.locator("#get-api-runs")
    expect(listing).to_have_attribute("open", "")
    limit = listing.locator('.params .field[data-field="limit"]')
    expect(limit).to_contain_text("in query")
    expect(limit.locator(".field-limits")).to_have_text("default 20 · 1 to 1000")
    decide = page.locator("#post-api-threads-thread_id-approvals")
    expect(decide.locator('.field[data-field="keys"] .field-type')).to_have_text(
        "array of string or null")
    expect(page.locator("#get-health .route-scope")).to_have_text("Needs no key.")
    expect(page.locator("section.tag h2")).to_contain_text(["runs"])

    page.get_by_label("Filter routes").fill("no-such-route")
    expect(page.locator(".no-match")).to_contain_text("No route matches “no-such-route”")
    expect(page.locator(".route:not([hidden])")).to_have_count(0)
    # Only this server was asked, and the page never sent the stored key.
    assert sent and all(url.startswith(served.live.url) for url, _ in sent), sent
    assert {url.removeprefix(served.live.url) for url, key in sent if key} == set()


def test_no_page_breaks_the_content_security_policy(page: Page, served: Served) -> None:
    """The CSP allows only the server's own files: no inline script or style, no eval; each
    page, /docs included, is drawn whole with nothing refused."""
    page.add_init_script("""window.__refused = [];
      document.addEventListener('securitypolicyviolation', (e) =>
        window.__refused.push(`${e.violatedDirective} ${e.blockedURI} ${e.sourceFile}`));""")
    key = served.keys.create("ana", "chat,approve,ingest")
    done = served.api(key).post("/api/runs", json={"request": INCIDENT_REQUEST,
                                                   "thread_id": "inc-1"}).json()
    served.api(key).post("/api/runs", json={"request": FAILOVER, "thread_id": "cr-1"})
    sign_in(page, served, key, "/#/chat/inc-1")
    for path, ready in (("/#/chat/inc-1", ".message.assistant .answer"),
                        ("/#/chat/cr-1", ".approval .call-args"),
                        ("/#/approvals", ".approval .decide"),
                        (f"/#/runs/{done['run_id']}", ".timeline .bar.run"),
                        ("/#/agents", ".agent .tools"),
                        ("/#/knowledge", "#kb-query"),
                        ("/docs#post-api-runs", "#post-api-runs .field")):
        page.goto(served.live.url + path)
        if path.startswith("/#"):
            page.reload()  # a new document: the listener sees everything from the start
        expect(page.locator(ready).first).to_be_visible()
        assert page.evaluate("window.__refused") == [], path

def test_api_me_says_who_the_key_is(served: Served) -> None:
    key = served.keys.create("ana", "chat,approve", tenant="acme")
    assert served.api(key).get("/api/me").json() == {
        "name": "ana", "tenant": "acme", "scopes": ["approve", "chat"]}
    assert httpx.get(f"{served.live.url}/api/me", timeout=30).status_code == 401


def test_the_wheel_ships_every_file_of_the_web_app() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text("utf-8"))
    patterns = config["tool"]["setuptools"]["package-data"]["orchestrator.server"]
    files = [p.relative_to(WEB_ROOT.parent).as_posix() for p in WEB_ROOT.rglob("*")
             if p.is_file()]
    assert files and all(any(fnmatch.fnmatch(f, pat) for pat in patterns) for f in files), files


# --- progress for the graph -----------------------------------------------------------------


def test_progress_carries_what_the_graph_shows_time_tokens_attempts_and_recovery() -> None:
    finished = progress(Event(
        "subtask_finished", "r1", subtask_id="t1", agent="monitoring",
        usage={"llm_calls": 2, "input_tokens": 300, "output_tokens": 45},
        data={"status": "done", "kind": None, "attempts": 2, "elapsed_s": 1.25,
              "agents_tried": ["monitoring"]}))
    assert finished == {"type": "subtask_finished", "subtask_id": "t1", "agent": "monitoring",
                        "status": "done", "attempts": 2, "elapsed_s": 1.25, "tokens": 345}
    retried = progress(Event("retried", "r1", subtask_id="t1", agent="monitoring", data={
        "attempt": 2, "after": "timeout", "kind": "timeout", "delay_s": 0.5}))
    assert retried == {"type": "retried", "subtask_id": "t1", "agent": "monitoring",
                       "attempt": 2, "after": "timeout"}
    moved = progress(Event("reassigned", "r1", subtask_id="t1", agent="diagnostics", data={
        "from": "monitoring", "to": "diagnostics", "reason": "failed twice", "after": None,
        "kind": "error"}))
    assert moved is not None and (moved["from"], moved["agent"]) == ("monitoring", "diagnostics")
    plan = {"subtasks": [{"id": "t1", "agent": "a", "goal": "g", "depends_on": []},
                         {"id": "t2", "agent": "b", "goal": "h", "depends_on": ["t1"]}]}
    replanned = progress(Event("replanned", "r1", subtask_id="t0", data={
        "replaced": "t0", "added": [plan["subtasks"][1]], "plan": plan}))
    assert replanned is not None and replanned["replaced"] == "t0"
    assert [(s["id"], s["depends_on"]) for s in replanned["subtasks"]] == [
        ("t1", []), ("t2", ["t1"])]
