-- Marketing: campaigns, content, send schedules, past engagement, campaign results.
-- Runs on SQLite and PostgreSQL alike (orchestrator.domain_pg); times are UTC text.
DROP TABLE IF EXISTS campaign_analytics;
DROP TABLE IF EXISTS campaign_results;
DROP TABLE IF EXISTS engagement_history;
DROP TABLE IF EXISTS email_schedules;
DROP TABLE IF EXISTS campaign_content;
DROP TABLE IF EXISTS campaigns;

CREATE TABLE campaigns (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    goal TEXT NOT NULL,
    audience TEXT NOT NULL,
    audience_size INTEGER NOT NULL,
    product TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('draft', 'scheduled', 'active', 'done')),
    next_send_plan TEXT NOT NULL DEFAULT ''
);
CREATE TABLE campaign_content (
    id INTEGER PRIMARY KEY,
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    version INTEGER NOT NULL,
    subject TEXT NOT NULL,
    body TEXT NOT NULL,
    citations TEXT NOT NULL
);
CREATE TABLE email_schedules (
    id INTEGER PRIMARY KEY,
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    send_hour INTEGER NOT NULL,
    recipients INTEGER NOT NULL,
    status TEXT NOT NULL DEFAULT 'scheduled'
);
CREATE TABLE engagement_history (
    audience TEXT NOT NULL,
    send_hour INTEGER NOT NULL,
    sends INTEGER NOT NULL,
    opens INTEGER NOT NULL,
    clicks INTEGER NOT NULL
);
CREATE TABLE campaign_results (
    campaign_id TEXT NOT NULL REFERENCES campaigns(id),
    sends INTEGER NOT NULL,
    opens INTEGER NOT NULL,
    clicks INTEGER NOT NULL
);
CREATE TABLE campaign_analytics (
    campaign_id TEXT PRIMARY KEY REFERENCES campaigns(id),
    open_rate DOUBLE PRECISION NOT NULL,
    click_rate DOUBLE PRECISION NOT NULL,
    recommendation TEXT NOT NULL
);

INSERT INTO campaigns VALUES
    ('cmp-1', 'Trail season', 'sell trail running shoes before winter', 'trail runners', 1800,
     'sku-1 Trail running shoes', 'draft', ''),
    ('cmp-2', 'Race day', 'launch the carbon road shoe to road runners', 'road runners', 2400,
     'sku-5 Road running shoes', 'draft', ''),
    ('cmp-3', 'Winter gear', 'bring back lapsed customers with winter gear', 'all customers',
     12000, 'sku-3 Waterproof running jacket', 'draft', ''),
    ('cmp-4', 'Autumn trail', 'sell hydration vests to trail runners', 'trail runners', 1750,
     'sku-4 Hydration vest', 'done', '');

INSERT INTO engagement_history VALUES
    ('trail runners', 7, 4000, 1160, 210),
    ('trail runners', 12, 4000, 880, 120),
    ('trail runners', 19, 4000, 1320, 260),
    ('road runners', 6, 5000, 1650, 300),
    ('road runners', 12, 5000, 1100, 150),
    ('road runners', 20, 5000, 1250, 190),
    ('all customers', 9, 20000, 4200, 500),
    ('all customers', 18, 20000, 5000, 640);

INSERT INTO campaign_results VALUES ('cmp-4', 1750, 270, 22);
