-- IT operations: services, pools, routes, telemetry, on-call, alerts, incidents.
-- Runs on SQLite and PostgreSQL alike (orchestrator.domain_pg); times are UTC text.
DROP TABLE IF EXISTS incidents;
DROP TABLE IF EXISTS alerts;
DROP TABLE IF EXISTS oncall;
DROP TABLE IF EXISTS logs;
DROP TABLE IF EXISTS metrics;
DROP TABLE IF EXISTS routes;
DROP TABLE IF EXISTS services;
DROP TABLE IF EXISTS pools;

CREATE TABLE pools (
    name TEXT PRIMARY KEY,
    serves TEXT NOT NULL,            -- service family: web, api, data
    kind TEXT NOT NULL CHECK (kind IN ('primary', 'backup')),
    region TEXT NOT NULL,
    healthy INTEGER NOT NULL DEFAULT 1,
    capacity INTEGER NOT NULL,       -- requests per second
    load INTEGER NOT NULL DEFAULT 0  -- requests per second routed there now
);

CREATE TABLE services (
    name TEXT PRIMARY KEY,
    family TEXT NOT NULL,
    team TEXT NOT NULL,
    tier INTEGER NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('up', 'degraded', 'down')),
    rps INTEGER NOT NULL
);

CREATE TABLE routes (
    service TEXT PRIMARY KEY REFERENCES services(name),
    pool TEXT NOT NULL REFERENCES pools(name),
    reason TEXT NOT NULL DEFAULT 'initial',
    updated_at TEXT NOT NULL DEFAULT (substr(CAST(CURRENT_TIMESTAMP AS TEXT), 1, 19))
);

CREATE TABLE metrics (
    service TEXT NOT NULL REFERENCES services(name),
    cpu_pct DOUBLE PRECISION NOT NULL,
    mem_pct DOUBLE PRECISION NOT NULL,
    disk_pct DOUBLE PRECISION NOT NULL,
    error_rate DOUBLE PRECISION NOT NULL,
    latency_ms DOUBLE PRECISION NOT NULL,
    recorded_at TEXT NOT NULL
);

CREATE TABLE logs (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL REFERENCES services(name),
    level TEXT NOT NULL,
    message TEXT NOT NULL,
    logged_at TEXT NOT NULL
);

CREATE TABLE oncall (
    team TEXT PRIMARY KEY,
    person TEXT NOT NULL,
    contact TEXT NOT NULL,
    channel TEXT NOT NULL
);

CREATE TABLE alerts (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL REFERENCES services(name),
    team TEXT NOT NULL,
    person TEXT NOT NULL,
    severity TEXT NOT NULL,
    message TEXT NOT NULL,
    created_at TEXT NOT NULL DEFAULT (substr(CAST(CURRENT_TIMESTAMP AS TEXT), 1, 19))
);

CREATE TABLE incidents (
    id INTEGER PRIMARY KEY,
    service TEXT NOT NULL REFERENCES services(name),
    severity TEXT NOT NULL,
    summary TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'open',
    created_at TEXT NOT NULL DEFAULT (substr(CAST(CURRENT_TIMESTAMP AS TEXT), 1, 19))
);

INSERT INTO pools VALUES
    ('web-primary',  'web',  'primary', 'eu-west-1', 1, 4000, 2600),
    ('web-backup-a', 'web',  'backup',  'eu-west-1', 1, 1500, 1100),
    ('web-backup-b', 'web',  'backup',  'eu-central-1', 1, 2000, 300),
    ('web-backup-c', 'web',  'backup',  'us-east-1', 0, 2000, 0),
    ('api-primary',  'api',  'primary', 'eu-west-1', 1, 3000, 1800),
    ('api-backup',   'api',  'backup',  'eu-central-1', 1, 1500, 200),
    ('data-primary', 'data', 'primary', 'eu-west-1', 1, 1000, 400);

INSERT INTO services VALUES
    ('web-1', 'web', 'web-platform', 1, 'up', 650),
    ('web-2', 'web', 'web-platform', 1, 'up', 640),
    ('web-3', 'web', 'web-platform', 1, 'down', 0),
    ('web-4', 'web', 'web-platform', 2, 'degraded', 510),
    ('api-1', 'api', 'api-core', 1, 'up', 900),
    ('api-2', 'api', 'api-core', 1, 'up', 900),
    ('db-1',  'data', 'data-infra', 1, 'up', 400);

-- A fixed time for the initial routes: a tool's output must not depend on when the demo
-- database was made (recorded model replies are matched on what the tools returned).
INSERT INTO routes (service, pool, updated_at) VALUES
    ('web-1', 'web-primary', '2026-11-30 08:00:00'), ('web-2', 'web-primary', '2026-11-30 08:00:00'),
    ('web-3', 'web-primary', '2026-11-30 08:00:00'), ('web-4', 'web-primary', '2026-11-30 08:00:00'),
    ('api-1', 'api-primary', '2026-11-30 08:00:00'), ('api-2', 'api-primary', '2026-11-30 08:00:00'),
    ('db-1', 'data-primary', '2026-11-30 08:00:00');

INSERT INTO metrics VALUES
    ('web-1', 41, 55, 62, 0.002, 88,  '2026-11-23T09:00:00Z'),
    ('web-2', 39, 52, 60, 0.001, 91,  '2026-11-23T09:00:00Z'),
    ('web-3', 97, 71, 64, 0.010, 240, '2026-11-23T08:55:00Z'),
    ('web-3', 12, 70, 100, 1.000, 0,  '2026-11-23T09:00:00Z'),
    ('web-4', 88, 93, 70, 0.040, 620, '2026-11-23T09:00:00Z'),
    ('api-1', 35, 48, 40, 0.001, 45,  '2026-11-23T09:00:00Z'),
    ('api-2', 37, 47, 41, 0.001, 44,  '2026-11-23T09:00:00Z'),
    ('db-1',  52, 78, 81, 0.000, 12,  '2026-11-23T09:00:00Z');

INSERT INTO logs (service, level, message, logged_at) VALUES
    ('web-3', 'INFO',  'nginx reload after config deploy 4812', '2026-11-23T08:41:00Z'),
    ('web-3', 'WARN',  'disk usage on /var at 93% (access logs not rotated since deploy 4812)', '2026-11-23T08:50:00Z'),
    ('web-3', 'ERROR', 'write() failed: No space left on device (/var/log/nginx/access.log)', '2026-11-23T08:58:00Z'),
    ('web-3', 'ERROR', 'nginx worker process exited on signal 6', '2026-11-23T08:59:00Z'),
    ('web-3', 'ERROR', 'health check failed: connection refused on :443', '2026-11-23T09:00:00Z'),
    ('web-4', 'WARN',  'memory pressure: 93% used, GC pauses 400 ms', '2026-11-23T08:59:00Z'),
    ('web-4', 'ERROR', 'upstream timed out (110) while reading response header', '2026-11-23T09:00:00Z'),
    ('web-1', 'INFO',  'health check ok', '2026-11-23T09:00:00Z'),
    ('api-1', 'INFO',  'health check ok', '2026-11-23T09:00:00Z'),
    ('db-1',  'WARN',  'replication lag 4 s', '2026-11-23T08:57:00Z');

INSERT INTO oncall VALUES
    ('web-platform', 'Dana Okafor', 'dana.okafor@example.com', '#web-oncall'),
    ('api-core', 'Lee Tanaka', 'lee.tanaka@example.com', '#api-oncall'),
    ('data-infra', 'Sam Rivera', 'sam.rivera@example.com', '#data-oncall');
