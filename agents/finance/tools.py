"""Financial services tools: transactions and holds, fraud scores, compliance, verification,
onboarding documents. Releasing a held transaction always needs an approval."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from langchain_core.tools import tool
from pydantic import BaseModel, Field

from orchestrator.agents.policy import read_only, requires_approval, writes
from orchestrator.domain_db import Connection, Row, connect, fetch_row

TX_PATTERN = r"^tx-[0-9]+$"
CLIENT_PATTERN = r"^cl-[0-9]+$"
HIGH_RISK = 70
LARGE_AMOUNT = 5000.0
REPEAT_MINUTES = 14.4
"""Two payments of a client to one merchant closer than this are a repeat (0.01 day)."""


class TxArgs(BaseModel):
    tx: str = Field(description="Transaction id, e.g. tx-1004.", pattern=TX_PATTERN)


class NoticeArgs(TxArgs):
    message: str = Field(description="What compliance needs to know: score, reasons, actions.")


class ClientArgs(BaseModel):
    client: str = Field(description="Client id, e.g. cl-3.", pattern=CLIENT_PATTERN)


def _tx(conn: Connection, tx: str) -> Row:
    return fetch_row(conn, "SELECT t.*, c.name, c.home_country FROM transactions t JOIN "
                     "clients c ON c.id = t.client_id WHERE t.id = ?", tx, "transaction")


def _minutes_apart(first: str, second: str) -> float:
    """Minutes between two ``YYYY-MM-DD HH:MM`` times; infinite when one is not a time."""
    try:
        delta = datetime.fromisoformat(first) - datetime.fromisoformat(second)
    except (TypeError, ValueError):
        return float("inf")
    return abs(delta.total_seconds()) / 60


@tool
def list_suspicious_transactions() -> str:
    """Posted transactions that the monitoring rules flag (large, abroad, or repeated)."""
    with connect() as conn:
        rows = conn.execute(
            "SELECT t.id, t.amount, t.merchant, t.country, c.home_country FROM transactions t "
            "JOIN clients c ON c.id = t.client_id WHERE t.status = 'posted' ORDER BY t.id"
        ).fetchall()
        pairs = conn.execute(
            "SELECT a.id, a.created_at, b.created_at FROM transactions a JOIN transactions b "
            "ON a.client_id = b.client_id AND a.merchant = b.merchant AND a.id != b.id"
        ).fetchall()
    repeats = {r[0] for r in pairs if _minutes_apart(r[1], r[2]) < REPEAT_MINUTES}
    flagged = [f"{r['id']} ${r['amount']:.2f} at {r['merchant']} ({r['country']})" for r in rows
               if r["amount"] >= LARGE_AMOUNT or r["country"] != r["home_country"]
               or r["id"] in repeats]
    return "Flagged: " + "; ".join(flagged) if flagged else "No suspicious transaction."


@tool(args_schema=TxArgs)
def hold_transaction(tx: str) -> str:
    """Hold (pause) a transaction so no money moves while it is checked."""
    with connect() as conn:
        row = _tx(conn, tx)
        if row["status"] == "blocked":
            raise ValueError(f"{tx} is blocked; it cannot be held")
        conn.execute("UPDATE transactions SET status = 'held' WHERE id = ?", (tx,))
    return f"Transaction {tx} (${row['amount']:.2f} at {row['merchant']}) is on hold."


@tool(args_schema=TxArgs)
def release_transaction(tx: str) -> str:
    """Release a held transaction so it is paid."""
    with connect() as conn:
        row = _tx(conn, tx)
        if row["status"] != "held":
            raise ValueError(f"{tx} is {row['status']}, not held")
        conn.execute("UPDATE transactions SET status = 'released' WHERE id = ?", (tx,))
    return f"Transaction {tx} released."


@tool(args_schema=TxArgs)
def score_transaction(tx: str) -> str:
    """Score a transaction's fraud risk (0-100) from rules and the client's history."""
    with connect() as conn:
        row = _tx(conn, tx)
        history = conn.execute(
            "SELECT amount, merchant FROM transactions WHERE client_id = ? AND id != ? "
            "AND created_at < ?", (row["client_id"], tx, row["created_at"])).fetchall()
        typical = sum(h["amount"] for h in history) / len(history) if history else 0.0
        rules = [
            (35, row["amount"] >= LARGE_AMOUNT, f"large amount ${row['amount']:.2f}"),
            (20, bool(typical) and row["amount"] > 10 * typical,
             f"{row['amount'] / typical:.0f}x the client's typical ${typical:.2f}"
             if typical else ""),
            (20, row["country"] != row["home_country"], f"abroad ({row['country']})"),
            (10, row["merchant"] not in {h["merchant"] for h in history}, "new merchant"),
            (10, row["created_at"][11:13] < "06", "at night"),
        ]
        score = 5 + sum(points for points, hit, _ in rules if hit)
        reasons = [why for _, hit, why in rules if hit]
        score = min(score, 100)
        text = ", ".join(reasons) or "nothing unusual"
        conn.execute("INSERT INTO fraud_scores (tx_id, score, reasons) VALUES (?, ?, ?) "
                     "ON CONFLICT(tx_id) DO UPDATE SET score = excluded.score, "
                     "reasons = excluded.reasons", (tx, score, text))
    risk = "HIGH RISK" if score >= HIGH_RISK else "low risk"
    return f"Fraud score of {tx}: {score}/100, {risk} ({text})."


@tool(args_schema=NoticeArgs)
def notify_compliance(tx: str, message: str) -> str:
    """Tell the compliance team about a transaction."""
    with connect() as conn:
        _tx(conn, tx)
        conn.execute("INSERT INTO compliance_notices (tx_id, message) VALUES (?, ?)",
                     (tx, message[:1000]))
    return f"Compliance notified about {tx}."


@tool(args_schema=NoticeArgs)
def file_compliance_case(tx: str, message: str) -> str:
    """Open a compliance case (a suspicious activity report) for a transaction."""
    with connect() as conn:
        _tx(conn, tx)
        cursor = conn.execute("INSERT INTO compliance_cases (tx_id, summary) VALUES (?, ?)",
                              (tx, message[:1000]))
    return f"Compliance case #{cursor.lastrowid} opened for {tx}."


@tool(args_schema=TxArgs)
def request_verification(tx: str) -> str:
    """Ask the client who made a transaction to confirm it in the app."""
    with connect() as conn:
        row = _tx(conn, tx)
        conn.execute("INSERT INTO verification_requests (client_id, tx_id, status) VALUES "
                     "(?, ?, 'sent')", (row["client_id"], tx))
    return f"Verification request sent to {row['name']} ({row['client_id']}) for {tx}."


@tool(args_schema=ClientArgs)
def check_documents(client: str) -> str:
    """A client's onboarding documents and KYC status."""
    with connect() as conn:
        person = fetch_row(conn, "SELECT * FROM clients WHERE id = ?", client, "client")
        docs = conn.execute("SELECT doc_type, status FROM onboarding_documents WHERE "
                            "client_id = ? ORDER BY doc_type", (client,)).fetchall()
    listed = ", ".join(f"{d['doc_type']} {d['status']}" for d in docs) or "none"
    missing = [d["doc_type"] for d in docs if d["status"] == "missing"]
    return (f"{person['name']} ({client}): KYC {person['kyc_status']}; documents: {listed}"
            + (f"; missing: {', '.join(missing)}." if missing else "."))


