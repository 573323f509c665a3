"""Marketing tools: campaign content from product facts, send times from past engagement,
campaign state, and analytics that change the plan for the next send. Sending to more than
5,000 customers needs an approval."""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from langchain_core.tools import tool
from pydantic import BaseModel, Field

from orchestrator.agents.policy import requires_approval, writes
from orchestrator.domain_db import Connection, Row, connect, fetch_row

CAMPAIGN_PATTERN = r"^cmp-[0-9]+$"
LARGE_SEND = 5000
_PASSAGE = re.compile(r"\[([^\]\s]+#\d+)\]\s*(.*?)(?=\n\[[^\]\s]+#\d+\]|\Z)", re.S)


class CampaignArgs(BaseModel):
    campaign: str = Field(description="Campaign id, e.g. cmp-1.", pattern=CAMPAIGN_PATTERN)


class DraftArgs(CampaignArgs):
    facts: str = Field(description="Product facts to use, with their [source#chunk] "
                       "citation markers from the knowledge base.")


def _campaign(conn: Connection, campaign: str) -> Row:
    return fetch_row(conn, "SELECT * FROM campaigns WHERE id = ?", campaign, "campaign")


@tool(args_schema=DraftArgs)
def draft_campaign_email(campaign: str, facts: str) -> str:
    """Write a campaign's email for its goal and audience from cited product facts."""
    with connect() as conn:
        row = _campaign(conn, campaign)
        sku = row["product"].split()[0]
        product = row["product"].split(" ", 1)[1]
        cited = [(c, text) for c, text in _PASSAGE.findall(facts) if f"({sku})" in text]
        if not cited:
            raise ValueError(f"no cited facts about {sku}: retrieve them from the knowledge "
                             "base first")
        citation, text = cited[0]
        fact = _fact_after_heading(text, sku)
        subject = f"{product} for {row['audience']}"
        body = (f"Hi, fellow {row['audience'].removesuffix('s')}: {product}. "
                f"{fact} Goal: {row['goal']}. Shop now.")
        citations = [citation]
        version = conn.execute("SELECT count(*) FROM campaign_content WHERE campaign_id = ?",
                               (campaign,)).fetchone()[0] + 1
        conn.execute("INSERT INTO campaign_content (campaign_id, version, subject, body, "
                     "citations) VALUES (?, ?, ?, ?, ?)",
                     (campaign, version, subject, body, ", ".join(citations)))
    return (f"Email v{version} for {campaign}: subject '{subject}'; {body} "
            f"(facts from {', '.join(f'[{c}]' for c in citations)})")


def _fact_after_heading(text: str, sku: str) -> str:
    """The first sentence under the heading that names ``sku``."""
    lines = text.splitlines()
    for index, line in enumerate(lines):
        if line.startswith("#") and f"({sku})" in line:
            body = " ".join(part.strip() for part in lines[index + 1:index + 4]
                            if part.strip() and not part.startswith("#"))
            first = re.split(r"(?<=[.;])\s+", body)[0].rstrip(";")
            return first if first.endswith(".") else first + "."
    return ""


def _best_hour(conn: Connection, audience: str) -> tuple[int, float]:
    row = conn.execute("SELECT send_hour, 1.0 * opens / sends AS rate FROM engagement_history "
                       "WHERE audience = ? ORDER BY rate DESC LIMIT 1", (audience,)).fetchone()
    return (int(row[0]), float(row[1])) if row else (10, 0.0)


def _large_send(args: Mapping[str, Any]) -> str | None:
    with connect() as conn:
        row = conn.execute("SELECT audience_size FROM campaigns WHERE id = ?",
                           (str(args.get("campaign")),)).fetchone()
    if row is not None and row[0] > LARGE_SEND:
        return f"sending to {row[0]} customers (over {LARGE_SEND}) needs the marketing lead"
    return None


