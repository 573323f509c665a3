-- Financial services: clients, transactions, holds, fraud scores, compliance, verification.
-- Runs on SQLite and PostgreSQL alike (orchestrator.domain_pg); times are UTC text.
DROP TABLE IF EXISTS onboarding_documents;
DROP TABLE IF EXISTS verification_requests;
DROP TABLE IF EXISTS compliance_cases;
DROP TABLE IF EXISTS compliance_notices;
DROP TABLE IF EXISTS fraud_scores;
DROP TABLE IF EXISTS transactions;
DROP TABLE IF EXISTS clients;

CREATE TABLE clients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    home_country TEXT NOT NULL,
    kyc_status TEXT NOT NULL CHECK (kyc_status IN ('verified', 'pending', 'unverified'))
);
CREATE TABLE transactions (
    id TEXT PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES clients(id),
    amount DOUBLE PRECISION NOT NULL,
    merchant TEXT NOT NULL,
    country TEXT NOT NULL,
    created_at TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('posted', 'held', 'released', 'blocked'))
);
CREATE TABLE fraud_scores (
    tx_id TEXT PRIMARY KEY REFERENCES transactions(id),
    score INTEGER NOT NULL,
    reasons TEXT NOT NULL,
    scored_at TEXT NOT NULL DEFAULT (substr(CAST(CURRENT_TIMESTAMP AS TEXT), 1, 19))
);
CREATE TABLE compliance_notices (
    id INTEGER PRIMARY KEY,
    tx_id TEXT NOT NULL REFERENCES transactions(id),
    message TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (substr(CAST(CURRENT_TIMESTAMP AS TEXT), 1, 19))
);
CREATE TABLE compliance_cases (
    id INTEGER PRIMARY KEY,
    tx_id TEXT NOT NULL REFERENCES transactions(id),
    summary TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    created_at TEXT NOT NULL DEFAULT (substr(CAST(CURRENT_TIMESTAMP AS TEXT), 1, 19))
);
CREATE TABLE verification_requests (
    id INTEGER PRIMARY KEY,
    client_id TEXT NOT NULL REFERENCES clients(id),
    tx_id TEXT REFERENCES transactions(id),
    status TEXT NOT NULL CHECK (status IN ('sent', 'passed', 'failed')),
    created_at TEXT NOT NULL DEFAULT (substr(CAST(CURRENT_TIMESTAMP AS TEXT), 1, 19))
);
CREATE TABLE onboarding_documents (
    client_id TEXT NOT NULL REFERENCES clients(id),
    doc_type TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('received', 'verified', 'missing', 'requested')),
    PRIMARY KEY (client_id, doc_type)
);

INSERT INTO clients VALUES
    ('cl-1', 'Maria Lopez', 'ES', 'verified'),
    ('cl-2', 'Tom Becker', 'DE', 'verified'),
    ('cl-3', 'Aisha Khan', 'GB', 'pending'),
    ('cl-4', 'Jon Park', 'US', 'unverified');

INSERT INTO transactions VALUES
    ('tx-1001', 'cl-1', 42.50, 'Cafe Central', 'ES', '2026-11-20 09:12', 'posted'),
    ('tx-1002', 'cl-1', 120.00, 'Grocer Madrid', 'ES', '2026-11-21 18:30', 'posted'),
    ('tx-1003', 'cl-1', 89.90, 'Fuel Iberia', 'ES', '2026-11-22 08:05', 'posted'),
    ('tx-1004', 'cl-1', 7850.00, 'Lux Watches Dubai', 'AE', '2026-11-23 02:41', 'posted'),
    ('tx-1005', 'cl-2', 64.00, 'Bahn Tickets', 'DE', '2026-11-22 07:15', 'posted'),
    ('tx-1006', 'cl-2', 2300.00, 'Electro Berlin', 'DE', '2026-11-23 15:20', 'posted'),
    ('tx-1007', 'cl-3', 980.00, 'Crypto Exchange X', 'MT', '2026-11-23 03:10', 'posted'),
    ('tx-1008', 'cl-3', 975.00, 'Crypto Exchange X', 'MT', '2026-11-23 03:12', 'posted'),
    ('tx-1009', 'cl-4', 15.00, 'App Store', 'US', '2026-11-23 11:00', 'posted'),
    ('tx-1010', 'cl-2', 5400.00, 'Auto Dealer Munich', 'DE', '2026-11-23 16:45', 'held');

INSERT INTO onboarding_documents VALUES
    ('cl-1', 'passport', 'verified'),
    ('cl-1', 'proof_of_address', 'verified'),
    ('cl-2', 'id_card', 'verified'),
    ('cl-3', 'passport', 'received'),
    ('cl-3', 'proof_of_address', 'missing'),
    ('cl-4', 'id_card', 'missing');
