"""E-commerce tools: catalog, stock, prices, promotions, support and forecasts.

They read and write the commerce tables of the domain database. Sensitive actions are
marked in code (``orchestrator.agents.policy``): a price change over 10 % and a refund
over $100 need an approval; a promotion is never started on a product that is out of stock.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date, timedelta
from typing import Any

from langchain_core.tools import tool
from pydantic import BaseModel, Field

from orchestrator.agents.policy import read_only, requires_approval, writes
from orchestrator.domain_db import Connection, Row, connect, fetch_row

SKU_PATTERN = r"^sku-[0-9]+$"
CUSTOMER_PATTERN = r"^c-[0-9]+$"
ORDER_PATTERN = r"^o-[0-9]+$"
PRICE_CHANGE_LIMIT = 0.10
REFUND_LIMIT = 100.0


class SkuArgs(BaseModel):
    sku: str = Field(description="Product SKU, e.g. sku-1.", pattern=SKU_PATTERN)


class StockArgs(SkuArgs):
    units: int = Field(ge=0, le=100000, description="Units now in the warehouse.")


class PromotionArgs(SkuArgs):
    discount_pct: int = Field(default=10, ge=1, le=70, description="Discount in percent.")


class PauseArgs(SkuArgs):
    reason: str = Field(default="paused by the orchestrator", description="Why it is paused.")


class CustomerArgs(BaseModel):
    customer_id: str = Field(description="Customer id, e.g. c-101.", pattern=CUSTOMER_PATTERN)


class RefundArgs(BaseModel):
    order_id: str = Field(description="Order id, e.g. o-1003.", pattern=ORDER_PATTERN)
    reason: str = Field(default="customer request", description="Why it is refunded.")


def _product(conn: Connection, sku: str) -> Row:
    row = conn.execute("SELECT * FROM products WHERE sku = ?", (sku,)).fetchone()
    if row is None:
        known = ", ".join(r[0] for r in conn.execute("SELECT sku FROM products ORDER BY sku"))
        raise ValueError(f"unknown product {sku!r}; known SKUs: {known}")
    return row


@tool(args_schema=SkuArgs)
def check_stock(sku: str) -> str:
    """Stock level of a product and whether it is out of stock."""
    with connect() as conn:
        p = _product(conn, sku)
    state = "OUT OF STOCK" if p["stock"] == 0 else f"{p['stock']} units in stock"
    return f"{sku} ({p['name']}): {state}; restock takes {p['restock_days']} days."


@tool(args_schema=StockArgs)
def set_stock(sku: str, units: int) -> str:
    """Record a product's current stock level in units (0 flags it out of stock)."""
    with connect() as conn:
        p = _product(conn, sku)
        conn.execute("UPDATE products SET stock = ? WHERE sku = ?", (units, sku))
    flag = " It is now OUT OF STOCK." if units == 0 else ""
    return f"Stock of {sku} ({p['name']}) set from {p['stock']} to {units} units.{flag}"


@tool
def list_out_of_stock() -> str:
    """Products with no stock left."""
    with connect() as conn:
        rows = conn.execute("SELECT sku, name FROM products WHERE stock = 0 ORDER BY sku"
                            ).fetchall()
    if not rows:
        return "No product is out of stock."
    return "Out of stock: " + ", ".join(f"{r['sku']} ({r['name']})" for r in rows) + "."


@tool(args_schema=SkuArgs)
def list_promotions(sku: str) -> str:
    """Promotions of a product and their status."""
    with connect() as conn:
        _product(conn, sku)
        rows = conn.execute("SELECT * FROM promotions WHERE sku = ? ORDER BY id", (sku,)
                            ).fetchall()
    if not rows:
        return f"No promotion for {sku}."
    return "; ".join(f"{r['id']}: {r['discount_pct']}% off, {r['status']} ({r['reason']})"
                     for r in rows)


@tool(args_schema=PromotionArgs)
def start_promotion(sku: str, discount_pct: int = 10) -> str:
    """Start (or resume) a discount promotion on a product that is in stock."""
    with connect() as conn:
        p = _product(conn, sku)
        if p["stock"] == 0:
            raise ValueError(f"{sku} is out of stock: a promotion cannot run on it")
        row = conn.execute("SELECT id FROM promotions WHERE sku = ? AND status != 'ended' "
                           "ORDER BY id LIMIT 1", (sku,)).fetchone()
        if row:
            conn.execute("UPDATE promotions SET status = 'active', discount_pct = ?, "
                         "reason = 'started', "
                         "updated_at = substr(CAST(CURRENT_TIMESTAMP AS TEXT), 1, 19) "
                         "WHERE id = ?", (discount_pct, row["id"]))
            promo = row["id"]
        else:
            count = conn.execute("SELECT count(*) FROM promotions").fetchone()[0]
            promo = f"promo-{count + 1}"
            conn.execute("INSERT INTO promotions (id, sku, discount_pct, status, reason) "
                         "VALUES (?, ?, ?, 'active', 'started')", (promo, sku, discount_pct))
    return f"Promotion {promo} on {sku} is active at {discount_pct}% off."


