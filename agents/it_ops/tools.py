"""IT operations tools: they read and write the operations tables of the domain database."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from langchain_core.tools import tool
from pydantic import BaseModel, Field

from orchestrator.agents.policy import read_only, requires_approval, writes
from orchestrator.domain_db import Connection, Row, connect

SERVICE_PATTERN = r"^[a-z][a-z0-9]*-[0-9]+$"
POOL_PATTERN = r"^[a-z][a-z0-9]*-(?:primary|backup)(?:-[a-z0-9]+)?$"
Severity = Literal["low", "medium", "high", "critical"]


class ServiceArgs(BaseModel):
    service: str = Field(description="Service name, e.g. web-3.", pattern=SERVICE_PATTERN)


class LogsArgs(ServiceArgs):
    level: Literal["DEBUG", "INFO", "WARN", "ERROR"] | None = Field(
        default=None, description="Only lines of this level; all levels when omitted."
    )
    limit: int = Field(default=20, ge=1, le=200, description="Most recent lines to return.")


class RerouteArgs(ServiceArgs):
    backup_pool: str | None = Field(
        default=None,
        description="Backup pool to send traffic to, e.g. web-backup-b. When omitted the "
        "healthy backup pool of the service's family with the most spare capacity is used.",
        pattern=POOL_PATTERN,
    )


class AlertArgs(ServiceArgs):
    severity: Severity = Field(default="high", description="How urgent the page is.")
    message: str = Field(description="What happened and what was done, for the on-call person.")


class IncidentArgs(ServiceArgs):
    severity: Severity = Field(default="high", description="Incident severity.")
    summary: str = Field(description="What happened, the root cause if known, actions taken.")


class IncidentQueryArgs(BaseModel):
    service: str | None = Field(
        default=None, description="Only incidents of this service.", pattern=SERVICE_PATTERN
    )


def _service(conn: Connection, name: str) -> Row:
    row = conn.execute("SELECT * FROM services WHERE name = ?", (name,)).fetchone()
    if row is None:
        known = ", ".join(r[0] for r in conn.execute("SELECT name FROM services ORDER BY name"))
        raise ValueError(f"unknown service {name!r}; known services: {known}")
    return row


def _latest_metrics(conn: Connection, service: str) -> Row | None:
    return conn.execute(
        "SELECT * FROM metrics WHERE service = ? ORDER BY recorded_at DESC LIMIT 1", (service,)
    ).fetchone()


@tool(args_schema=ServiceArgs)
def check_service_health(service: str) -> str:
    """Check a service's health: status, route and the latest metrics."""
    with connect() as conn:
        row = _service(conn, service)
        route = conn.execute("SELECT pool FROM routes WHERE service = ?", (service,)).fetchone()
        m = _latest_metrics(conn, service)
    metrics = (
        f"cpu {m['cpu_pct']:.0f}%, mem {m['mem_pct']:.0f}%, disk {m['disk_pct']:.0f}%, "
        f"errors {m['error_rate']:.1%}, p50 latency {m['latency_ms']:.0f} ms"
        if m else "no metrics"
    )
    pool = route["pool"] if route else "none"
    return f"{service} is {row['status']} (team {row['team']}, pool {pool}); {metrics}."


@tool
def list_unhealthy_services() -> str:
    """List every service whose status is degraded or down."""
    with connect() as conn:
        rows = conn.execute(
            "SELECT name, status FROM services WHERE status != 'up' ORDER BY name"
        ).fetchall()
    if not rows:
        return "All services are up."
    return "Unhealthy services: " + ", ".join(f"{r['name']} ({r['status']})" for r in rows) + "."


