"""Every domain pack tool called with real arguments, and the business tables read back so
that two databases (or two ways of calling the tools) compare."""

from __future__ import annotations

import importlib
import re
import sqlite3
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from langchain_core.tools import BaseTool

from orchestrator.domain_db import use_domain_db

STAMP = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d$")
Tables = dict[str, list[tuple[Any, ...]]]


def normalised(value: Any) -> Any:
    """A time the database wrote just now ('YYYY-MM-DD HH:MM:SS', UTC) as "<now>", so two
    runs compare; a seeded time stays as it is."""
    if isinstance(value, str) and STAMP.match(value):
        written = datetime.fromisoformat(value).replace(tzinfo=UTC)
        if abs(datetime.now(UTC) - written) < timedelta(hours=1):
            return "<now>"
    return value


def sqlite_tables(path: Path, skip: frozenset[str] = frozenset()) -> Tables:
    with sqlite3.connect(path) as conn:
        names = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        tables = {name: sorted((tuple(normalised(v) for v in row) for row in conn.execute(
            f"SELECT * FROM {name}")), key=repr) for name in names if name not in skip}
    conn.close()
    return tables


FACTS = ("[brand-and-facts.md#1] ## Trail running shoes (sku-1)\nAggressive 5 mm lugs grip wet "
         "rock and mud; the rock plate protects on technical trails.")
EVERY_TOOL: list[tuple[str, str, dict[str, Any]]] = [
    ("it_ops", "check_service_health", {"service": "web-3"}),
    ("it_ops", "list_unhealthy_services", {}),
    ("it_ops", "read_service_logs", {"service": "web-3", "limit": 3}),
    ("it_ops", "find_root_cause", {"service": "web-3"}),
    ("it_ops", "reroute_traffic", {"service": "web-3"}),
    ("it_ops", "show_route", {"service": "web-3"}),
    ("it_ops", "alert_oncall", {"service": "web-3", "message": "disk full, 100% used"}),
    ("it_ops", "log_incident", {"service": "web-3", "summary": "disk full"}),
    ("it_ops", "list_incidents", {}),
    ("commerce", "set_stock", {"sku": "sku-2", "units": 0}),
    ("commerce", "check_stock", {"sku": "sku-5"}),
    ("commerce", "list_out_of_stock", {}),
    ("commerce", "start_promotion", {"sku": "sku-4", "discount_pct": 15}),
    ("commerce", "start_promotion", {"sku": "sku-7", "discount_pct": 5}),
    ("commerce", "pause_promotion", {"sku": "sku-1"}),
    ("commerce", "list_promotions", {"sku": "sku-1"}),
    ("commerce", "get_market_prices", {"sku": "sku-1"}),
    ("commerce", "adjust_price_to_market", {"sku": "sku-6"}),
    ("commerce", "recommend_products", {"customer_id": "c-104"}),
    ("commerce", "answer_availability", {"sku": "sku-5"}),
    ("commerce", "refund_order", {"order_id": "o-1003"}),
    ("commerce", "forecast_demand", {"sku": "sku-1"}),
    ("commerce", "forecast_demand", {"sku": "sku-5"}),
    ("finance", "list_suspicious_transactions", {}),
    ("finance", "hold_transaction", {"tx": "tx-1004"}),
    ("finance", "score_transaction", {"tx": "tx-1004"}),
    ("finance", "score_transaction", {"tx": "tx-1008"}),
    ("finance", "notify_compliance", {"tx": "tx-1004", "message": "score 100"}),
    ("finance", "file_compliance_case", {"tx": "tx-1004", "message": "large, abroad"}),
    ("finance", "request_verification", {"tx": "tx-1004"}),
    ("finance", "check_documents", {"client": "cl-3"}),
    ("finance", "request_missing_documents", {"client": "cl-3"}),
    ("finance", "release_transaction", {"tx": "tx-1010"}),
    ("healthcare", "book_specialist_visit", {"patient": "p-1", "specialty": "cardiology"}),
    ("healthcare", "read_patient_summary", {"patient": "p-1"}),
    ("healthcare", "read_full_patient_record", {"patient": "p-1"}),
    ("healthcare", "order_diagnostics", {"appointment": "ap-2"}),
    ("healthcare", "order_diagnostics", {"appointment": "ap-2"}),
    ("healthcare", "estimate_visit_cost", {"appointment": "ap-2"}),
    ("healthcare", "estimate_visit_cost", {"appointment": "ap-2"}),
    ("healthcare", "write_visit_summary", {"appointment": "ap-2", "summary": "BP 150/95"}),
    ("healthcare", "write_visit_summary", {"appointment": "ap-2", "summary": "BP 140/90"}),
    ("healthcare", "submit_insurance_record", {"appointment": "ap-2"}),
    ("healthcare", "submit_insurance_record", {"appointment": "ap-2"}),
    ("marketing", "draft_campaign_email", {"campaign": "cmp-1", "facts": FACTS}),
    ("marketing", "schedule_campaign_email", {"campaign": "cmp-1"}),
    ("marketing", "start_campaign", {"campaign": "cmp-1"}),
    ("marketing", "analyze_campaign", {"campaign": "cmp-4"}),
    ("marketing", "analyze_campaign", {"campaign": "cmp-4"}),
    ("marketing", "update_next_send_plan", {"campaign": "cmp-4"}),
]


def call_every_tool(location: str | Path,
                    call: Callable[[BaseTool, dict[str, Any]], Any] | None = None) -> list[str]:
    """Every pack tool once or twice (upserts), in order (through ``call``, else
    ``tool.invoke``); their outputs with the times the database wrote just now as "<now>"."""
    outputs = []
    with use_domain_db(location):
        for pack, name, args in EVERY_TOOL:
            tool = getattr(importlib.import_module(f"orchestrator.agents.{pack}.tools"), name)
            text = call(tool, args) if call is not None else tool.invoke(args)
            outputs.append(re.sub(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d",
                                  lambda m: str(normalised(m.group(0))), text))
    return outputs