@tool(args_schema=PauseArgs)
def pause_promotion(sku: str, reason: str = "paused by the orchestrator") -> str:
    """Pause every active promotion of a product."""
    with connect() as conn:
        _product(conn, sku)
        ids = [r[0] for r in conn.execute(
            "SELECT id FROM promotions WHERE sku = ? AND status = 'active'", (sku,))]
        conn.execute("UPDATE promotions SET status = 'paused', reason = ?, "
                     "updated_at = substr(CAST(CURRENT_TIMESTAMP AS TEXT), 1, 19) "
                     "WHERE sku = ? AND status = 'active'",
                     (reason[:200], sku))
    if not ids:
        return f"No active promotion on {sku}; nothing to pause."
    return f"Paused {', '.join(ids)} on {sku}."


@tool(args_schema=SkuArgs)
def get_market_prices(sku: str) -> str:
    """Our price and competitors' prices for a product."""
    with connect() as conn:
        p = _product(conn, sku)
        rows = conn.execute("SELECT competitor, price FROM market_prices WHERE sku = ? "
                            "ORDER BY price", (sku,)).fetchall()
    market = ", ".join(f"{r['competitor']} ${r['price']:.2f}" for r in rows) or "no data"
    return f"{sku} ({p['name']}): our price ${p['price']:.2f}; market: {market}."


def _market_price(conn: Connection, sku: str) -> tuple[Row, float]:
    """The price the market data suggests: the lowest competitor price, never below
    cost + 20 %; RequestError-free ValueError when there is no market data."""
    p = _product(conn, sku)
    low = conn.execute("SELECT min(price) FROM market_prices WHERE sku = ?", (sku,)
                       ).fetchone()[0]
    if low is None:
        raise ValueError(f"no market prices for {sku}; cannot reprice it")
    return p, round(max(float(low), p["cost"] * 1.2), 2)


def _price_change_reason(args: Mapping[str, Any]) -> str | None:
    with connect() as conn:
        try:
            p, target = _market_price(conn, str(args["sku"]))
        except ValueError:
            return None  # the tool itself will reject it
    change = abs(target - p["price"]) / p["price"]
    if change > PRICE_CHANGE_LIMIT:
        return (f"price of {args['sku']} would move {change:.0%} "
                f"(${p['price']:.2f} -> ${target:.2f}); over {PRICE_CHANGE_LIMIT:.0%} needs "
                "an approval")
    return None


@tool(args_schema=SkuArgs)
def adjust_price_to_market(sku: str) -> str:
    """Set a product's price from market data: the lowest competitor price, kept above cost."""
    with connect() as conn:
        p, target = _market_price(conn, sku)
        if abs(target - p["price"]) < 0.005:
            return f"{sku} already matches the market at ${p['price']:.2f}."
        conn.execute("UPDATE products SET price = ? WHERE sku = ?", (target, sku))
        conn.execute("INSERT INTO price_changes (sku, old_price, new_price, reason) "
                     "VALUES (?, ?, ?, 'market')", (sku, p["price"], target))
    return f"Price of {sku} changed from ${p['price']:.2f} to ${target:.2f} (market data)."


@tool(args_schema=CustomerArgs)
def recommend_products(customer_id: str) -> str:
    """Products to recommend to a customer from their purchase history (in stock only)."""
    with connect() as conn:
        customer = fetch_row(conn, "SELECT * FROM customers WHERE id = ?", customer_id,
                             "customer")
        bought = {r[0] for r in conn.execute("SELECT sku FROM orders WHERE customer_id = ?",
                                             (customer_id,))}
        categories = {r[0] for r in conn.execute(
            "SELECT DISTINCT p.category FROM orders o JOIN products p ON p.sku = o.sku "
            "WHERE o.customer_id = ?", (customer_id,))}
        rows = conn.execute(
            "SELECT p.sku, p.name, p.category, count(o.id) AS sold FROM products p "
            "LEFT JOIN orders o ON o.sku = p.sku WHERE p.stock > 0 GROUP BY p.sku "
            "ORDER BY sold DESC, p.sku").fetchall()
    picks = [r for r in rows if r["sku"] not in bought and r["category"] in categories]
    picks += [r for r in rows if r["sku"] not in bought and r not in picks]
    if not picks:
        return f"No recommendation for {customer_id}: they already bought everything in stock."
    return (f"For {customer['name']} ({customer_id}): "
            + ", ".join(f"{r['sku']} {r['name']}" for r in picks[:3]) + ".")