@tool(args_schema=LogsArgs)
def read_service_logs(service: str, level: str | None = None, limit: int = 20) -> str:
    """Read a service's most recent log lines, optionally of one level."""
    with connect() as conn:
        _service(conn, service)
        query = "SELECT level, message, logged_at FROM logs WHERE service = ?"
        params: list[object] = [service]
        if level:
            query += " AND level = ?"
            params.append(level)
        rows = conn.execute(query + " ORDER BY logged_at DESC LIMIT ?", [*params, limit]).fetchall()
    if not rows:
        return f"No log lines for {service}."
    return "\n".join(f"{r['logged_at']} {r['level']} {r['message']}" for r in reversed(rows))


@tool(args_schema=ServiceArgs)
def find_root_cause(service: str) -> str:
    """Diagnose the root cause of a service outage from its error logs and metrics."""
    with connect() as conn:
        row = _service(conn, service)
        m = _latest_metrics(conn, service)
        errors = conn.execute(
            "SELECT message FROM logs WHERE service = ? AND level IN ('ERROR', 'WARN') "
            "ORDER BY logged_at", (service,)
        ).fetchall()
    findings: list[str] = []
    messages = [e["message"] for e in errors]
    if (m is not None and m["disk_pct"] >= 95) or any("No space left" in x for x in messages):
        cause = "disk full"
        detail = next((x for x in messages if "disk usage" in x), "")
        findings.append(f"root cause: {cause} on {service}" + (f" ({detail})" if detail else ""))
    elif m is not None and m["mem_pct"] >= 90:
        findings.append(f"root cause: memory exhaustion on {service} ({m['mem_pct']:.0f}% used)")
    elif m is not None and m["cpu_pct"] >= 90:
        findings.append(f"root cause: CPU saturation on {service} ({m['cpu_pct']:.0f}%)")
    elif messages:
        findings.append(f"probable cause on {service}: {messages[-1]}")
    else:
        return f"{service} is {row['status']}; no errors or anomalous metrics found."
    if messages:
        findings.append("evidence: " + "; ".join(messages[-3:]))
    return f"{service} is {row['status']}. " + ". ".join(findings) + "."


@tool(args_schema=RerouteArgs)
def reroute_traffic(service: str, backup_pool: str | None = None) -> str:
    """Reroute a service's traffic to a healthy backup pool (failover)."""
    with connect() as conn:
        svc = _service(conn, service)
        pool = _backup_pool(conn, svc, backup_pool)
        old = conn.execute("SELECT pool FROM routes WHERE service = ?", (service,)).fetchone()
        if old is not None and old["pool"] == pool["name"]:
            return f"{service} already routes to {pool['name']}; nothing changed."
        conn.execute(
            "INSERT INTO routes (service, pool, reason, updated_at) "
            "VALUES (?, ?, 'failover', substr(CAST(CURRENT_TIMESTAMP AS TEXT), 1, 19)) "
            "ON CONFLICT(service) DO UPDATE SET "
            "pool = excluded.pool, reason = excluded.reason, updated_at = excluded.updated_at",
            (service, pool["name"]),
        )
        expected = max(svc["rps"], 600)
        conn.execute("UPDATE pools SET load = load + ? WHERE name = ?", (expected, pool["name"]))
    previous = old["pool"] if old else "none"
    return f"Rerouted {service} traffic from {previous} to {pool['name']} ({pool['region']})."


@tool(args_schema=ServiceArgs)
def show_route(service: str) -> str:
    """Show which pool a service's traffic goes to."""
    with connect() as conn:
        _service(conn, service)
        row = conn.execute("SELECT * FROM routes WHERE service = ?", (service,)).fetchone()
    if row is None:
        return f"{service} has no route."
    return f"{service} routes to {row['pool']} (since {row['updated_at']}, {row['reason']})."


@tool(args_schema=AlertArgs)
def alert_oncall(service: str, message: str, severity: str = "high") -> str:
    """Page the on-call engineer of the team that owns a service."""
    with connect() as conn:
        svc = _service(conn, service)
        person = conn.execute("SELECT * FROM oncall WHERE team = ?", (svc["team"],)).fetchone()
        if person is None:
            raise ValueError(f"team {svc['team']} has no on-call rota")
        cur = conn.execute(
            "INSERT INTO alerts (service, team, person, severity, message) VALUES (?, ?, ?, ?, ?)",
            (service, svc["team"], person["person"], severity, message),
        )
    return (f"Paged {person['person']} ({svc['team']} on-call, {person['channel']}) "
            f"with a {severity} alert #{cur.lastrowid} about {service}.")


