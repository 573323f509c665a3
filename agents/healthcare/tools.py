"""Healthcare tools: appointments, patient history, diagnostics, estimates, visit records.

Patient records are read only by the tools given to the patient history agent; both reads
are audited (flagged in the events), and the full record, with confidential notes, needs a
clinician's approval.
"""

from __future__ import annotations

from typing import Literal

from langchain_core.tools import tool
from pydantic import BaseModel, Field

from orchestrator.agents.policy import audited, read_only, requires_approval, writes
from orchestrator.domain_db import Connection, Row, connect, fetch_row

PATIENT_PATTERN = r"^p-[0-9]+$"
APPOINTMENT_PATTERN = r"^ap-[0-9]+$"
TEST_PRICE = 45.0
FOLLOW_UP = {
    "cardiology": "recheck blood pressure in 4 weeks; bring the home readings",
    "pulmonology": "repeat spirometry in 3 months; keep the inhaler plan",
    "endocrinology": "HbA1c again in 3 months; review diet with the nurse",
    "dermatology": "photo check of the lesion in 6 weeks",
}


class PatientArgs(BaseModel):
    patient: str = Field(description="Patient id, e.g. p-1.", pattern=PATIENT_PATTERN)


Specialty = Literal["cardiology", "pulmonology", "endocrinology", "dermatology"]


class BookingArgs(PatientArgs):
    specialty: Specialty = Field(description="The specialty to book.")


class AppointmentArgs(BaseModel):
    appointment: str = Field(description="Appointment id, e.g. ap-2.",
                             pattern=APPOINTMENT_PATTERN)


class SummaryArgs(AppointmentArgs):
    summary: str = Field(description="What was found and done at the visit.")


def _patient(conn: Connection, patient: str) -> Row:
    return fetch_row(conn, "SELECT * FROM patients WHERE id = ?", patient, "patient")


def _appointment(conn: Connection, appointment: str) -> Row:
    return fetch_row(
        conn, "SELECT a.*, p.name, p.insurer, p.coverage_pct, s.fee, s.tests, s.doctor FROM "
        "appointments a JOIN patients p ON p.id = a.patient_id JOIN specialists s ON "
        "s.specialty = a.specialty WHERE a.id = ?", appointment, "appointment")


@tool(args_schema=BookingArgs)
def book_specialist_visit(patient: str, specialty: str) -> str:
    """Book the next free slot with a specialist for a patient."""
    with connect() as conn:
        person = _patient(conn, patient)
        spec = conn.execute("SELECT * FROM specialists WHERE specialty = ?",
                            (specialty.lower().strip(),)).fetchone()
        if spec is None:
            known = ", ".join(r[0] for r in conn.execute("SELECT specialty FROM specialists"))
            raise ValueError(f"no specialty {specialty!r}; known: {known}")
        count = conn.execute("SELECT count(*) FROM appointments").fetchone()[0]
        appointment = f"ap-{count + 1}"
        conn.execute("INSERT INTO appointments VALUES (?, ?, ?, ?, 'booked')",
                     (appointment, patient, spec["specialty"], spec["next_slot"]))
    return (f"Booked {appointment}: {person['name']} ({patient}) with {spec['doctor']} "
            f"({spec['specialty']}) on {spec['next_slot']}.")


@tool(args_schema=PatientArgs)
def read_patient_summary(patient: str) -> str:
    """A patient's conditions, medications and allergies (no confidential notes)."""
    with connect() as conn:
        person = _patient(conn, patient)
        rows = conn.execute("SELECT kind, entry FROM patient_history WHERE patient_id = ? AND "
                            "sensitive = 0 AND kind != 'note' ORDER BY recorded_on",
                            (patient,)).fetchall()
    items = "; ".join(f"{r['kind']}: {r['entry']}" for r in rows) or "no history"
    return f"{person['name']} ({patient}, born {person['birth_year']}): {items}."


@tool(args_schema=PatientArgs)
def read_full_patient_record(patient: str) -> str:
    """A patient's whole record, confidential notes included."""
    with connect() as conn:
        person = _patient(conn, patient)
        rows = conn.execute("SELECT recorded_on, kind, entry FROM patient_history WHERE "
                            "patient_id = ? ORDER BY recorded_on", (patient,)).fetchall()
    items = "; ".join(f"{r['recorded_on']} {r['kind']}: {r['entry']}" for r in rows)
    return f"Full record of {person['name']} ({patient}): {items or 'empty'}."


