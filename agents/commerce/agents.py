"""The e-commerce specialists: recommendations, pricing, promotions, inventory, support,
logistics."""

from __future__ import annotations

from orchestrator.agents.commerce import tools as t
from orchestrator.agents.spec import AgentSpec
from orchestrator.retrieval.tool import retrieve


def commerce_agents() -> list[AgentSpec]:
    """The e-commerce pack."""
    return [
        AgentSpec(
            name="recommendations",
            description="Recommends products to a customer from their purchase history.",
            skills=["recommend", "suggest products", "personalize", "cross-sell"],
            tools=[t.recommend_products], domain="commerce", source="built-in",
        ),
        AgentSpec(
            name="pricing",
            description="Adjusts product prices from competitors' market data.",
            skills=["price", "reprice", "market price", "competitor prices", "pricing"],
            prompt="Follow the pricing policy; large changes need an approval.",
            tools=[t.adjust_price, t.get_market_prices, retrieve], collections=["commerce"],
            domain="commerce", source="built-in",
        ),
        AgentSpec(
            name="promotions",
            description="Starts and pauses discount promotions on products.",
            skills=["promotion", "discount", "pause promotion", "start promotion", "campaign"],
            prompt="Never leave a promotion running on a product that is out of stock.",
            tools=[t.pause_promotion, t.start_promotion, t.list_promotions],
            domain="commerce", source="built-in",
        ),
        AgentSpec(
            name="inventory",
            description="Tracks stock levels and flags products that are out of stock.",
            skills=["check stock", "stock", "inventory", "out of stock", "stock level",
                    "warehouse"],
            tools=[t.set_stock, t.check_stock, t.list_out_of_stock],
            domain="commerce", source="built-in",
        ),
        AgentSpec(
            name="support",
            description="Customer support chatbot: answers product availability questions "
            "from live stock and handles refunds.",
            skills=["availability", "available", "in stock", "customer question", "chatbot",
                    "refund", "support"],
            prompt="Answer from live data; refunds follow the returns policy.",
            tools=[t.answer_availability, t.refund, retrieve], collections=["commerce"],
            domain="commerce", source="built-in",
        ),
        AgentSpec(
            name="logistics",
            description="Forecasts product demand and reorder quantities.",
            skills=["forecast", "demand", "reorder", "logistics", "replenish"],
            tools=[t.forecast_demand], domain="commerce", source="built-in",
        ),
    ]