@tool(args_schema=IncidentArgs)
def log_incident(service: str, summary: str, severity: str = "high") -> str:
    """Record an incident in the incident register."""
    with connect() as conn:
        _service(conn, service)
        cur = conn.execute(
            "INSERT INTO incidents (service, severity, summary) VALUES (?, ?, ?)",
            (service, severity, summary),
        )
    return f"Logged incident #{cur.lastrowid} ({severity}) for {service}."


@tool(args_schema=IncidentQueryArgs)
def list_incidents(service: str | None = None) -> str:
    """List recorded incidents, newest first, optionally for one service."""
    with connect() as conn:
        query = "SELECT * FROM incidents"
        params: tuple[object, ...] = ()
        if service:
            query, params = query + " WHERE service = ?", (service,)
        rows = conn.execute(query + " ORDER BY id DESC LIMIT 20", params).fetchall()
    if not rows:
        return "No incidents recorded."
    return "\n".join(
        f"#{r['id']} {r['service']} {r['severity']} {r['status']}: {r['summary']}" for r in rows
    )


def _backup_pool(conn: Connection, svc: Row, backup_pool: str | None
                 ) -> Row:
    """The pool a reroute of ``svc`` goes to now: the named one if it may take the traffic,
    else the healthy backup of its family with the most spare capacity (ValueError)."""
    if backup_pool is None:
        pool: Row | None = conn.execute(
            "SELECT * FROM pools WHERE serves = ? AND kind = 'backup' AND healthy = 1 "
            "ORDER BY capacity - load DESC LIMIT 1", (svc["family"],)).fetchone()
        if pool is None:
            raise ValueError(f"no healthy backup pool serves {svc['family']} services")
        return pool
    pool = conn.execute("SELECT * FROM pools WHERE name = ?", (backup_pool,)).fetchone()
    if pool is None:
        raise ValueError(f"unknown pool {backup_pool!r}")
    if pool["serves"] != svc["family"]:
        raise ValueError(f"pool {backup_pool} serves {pool['serves']}, not {svc['name']}")
    if pool["kind"] != "backup":
        raise ValueError(f"pool {backup_pool} is a primary pool, not a backup pool")
    if not pool["healthy"]:
        raise ValueError(f"pool {backup_pool} is unhealthy; choose another backup pool")
    return pool


def _reroute_preview(args: Mapping[str, Any]) -> str:
    with connect() as conn:
        service = str(args["service"])
        route = conn.execute("SELECT pool FROM routes WHERE service = ?", (service,)).fetchone()
        target = _backup_pool(conn, _service(conn, service), args.get("backup_pool"))
    return f"{service} traffic: {route['pool'] if route else 'none'} -> {target['name']}"


def _healthy_service_move(args: Mapping[str, Any]) -> str | None:
    """Failing over a service that is down or degraded is incident response; moving the
    traffic of a service that is up is a change that needs a person."""
    with connect() as conn:
        row = conn.execute("SELECT status FROM services WHERE name = ?",
                           (str(args["service"]),)).fetchone()
    if row is not None and row["status"] == "up":
        return f"{args['service']} is up: moving a healthy service's traffic needs an approval"
    return None


for _read in (check_service_health, list_unhealthy_services, read_service_logs, find_root_cause,
              show_route, list_incidents):
    read_only(_read)
writes(reroute_traffic, destructive=True, idempotent=True)
requires_approval(reroute_traffic, when=_healthy_service_move, preview=_reroute_preview)
writes(alert_oncall, destructive=False, open_world=True)
writes(log_incident, destructive=False)