@tool(args_schema=CampaignArgs)
def schedule_campaign_email(campaign: str) -> str:
    """Schedule a campaign's latest email at the hour its audience opens most."""
    with connect() as conn:
        row = _campaign(conn, campaign)
        if not conn.execute("SELECT 1 FROM campaign_content WHERE campaign_id = ?",
                            (campaign,)).fetchone():
            raise ValueError(f"{campaign} has no email yet: write it first")
        hour, rate = _best_hour(conn, row["audience"])
        conn.execute("INSERT INTO email_schedules (campaign_id, send_hour, recipients) "
                     "VALUES (?, ?, ?)", (campaign, hour, row["audience_size"]))
        conn.execute("UPDATE campaigns SET status = 'scheduled' WHERE id = ?", (campaign,))
    return (f"{campaign} scheduled at {hour:02d}:00 for {row['audience_size']} "
            f"{row['audience']} (best past open rate {rate:.0%}).")


@tool(args_schema=CampaignArgs)
def start_campaign(campaign: str) -> str:
    """Make a scheduled campaign active."""
    with connect() as conn:
        row = _campaign(conn, campaign)
        if row["status"] != "scheduled":
            raise ValueError(f"{campaign} is {row['status']}: schedule its email first")
        conn.execute("UPDATE campaigns SET status = 'active' WHERE id = ?", (campaign,))
    return f"Campaign {campaign} ({row['name']}) is active."


@tool(args_schema=CampaignArgs)
def analyze_campaign(campaign: str) -> str:
    """Engagement of a finished campaign against its audience's history, with advice."""
    with connect() as conn:
        row = _campaign(conn, campaign)
        result = conn.execute("SELECT sum(sends), sum(opens), sum(clicks) FROM "
                              "campaign_results WHERE campaign_id = ?", (campaign,)).fetchone()
        if not result[0]:
            raise ValueError(f"no results for {campaign} yet")
        open_rate, click_rate = result[1] / result[0], result[2] / result[0]
        hour, best = _best_hour(conn, row["audience"])
        advice = []
        if open_rate < best * 0.8:
            advice.append(f"send at {hour:02d}:00 (history {best:.0%} opens)")
        if click_rate < 0.03:
            advice.append("lead with one product benefit and a single call to action")
        recommendation = "; ".join(advice) or "keep the plan"
        conn.execute("INSERT INTO campaign_analytics VALUES (?, ?, ?, ?) ON CONFLICT "
                     "(campaign_id) DO UPDATE SET open_rate = excluded.open_rate, click_rate "
                     "= excluded.click_rate, recommendation = excluded.recommendation",
                     (campaign, round(open_rate, 4), round(click_rate, 4), recommendation))
    return (f"{campaign}: open rate {open_rate:.1%}, click rate {click_rate:.1%}; "
            f"next send: {recommendation}.")


@tool(args_schema=CampaignArgs)
def update_next_send_plan(campaign: str) -> str:
    """Set a campaign's plan for the next send from its latest analytics."""
    with connect() as conn:
        _campaign(conn, campaign)
        row = conn.execute("SELECT recommendation FROM campaign_analytics WHERE "
                           "campaign_id = ?", (campaign,)).fetchone()
        if row is None:
            raise ValueError(f"no analytics for {campaign} yet: analyse it first")
        conn.execute("UPDATE campaigns SET next_send_plan = ? WHERE id = ?",
                     (row[0], campaign))
    return f"Next send of {campaign}: {row[0]}."


def _send_preview(args: Mapping[str, Any]) -> str:
    with connect() as conn:
        row = _campaign(conn, str(args["campaign"]))
        hour, _ = _best_hour(conn, row["audience"])
    return f"email {row['audience_size']} {row['audience']} at {hour:02d}:00 ({args['campaign']})"


writes(draft_campaign_email, destructive=False)
writes(schedule_campaign_email, destructive=False, open_world=True)
writes(start_campaign, destructive=False)
writes(analyze_campaign, destructive=False, idempotent=True)  # records the analysis
writes(update_next_send_plan, destructive=False, idempotent=True)
schedule_email = requires_approval(schedule_campaign_email, when=_large_send,
                                   preview=_send_preview)
