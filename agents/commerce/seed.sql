-- E-commerce: catalog, stock, customers, orders, market prices, promotions, forecasts.
-- Runs on SQLite and PostgreSQL alike (orchestrator.domain_pg); times are UTC text.
DROP TABLE IF EXISTS refunds;
DROP TABLE IF EXISTS support_messages;
DROP TABLE IF EXISTS forecasts;
DROP TABLE IF EXISTS price_changes;
DROP TABLE IF EXISTS promotions;
DROP TABLE IF EXISTS market_prices;
DROP TABLE IF EXISTS orders;
DROP TABLE IF EXISTS customers;
DROP TABLE IF EXISTS products;

CREATE TABLE products (
    sku TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    category TEXT NOT NULL,
    price DOUBLE PRECISION NOT NULL CHECK (price > 0),
    cost DOUBLE PRECISION NOT NULL,
    stock INTEGER NOT NULL CHECK (stock >= 0),
    restock_days INTEGER NOT NULL
);
CREATE TABLE customers (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    email TEXT NOT NULL,
    segment TEXT NOT NULL
);
CREATE TABLE orders (
    id TEXT PRIMARY KEY,
    customer_id TEXT NOT NULL REFERENCES customers(id),
    sku TEXT NOT NULL REFERENCES products(sku),
    quantity INTEGER NOT NULL,
    unit_price DOUBLE PRECISION NOT NULL,
    ordered_on TEXT NOT NULL
);
CREATE TABLE market_prices (
    sku TEXT NOT NULL REFERENCES products(sku),
    competitor TEXT NOT NULL,
    price DOUBLE PRECISION NOT NULL,
    observed_on TEXT NOT NULL
);
CREATE TABLE promotions (
    id TEXT PRIMARY KEY,
    sku TEXT NOT NULL REFERENCES products(sku),
    discount_pct INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('active', 'paused', 'ended')),
    reason TEXT NOT NULL DEFAULT '',
    updated_at TEXT NOT NULL DEFAULT (substr(CAST(CURRENT_TIMESTAMP AS TEXT), 1, 19))
);
CREATE TABLE price_changes (
    id INTEGER PRIMARY KEY,
    sku TEXT NOT NULL REFERENCES products(sku),
    old_price DOUBLE PRECISION NOT NULL,
    new_price DOUBLE PRECISION NOT NULL,
    reason TEXT NOT NULL,
    changed_at TEXT NOT NULL DEFAULT (substr(CAST(CURRENT_TIMESTAMP AS TEXT), 1, 19))
);
CREATE TABLE forecasts (
    sku TEXT PRIMARY KEY REFERENCES products(sku),
    weekly_demand DOUBLE PRECISION NOT NULL,
    expected_sales DOUBLE PRECISION NOT NULL,
    reorder_quantity INTEGER NOT NULL,
    basis TEXT NOT NULL,
    updated_at TEXT NOT NULL DEFAULT (substr(CAST(CURRENT_TIMESTAMP AS TEXT), 1, 19))
);
CREATE TABLE support_messages (
    id INTEGER PRIMARY KEY,
    sku TEXT NOT NULL REFERENCES products(sku),
    answer TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (substr(CAST(CURRENT_TIMESTAMP AS TEXT), 1, 19))
);
CREATE TABLE refunds (
    id INTEGER PRIMARY KEY,
    order_id TEXT NOT NULL REFERENCES orders(id),
    amount DOUBLE PRECISION NOT NULL,
    reason TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (substr(CAST(CURRENT_TIMESTAMP AS TEXT), 1, 19))
);

INSERT INTO products VALUES
    ('sku-1', 'Trail running shoes', 'footwear', 120.0, 55.0, 14, 10),
    ('sku-2', 'Merino running socks', 'apparel', 18.0, 6.0, 240, 5),
    ('sku-3', 'Waterproof running jacket', 'apparel', 160.0, 70.0, 3, 21),
    ('sku-4', 'Hydration vest', 'gear', 85.0, 35.0, 40, 14),
    ('sku-5', 'Road running shoes', 'footwear', 135.0, 60.0, 0, 12),
    ('sku-6', 'Headlamp 400 lumen', 'gear', 45.0, 18.0, 65, 7),
    ('sku-7', 'Compression tights', 'apparel', 70.0, 25.0, 22, 10),
    ('sku-8', 'GPS running watch', 'electronics', 299.0, 180.0, 9, 30);