@tool(args_schema=ClientArgs)
def request_missing_documents(client: str) -> str:
    """Ask a client for the onboarding documents that are missing."""
    with connect() as conn:
        missing = [r[0] for r in conn.execute(
            "SELECT doc_type FROM onboarding_documents WHERE client_id = ? AND "
            "status = 'missing'", (client,))]
        fetch_row(conn, "SELECT 1 FROM clients WHERE id = ?", client, "client")
        if missing:
            conn.execute("UPDATE onboarding_documents SET status = 'requested' WHERE "
                         "client_id = ? AND status = 'missing'", (client,))
    if not missing:
        return f"{client} has no missing document."
    return f"Requested {', '.join(missing)} from {client}."


def _not_releasable(args: Mapping[str, Any]) -> str | None:
    """Only a held transaction can be released; a blocked one never (nobody is asked)."""
    with connect() as conn:
        row = conn.execute("SELECT status FROM transactions WHERE id = ?",
                           (str(args["tx"]),)).fetchone()
    if row is None:
        return f"unknown transaction {args['tx']!r}"
    if row["status"] != "held":
        return f"{args['tx']} is {row['status']}, not held: it cannot be released"
    return None


def _release_preview(args: Mapping[str, Any]) -> str:
    with connect() as conn:
        row = _tx(conn, str(args["tx"]))
    return f"pay ${row['amount']:.2f} to {row['merchant']} ({args['tx']}: held -> released)"


for _read in (list_suspicious_transactions, check_documents):
    read_only(_read)
writes(hold_transaction, destructive=False, idempotent=True)
writes(release_transaction, destructive=True, open_world=True)
writes(score_transaction, destructive=False, idempotent=True)  # records the score
writes(notify_compliance, destructive=False, open_world=True)
writes(file_compliance_case, destructive=False)
writes(request_verification, destructive=False, open_world=True)
writes(request_missing_documents, destructive=False, open_world=True)
release = requires_approval(
    release_transaction, reason="releasing a held transaction needs the fraud team lead",
    preview=_release_preview, refuse=_not_releasable)