@tool(args_schema=SkuArgs)
def answer_availability(sku: str) -> str:
    """The support chatbot's answer on whether a product is available, from live stock."""
    with connect() as conn:
        p = _product(conn, sku)
        if p["stock"] > 0:
            answer = f"Yes, {p['name']} ({sku}) is in stock and ships today."
        else:
            answer = (f"Sorry, {p['name']} ({sku}) is out of stock; we expect new stock "
                      f"in about {p['restock_days']} days.")
        conn.execute("INSERT INTO support_messages (sku, answer) VALUES (?, ?)", (sku, answer))
    return answer


def _refund_reason(args: Mapping[str, Any]) -> str | None:
    with connect() as conn:
        row = conn.execute("SELECT quantity * unit_price FROM orders WHERE id = ?",
                           (str(args["order_id"]),)).fetchone()
    if row is not None and row[0] > REFUND_LIMIT:
        return f"refund of ${row[0]:.2f} for {args['order_id']} is over ${REFUND_LIMIT:.0f}"
    return None


@tool(args_schema=RefundArgs)
def refund_order(order_id: str, reason: str = "customer request") -> str:
    """Refund an order in full."""
    with connect() as conn:
        order = fetch_row(conn, "SELECT * FROM orders WHERE id = ?", order_id, "order")
        if conn.execute("SELECT 1 FROM refunds WHERE order_id = ?", (order_id,)).fetchone():
            raise ValueError(f"order {order_id} is already refunded")
        amount = order["quantity"] * order["unit_price"]
        conn.execute("INSERT INTO refunds (order_id, amount, reason) VALUES (?, ?, ?)",
                     (order_id, amount, reason[:200]))
    return f"Refunded ${amount:.2f} for order {order_id}."


@tool(args_schema=SkuArgs)
def forecast_demand(sku: str) -> str:
    """Weekly demand forecast for a product from the last four weeks of orders, adjusted
    for stock (an out-of-stock product sells nothing until restocked)."""
    with connect() as conn:
        p = _product(conn, sku)
        today = conn.execute("SELECT max(ordered_on) FROM orders").fetchone()[0]
        since = (date.fromisoformat(today) - timedelta(days=28)).isoformat() if today else None
        sold = conn.execute(
            "SELECT coalesce(sum(quantity), 0) FROM orders WHERE sku = ? AND ordered_on > ?",
            (sku, since)).fetchone()[0]
        weekly = round(sold / 4, 2)
        if p["stock"] == 0:
            expected, reorder = 0.0, max(int(weekly * 4 + 0.999), 1)
            basis = f"out of stock: no sales until restock in {p['restock_days']} days"
        else:
            expected = min(weekly, float(p["stock"]))
            weeks_left = p["stock"] / weekly if weekly else float("inf")
            reorder = max(int(weekly * 4 + 0.999), 1) if weeks_left < 3 else 0
            basis = "order history, last 4 weeks"
        conn.execute(
            "INSERT INTO forecasts (sku, weekly_demand, expected_sales, reorder_quantity, basis)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT(sku) DO UPDATE SET weekly_demand = "
            "excluded.weekly_demand, expected_sales = excluded.expected_sales, "
            "reorder_quantity = excluded.reorder_quantity, basis = excluded.basis, "
            "updated_at = substr(CAST(CURRENT_TIMESTAMP AS TEXT), 1, 19)",
            (sku, weekly, expected, reorder, basis))
    return (f"Forecast for {sku}: demand {weekly} units/week, expected sales {expected} "
            f"units/week, reorder {reorder} units ({basis}).")


def _price_preview(args: Mapping[str, Any]) -> str:
    with connect() as conn:
        p, target = _market_price(conn, str(args["sku"]))
    return f"price of {args['sku']}: ${p['price']:.2f} -> ${target:.2f}"


def _refund_preview(args: Mapping[str, Any]) -> str:
    with connect() as conn:
        order = fetch_row(conn, "SELECT * FROM orders WHERE id = ?", str(args["order_id"]),
                          "order")
    return f"refund ${order['quantity'] * order['unit_price']:.2f} for {args['order_id']}"


def _already_refunded(args: Mapping[str, Any]) -> str | None:
    with connect() as conn:
        done = conn.execute("SELECT 1 FROM refunds WHERE order_id = ?",
                            (str(args["order_id"]),)).fetchone()
    return f"order {args['order_id']} is already refunded" if done else None


for _read in (check_stock, list_out_of_stock, list_promotions, get_market_prices,
              recommend_products):
    read_only(_read)
writes(set_stock, idempotent=True)
writes(start_promotion, destructive=False)
writes(pause_promotion, idempotent=True)
writes(answer_availability, destructive=False, open_world=True)  # sends the customer an answer
writes(forecast_demand, destructive=False, idempotent=True)  # records the forecast
writes(adjust_price_to_market, idempotent=True)
writes(refund_order, destructive=False)
adjust_price = requires_approval(adjust_price_to_market, when=_price_change_reason,
                                 preview=_price_preview)
refund = requires_approval(refund_order, when=_refund_reason, preview=_refund_preview,
                           refuse=_already_refunded)