@tool(args_schema=AppointmentArgs)
def order_diagnostics(appointment: str) -> str:
    """Order the tests the appointment's specialty needs before the visit."""
    with connect() as conn:
        row = _appointment(conn, appointment)
        tests = [t for t in row["tests"].split(",") if t and t != "none"]
        for test in tests:
            conn.execute("INSERT INTO diagnostic_orders (appointment_id, test) VALUES (?, ?) "
                         "ON CONFLICT DO NOTHING", (appointment, test))
    if not tests:
        return f"No diagnostics needed before {appointment} ({row['specialty']})."
    return f"Ordered {', '.join(tests)} for {appointment} ({row['specialty']})."


@tool(args_schema=AppointmentArgs)
def estimate_visit_cost(appointment: str) -> str:
    """Pre-visit cost estimate: fee plus ordered tests, split by the insurer's coverage."""
    with connect() as conn:
        row = _appointment(conn, appointment)
        tests = conn.execute("SELECT count(*) FROM diagnostic_orders WHERE appointment_id = ?",
                             (appointment,)).fetchone()[0]
        total = round(row["fee"] + tests * TEST_PRICE, 2)
        covered = round(total * row["coverage_pct"] / 100, 2)
        pays = round(total - covered, 2)
        conn.execute("INSERT INTO estimates VALUES (?, ?, ?, ?) ON CONFLICT (appointment_id) "
                     "DO UPDATE SET total = excluded.total, covered = excluded.covered, "
                     "patient_pays = excluded.patient_pays", (appointment, total, covered, pays))
    return (f"Estimate for {appointment}: ${total:.2f} in all; {row['insurer']} covers "
            f"${covered:.2f}, {row['name']} pays ${pays:.2f}.")


@tool(args_schema=SummaryArgs)
def write_visit_summary(appointment: str, summary: str) -> str:
    """Record the visit summary with follow-up instructions; the visit is completed."""
    with connect() as conn:
        row = _appointment(conn, appointment)
        follow_up = FOLLOW_UP.get(row["specialty"], "follow up with the family doctor")
        conn.execute("INSERT INTO visit_summaries VALUES (?, ?, ?) ON CONFLICT "
                     "(appointment_id) DO UPDATE SET summary = excluded.summary, "
                     "follow_up = excluded.follow_up", (appointment, summary[:2000], follow_up))
        conn.execute("UPDATE appointments SET status = 'completed' WHERE id = ?",
                     (appointment,))
    return f"Visit summary for {appointment} saved; follow-up: {follow_up}."


@tool(args_schema=AppointmentArgs)
def submit_insurance_record(appointment: str) -> str:
    """Submit the insurance record of a visit for its full cost."""
    with connect() as conn:
        row = _appointment(conn, appointment)
        tests = conn.execute("SELECT count(*) FROM diagnostic_orders WHERE appointment_id = ?",
                             (appointment,)).fetchone()[0]
        amount = round(row["fee"] + tests * TEST_PRICE, 2)
        conn.execute("INSERT INTO insurance_records (appointment_id, insurer, amount) "
                     "VALUES (?, ?, ?) ON CONFLICT (appointment_id) DO UPDATE SET insurer = "
                     "excluded.insurer, amount = excluded.amount, status = excluded.status",
                     (appointment, row["insurer"], amount))
    return f"Insurance record for {appointment} submitted to {row['insurer']}: ${amount:.2f}."


read_only(read_patient_summary)
read_only(read_full_patient_record)
writes(book_specialist_visit, destructive=False)
writes(order_diagnostics, destructive=False)
writes(estimate_visit_cost, destructive=False, idempotent=True)  # records the estimate
writes(write_visit_summary, destructive=False)
writes(submit_insurance_record, destructive=False, idempotent=True, open_world=True)
patient_summary = audited(read_patient_summary)
full_record = audited(requires_approval(
    read_full_patient_record, reason="reading a full patient record needs a clinician"))
