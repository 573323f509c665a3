-- Healthcare: patients, history, specialists, appointments, diagnostics, estimates,
-- visit summaries and insurance records.
-- Runs on SQLite and PostgreSQL alike (orchestrator.domain_pg); times are UTC text.
DROP TABLE IF EXISTS insurance_records;
DROP TABLE IF EXISTS visit_summaries;
DROP TABLE IF EXISTS estimates;
DROP TABLE IF EXISTS diagnostic_orders;
DROP TABLE IF EXISTS appointments;
DROP TABLE IF EXISTS specialists;
DROP TABLE IF EXISTS patient_history;
DROP TABLE IF EXISTS patients;

CREATE TABLE patients (
    id TEXT PRIMARY KEY,
    name TEXT NOT NULL,
    birth_year INTEGER NOT NULL,
    insurer TEXT NOT NULL,
    coverage_pct INTEGER NOT NULL
);
CREATE TABLE patient_history (
    patient_id TEXT NOT NULL REFERENCES patients(id),
    recorded_on TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('condition', 'medication', 'allergy', 'note')),
    entry TEXT NOT NULL,
    sensitive INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE specialists (
    specialty TEXT PRIMARY KEY,
    doctor TEXT NOT NULL,
    next_slot TEXT NOT NULL,
    fee DOUBLE PRECISION NOT NULL,
    tests TEXT NOT NULL
);
CREATE TABLE appointments (
    id TEXT PRIMARY KEY,
    patient_id TEXT NOT NULL REFERENCES patients(id),
    specialty TEXT NOT NULL REFERENCES specialists(specialty),
    slot TEXT NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('booked', 'completed', 'cancelled'))
);
CREATE TABLE diagnostic_orders (
    appointment_id TEXT NOT NULL REFERENCES appointments(id),
    test TEXT NOT NULL,
    status TEXT NOT NULL DEFAULT 'ordered',
    PRIMARY KEY (appointment_id, test)
);
CREATE TABLE estimates (
    appointment_id TEXT PRIMARY KEY REFERENCES appointments(id),
    total DOUBLE PRECISION NOT NULL,
    covered DOUBLE PRECISION NOT NULL,
    patient_pays DOUBLE PRECISION NOT NULL
);
CREATE TABLE visit_summaries (
    appointment_id TEXT PRIMARY KEY REFERENCES appointments(id),
    summary TEXT NOT NULL,
    follow_up TEXT NOT NULL
);
CREATE TABLE insurance_records (
    appointment_id TEXT PRIMARY KEY REFERENCES appointments(id),
    insurer TEXT NOT NULL,
    amount DOUBLE PRECISION NOT NULL,
    status TEXT NOT NULL DEFAULT 'submitted'
);

INSERT INTO patients VALUES
    ('p-1', 'Lena Fischer', 1961, 'Allianz Care', 80),
    ('p-2', 'Omar Haddad', 1988, 'Vitality Health', 70),
    ('p-3', 'Grace Liu', 1975, 'Allianz Care', 90);

INSERT INTO patient_history VALUES
    ('p-1', '2019-03-02', 'condition', 'hypertension, treated', 0),
    ('p-1', '2024-06-11', 'medication', 'ramipril 5 mg daily', 0),
    ('p-1', '2025-01-20', 'allergy', 'penicillin', 0),
    ('p-1', '2023-09-14', 'note', 'psychotherapy sessions (confidential)', 1),
    ('p-2', '2022-11-05', 'condition', 'asthma, mild', 0),
    ('p-2', '2025-08-30', 'medication', 'salbutamol inhaler as needed', 0),
    ('p-3', '2021-04-18', 'condition', 'type 2 diabetes', 0),
    ('p-3', '2025-10-02', 'note', 'HbA1c 7.4%', 0);

INSERT INTO specialists VALUES
    ('cardiology', 'Dr. Ines Moreau', '2026-12-02 09:30', 240.0, 'ECG,lipid panel'),
    ('pulmonology', 'Dr. Kwame Asante', '2026-12-03 14:00', 210.0, 'spirometry'),
    ('endocrinology', 'Dr. Sofia Rossi', '2026-12-04 11:15', 220.0, 'HbA1c,kidney function'),
    ('dermatology', 'Dr. Hana Sato', '2026-12-05 10:00', 180.0, 'none');

INSERT INTO appointments VALUES
    ('ap-1', 'p-2', 'pulmonology', '2026-11-20 14:00', 'completed');