INSERT INTO customers VALUES
    ('c-101', 'Ana Silva', 'ana@example.com', 'trail'),
    ('c-102', 'Ben Okoro', 'ben@example.com', 'road'),
    ('c-103', 'Chen Wei', 'chen@example.com', 'trail'),
    ('c-104', 'Dara Novak', 'dara@example.com', 'casual'),
    ('c-105', 'Eli Haddad', 'eli@example.com', 'road'),
    ('c-106', 'Fay Morgan', 'fay@example.com', 'trail');

INSERT INTO orders VALUES
    ('o-1001', 'c-101', 'sku-1', 1, 120.0, '2026-10-05'),
    ('o-1002', 'c-101', 'sku-2', 3, 18.0, '2026-10-05'),
    ('o-1003', 'c-102', 'sku-5', 1, 135.0, '2026-10-08'),
    ('o-1004', 'c-103', 'sku-1', 1, 120.0, '2026-10-12'),
    ('o-1005', 'c-103', 'sku-4', 1, 85.0, '2026-10-12'),
    ('o-1006', 'c-104', 'sku-2', 2, 18.0, '2026-10-15'),
    ('o-1007', 'c-105', 'sku-5', 1, 135.0, '2026-10-19'),
    ('o-1008', 'c-105', 'sku-7', 1, 70.0, '2026-10-19'),
    ('o-1009', 'c-106', 'sku-1', 2, 120.0, '2026-10-22'),
    ('o-1010', 'c-102', 'sku-8', 1, 299.0, '2026-10-26'),
    ('o-1011', 'c-101', 'sku-6', 1, 45.0, '2026-11-01'),
    ('o-1012', 'c-106', 'sku-3', 1, 160.0, '2026-11-02'),
    ('o-1013', 'c-103', 'sku-2', 4, 18.0, '2026-11-04'),
    ('o-1014', 'c-104', 'sku-7', 1, 70.0, '2026-11-06'),
    ('o-1015', 'c-105', 'sku-2', 2, 18.0, '2026-11-09'),
    ('o-1016', 'c-101', 'sku-1', 1, 120.0, '2026-11-12'),
    ('o-1017', 'c-102', 'sku-5', 2, 135.0, '2026-11-14'),
    ('o-1018', 'c-106', 'sku-4', 1, 85.0, '2026-11-16'),
    ('o-1019', 'c-103', 'sku-1', 1, 120.0, '2026-11-18'),
    ('o-1020', 'c-105', 'sku-6', 1, 45.0, '2026-11-20');

INSERT INTO market_prices VALUES
    ('sku-1', 'RunMart', 109.0, '2026-11-20'),
    ('sku-1', 'PeakSports', 114.0, '2026-11-20'),
    ('sku-2', 'RunMart', 17.0, '2026-11-20'),
    ('sku-3', 'PeakSports', 175.0, '2026-11-20'),
    ('sku-4', 'RunMart', 88.0, '2026-11-20'),
    ('sku-6', 'RunMart', 32.0, '2026-11-20'),
    ('sku-7', 'PeakSports', 68.0, '2026-11-20'),
    ('sku-8', 'RunMart', 289.0, '2026-11-20');

INSERT INTO promotions (id, sku, discount_pct, status, reason) VALUES
    ('promo-1', 'sku-1', 15, 'active', 'autumn trail campaign'),
    ('promo-2', 'sku-3', 10, 'active', 'rain season'),
    ('promo-3', 'sku-7', 20, 'paused', 'paused by merchandising');

INSERT INTO forecasts (sku, weekly_demand, expected_sales, reorder_quantity, basis) VALUES
    ('sku-1', 1.2, 1.2, 0, 'seed'),
    ('sku-3', 0.3, 0.3, 0, 'seed');
