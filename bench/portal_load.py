"""Portal load: summary and consumption calls at N concurrent users over many customers
with months of invoice history, driven by ``wrk`` against the API served by uvicorn in
its own process(es), against the ceiling of the same server (``/healthz``, same wrk, same
concurrency) measured in the same run.

    .venv/bin/python bench/portal_load.py --customers 36000 --months 24 --connections 100 \
        --duration 30 [--runs 3] [--workers 2] [--pool-size 40] [--think-ms 1000]

Two load shapes per run: flat out (no pause between an answer and the next request: gives
requests/s and the ratio to the ceiling) and users (each connection pauses ``--think-ms``
on average, as a person does: gives the latency a portal user sees), plus CPU per request
of the API processes and of PostgreSQL. Findings and figures: docs/performance.md.

The data lives in its own embedded PostgreSQL under ``var/bench_portal/`` and is seeded
once (straight SQL: customers, metering points, contracts, invoices with their lines and
VAT rows, payments); a re-run with the same ``--customers/--months`` skips the seeding.
Every run opens a fresh session for every customer directly in ``portal_sessions`` (the
portal keeps sessions server-side by the token's SHA-256, so this is what a login does,
without 36,000 argon2 hashes) and hands wrk the plain tokens.
``wrk`` is the Debian package ``wrk`` (``apt-get install -y wrk``).
"""

from __future__ import annotations

import argparse
import fcntl
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import psycopg
from psycopg import sql

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))  # run as a script too

from starlette.types import ASGIApp, Receive, Scope, Send  # noqa: E402

REPO = Path(__file__).resolve().parent.parent
DATA = REPO / "var" / "bench_portal"
DB_NAME = "portal_load"
SEED_VERSION = 1
AIM_P99_MS = 50.0
PORTAL = "/api/v1/portal/summary,/api/v1/portal/consumption"
CEILING = "/healthz"


# ---- the API process -----------------------------------------------------------------


def api_app() -> ASGIApp:
    """uvicorn factory for the workers: the production wiring (``bootstrap`` then
    ``create_app``, as ``app.roles.cmd_api`` does), settings from ``BILLING_*``.

    ``BENCH_API_THREADS`` (bench only, unset in production) resizes the worker's thread
    pool for sync routes and dependencies (anyio's default is 40) before the first request.
    """
    from api.main import create_app
    from app.bootstrap import bootstrap
    from app.settings import Settings

    settings = Settings()
    rt = bootstrap(settings)
    app = create_app(settings, rt.pool)
    threads = int(os.environ.get("BENCH_API_THREADS") or 0)
    return _ThreadPoolSize(app, threads) if threads > 0 else app


class _ThreadPoolSize:
    """Sets anyio's default thread limiter (it lives on the event loop) on the first call."""

    def __init__(self, app: ASGIApp, threads: int) -> None:
        self.app, self.threads, self.done = app, threads, False

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not self.done:
            import anyio.to_thread

            anyio.to_thread.current_default_thread_limiter().total_tokens = self.threads
            self.done = True
        await self.app(scope, receive, send)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_api(url: str, workers: int, pool_size: int, port: int,
              threads: int = 0) -> subprocess.Popen[bytes]:
    env = {**os.environ, "BILLING_DATABASE_URL": url, "BILLING_POOL_SIZE": str(pool_size),
           "PYTHONPATH": str(REPO), "BENCH_API_THREADS": str(threads)}
    cmd = [sys.executable, "-m", "uvicorn", "bench.portal_load:api_app", "--factory",
           "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers),
           "--log-level", "warning", "--no-access-log"]
    proc = subprocess.Popen(cmd, env=env, cwd=REPO, start_new_session=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the API exited with {proc.returncode} before it answered")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}{CEILING}", timeout=2) as r:
                if r.status == 200:
                    return proc
        except OSError:
            time.sleep(0.5)
    stop_api(proc)
    raise SystemExit("the API did not answer /healthz within 120 s")


def stop_api(proc: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the uvicorn master we started (it stops its workers); the process group
    we created for it only if it does not go."""
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# ---- wrk -----------------------------------------------------------------------------


@dataclass(frozen=True)
class WrkResult:
    requests_s: float
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    requests: int
    non_2xx: int
    socket_errors: int
    api_cpu_ms: float = float("nan")  # CPU per request of the uvicorn processes
    db_cpu_ms: float = float("nan")  # CPU per request of the database's backends


def cpu_seconds(api_pid: int) -> dict[int, tuple[str, float]]:
    """CPU seconds used so far, per process, by the API's process tree ("api") and by the
    PostgreSQL backends of the bench database ("db")."""
    import psutil

    out: dict[int, tuple[str, float]] = {}

    def note(p: psutil.Process, kind: str) -> None:
        try:
            t = p.cpu_times()
            out[p.pid] = (kind, float(t.user + t.system))
        except psutil.Error:
            pass

    root = psutil.Process(api_pid)
    for p in [root, *root.children(recursive=True)]:
        note(p, "api")
    for p in psutil.process_iter(["cmdline"]):
        cmd = " ".join(p.info["cmdline"] or ())
        if cmd.startswith("postgres:") and f" {DB_NAME} " in cmd:
            note(p, "db")
    return out


def cpu_used(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]],
             kind: str) -> float:
    """CPU seconds of ``kind`` between two samples (a process that ended is left out)."""
    return sum(t - before.get(pid, (k, 0.0))[1] for pid, (k, t) in after.items() if k == kind)


_UNITS = {"us": 0.001, "ms": 1.0, "s": 1000.0, "m": 60_000.0}


def _ms(text: str) -> float:
    m = re.fullmatch(r"([0-9.]+)(us|ms|s|m)", text)
    if m is None:
        raise ValueError(f"wrk latency: cannot read {text!r}")
    return float(m.group(1)) * _UNITS[m.group(2)]


def parse_wrk(out: str) -> WrkResult:
    """The figures of ``wrk --latency`` output; ValueError naming what is missing."""
    pct = dict(re.findall(r"^\s+(50|75|90|99)%\s+(\S+)\s*$", out, re.M))
    rps = re.search(r"^Requests/sec:\s+([0-9.]+)", out, re.M)
    total = re.search(r"^\s+(\d+) requests in", out, re.M)
    if rps is None or total is None or len(pct) != 4:
        raise ValueError(f"wrk output without Requests/sec or latency distribution:\n{out}")
    non2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)",
                       out)
    return WrkResult(
        float(rps.group(1)), _ms(pct["50"]), _ms(pct["75"]), _ms(pct["90"]), _ms(pct["99"]),
        int(total.group(1)), int(non2xx.group(1)) if non2xx else 0,
        sum(int(g) for g in errors.groups()) if errors else 0,
    )


def run_wrk(port: int, connections: int, duration: int, threads: int, path: str,
            tokens: Path | None, think_ms: int = 0, api_pid: int | None = None) -> WrkResult:
    """One wrk run; ``think_ms`` > 0: each connection waits that long on average (random,
    exponential) between an answer and its next request, as a person at a browser does."""
    script = REPO / "bench" / "portal_load.lua"
    args = [str(tokens) if tokens else "", path, str(think_ms)]
    cmd = ["wrk", f"-t{threads}", f"-c{connections}", f"-d{duration}s", "--timeout", "10s",
           "--latency", "-s", str(script), f"http://127.0.0.1:{port}", "--", *args]
    before = cpu_seconds(api_pid) if api_pid else None
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise SystemExit(f"wrk failed ({done.returncode}): {done.stderr or done.stdout}")
    result = parse_wrk(done.stdout)
    if not result.requests:  # nothing answered within the run: a stall, not a fast run
        inf = float("inf")
        return replace(result, p50_ms=inf, p75_ms=inf, p90_ms=inf, p99_ms=inf)
    if before is None:
        return result
    after = cpu_seconds(api_pid) if api_pid else before
    per = 1000 / result.requests
    return replace(result, api_cpu_ms=cpu_used(before, after, "api") * per,
                   db_cpu_ms=cpu_used(before, after, "db") * per)


# ---- seeding -------------------------------------------------------------------------

# One invoice per customer and month; customers 100001… (every tenth a business).
# Quantities vary per customer and month through hashtext (deterministic, no random()).
STAGE = """
CREATE TEMP TABLE seed_inv AS
WITH p AS (
    SELECT to_char(d, 'YYYY-MM') AS period, (d + interval '1 month')::date AS issued_on,
           extract(month FROM d)::int IN (10, 11, 12, 1, 2, 3) AS higher
    FROM generate_series(0, %(months)s - 1) m,
         LATERAL (SELECT (%(first)s::date + make_interval(months => m))::date AS d) x
), c AS (
    SELECT i, (100001 + i)::text AS customer_id, i %% 10 = 9 AS business,
           150 + (hashtext('c' || i) & 255) AS base_kwh,
           40 + (hashtext('a' || i) & 127) AS area_m2
    FROM generate_series(0, %(customers)s - 1) i
)
SELECT c.customer_id, c.business, c.base_kwh, c.area_m2, p.period, p.issued_on, p.higher,
       hashtext(c.customer_id || p.period) & 1023 AS r,
       extract(year FROM p.issued_on)::int AS year,
       row_number() OVER (PARTITION BY extract(year FROM p.issued_on)
                          ORDER BY p.period, c.i)::int AS seq
FROM p CROSS JOIN c
"""

MASTER = [
    """INSERT INTO customers (customer_id, name, kind, address)
       SELECT (100001 + i)::text,
              CASE WHEN i %% 10 = 9 THEN 'Obrt ' ELSE 'Kupac ' END || (100001 + i),
              CASE WHEN i %% 10 = 9 THEN 'business' ELSE 'household' END,
              'Ulica ' || (i %% 400 + 1) || ', Brčko'
       FROM generate_series(0, %(customers)s - 1) i""",
    """INSERT INTO metering_points (metering_point_id, address, household_members, area_m2)
       SELECT 'MP-' || customer_id, address, 3,
              40 + (hashtext('a' || (customer_id::int - 100001)) & 127)
       FROM customers""",
    """INSERT INTO contracts (contract_id, customer_id, metering_point_id, service,
                             tariff_code, valid_from)
       SELECT 'K-' || customer_id || '-' || s.service, customer_id, 'MP-' || customer_id,
              s.service, CASE WHEN kind = 'business' THEN s.bu ELSE s.hh END, %(first)s::date
       FROM customers CROSS JOIN (VALUES ('electricity', 'EL-HH', 'EL-OP'),
                                         ('water', 'W-HH', 'W-BU'),
                                         ('waste', 'WA-HH', 'WA-BU')) s(service, hh, bu)""",
]

LINES = """
INSERT INTO invoice_lines (invoice_number, line_no, service, metering_point_id, component,
                           register, description, quantity_milli, unit, unit_price_micro,
                           amount_fen, vat_rate)
SELECT s.year || '-' || lpad(s.seq::text, 6, '0'), l.no, l.service, 'MP-' || s.customer_id,
       l.component, l.register, l.description, l.qty, l.unit, l.price,
       (l.qty::bigint * l.price + 5000000) / 10000000, 17
FROM seed_inv s
CROSS JOIN LATERAL (SELECT
    s.base_kwh * (CASE WHEN s.higher THEN 1300 ELSE 1000 END) * (80 + s.r %% 41) / 100
        * (CASE WHEN s.business THEN 4 ELSE 1 END) AS kwh_milli,
    (8 + s.r %% 9) * 1000 * (CASE WHEN s.business THEN 3 ELSE 1 END) AS m3_milli,
    CASE WHEN s.higher THEN 'higher' ELSE 'lower' END AS season,
    CASE WHEN s.business
         THEN CASE WHEN s.higher THEN 192000 ELSE 153600 END
         ELSE CASE WHEN s.higher THEN 157800 ELSE 126200 END END AS vt_price) q
CROSS JOIN LATERAL (VALUES
    (1, 'electricity', 'energy_vt_' || q.season, '1.8.1', 'Aktivna energija VT',
     q.kwh_milli * 6 / 10, 'kWh', q.vt_price),
    (2, 'electricity', 'energy_mt_' || q.season, '1.8.2', 'Aktivna energija MT',
     q.kwh_milli * 4 / 10, 'kWh', q.vt_price / 2),
    (3, 'electricity', 'metering_point_fee', NULL, 'Naknada za mjerno mjesto', 1000, 'month',
     CASE WHEN s.business THEN 8000000 ELSE 3500000 END),
    (4, 'water', 'water_sewage', '8.0', 'Voda i kanalizacija', q.m3_milli, 'm3',
     CASE WHEN s.business THEN 2100000 ELSE 1068376 END),
    (5, 'water', 'metering_point_fee', NULL, 'Naknada za mjerno mjesto', 1000, 'month', 2500000),
    (6, 'waste', CASE WHEN s.business THEN 'waste_area' ELSE 'waste_household' END, NULL,
     'Odvoz smeća', CASE WHEN s.business THEN s.area_m2 * 1000 ELSE 1000 END,
     CASE WHEN s.business THEN 'm2' ELSE 'month' END,
     CASE WHEN s.business THEN 250000 ELSE 9000000 END)
) l(no, service, component, register, description, qty, unit, price)
ORDER BY s.year, s.seq, l.no
"""

INVOICES = [
    """CREATE TEMP TABLE seed_net AS
       SELECT invoice_number, sum(amount_fen) AS net FROM invoice_lines GROUP BY 1""",
    """INSERT INTO invoices (invoice_number, year, seq, customer_id, period, kind, issued_on,
                            due_on, net_fen, vat_fen, total_fen, payment_reference, status)
       SELECT n.invoice_number, s.year, s.seq, s.customer_id, s.period, 'invoice', s.issued_on,
              s.issued_on + 15, n.net, (n.net * 17 + 50) / 100, n.net + (n.net * 17 + 50) / 100,
              ref.digits || lpad((98 - (ref.digits::bigint * 100) %% 97)::text, 2, '0'),
              'finalized'
       FROM seed_inv s
       JOIN seed_net n ON n.invoice_number = s.year || '-' || lpad(s.seq::text, 6, '0')
       CROSS JOIN LATERAL (SELECT lpad((s.year %% 100)::text, 2, '0')
                                  || lpad(s.seq::text, 6, '0') AS digits) ref
       ORDER BY s.year, s.seq""",
    """INSERT INTO invoice_vat (invoice_number, vat_rate, base_fen, vat_fen)
       SELECT invoice_number, 17, net_fen, vat_fen FROM invoices ORDER BY 1""",
    # nine in ten invoices paid in full 3–22 days after issue (none in the future);
    # every twentieth customer pays only part, so balances and statuses vary
    """INSERT INTO payments (payment_id, customer_id, paid_on, amount_fen, reference, channel,
                            received_at)
       SELECT 'BP-' || i.invoice_number, i.customer_id, i.issued_on + 3 + (s.r %% 20),
              CASE WHEN (i.customer_id::int %% 20) = 7 THEN greatest(i.total_fen / 2, 1)
                   ELSE i.total_fen END,
              i.payment_reference, 'bank', (i.issued_on + 3 + (s.r %% 20))::timestamptz
       FROM invoices i JOIN seed_inv s ON s.year = i.year AND s.seq = i.seq
       WHERE s.r %% 10 <> 0 AND i.issued_on + 3 + (s.r %% 20) <= %(today)s::date""",
]


def month_start(d: date, back: int) -> date:
    """First day of the month ``back`` months before ``d``'s month."""
    idx = d.year * 12 + d.month - 1 - back
    return date(idx // 12, idx % 12 + 1, 1)


def seeded(conn: psycopg.Connection) -> tuple[int, int, int] | None:
    row = conn.execute(
        "SELECT to_regclass('bench_portal_seed') IS NOT NULL").fetchone()
    if not row or not row[0]:
        return None
    got = conn.execute("SELECT customers, months, version FROM bench_portal_seed").fetchone()
    return None if got is None else (int(got[0]), int(got[1]), int(got[2]))


def seed(url: str, customers: int, months: int, today: date) -> float:
    """Fill an empty migrated database; returns the seconds it took.

    Triggers and foreign-key checks are off for the seeding session only
    (``session_replication_role = replica``): the generated rows satisfy them by
    construction, and row triggers would triple the seeding time.
    """
    first = month_start(today, months)
    params = {"customers": customers, "months": months, "first": first, "today": today}
    started = time.perf_counter()
    with psycopg.connect(url) as conn:
        conn.execute("SET session_replication_role = replica")
        for stmt in MASTER:
            conn.execute(stmt, params)
        conn.execute(STAGE, params)
        step = time.perf_counter()
        conn.execute(LINES, params)
        print(f"  invoice lines: {time.perf_counter() - step:.0f} s", flush=True)
        for stmt in INVOICES:
            conn.execute(stmt, params)
        conn.execute("""CREATE TABLE bench_portal_seed (customers int, months int, version int,
                        first_period text, seeded_at timestamptz)""")
        conn.execute("INSERT INTO bench_portal_seed VALUES (%s, %s, %s, %s, now())",
                     (customers, months, SEED_VERSION, first.strftime("%Y-%m")))
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM (ANALYZE) customers, contracts, invoices, invoice_lines,"
                     " invoice_vat, payments, credit_notes, portal_sessions")
    return time.perf_counter() - started


def prepare_database(admin: str, customers: int, months: int, today: date) -> str:
    """The bench database, seeded for this size (re-seeded when the size differs)."""
    from app.database import with_database
    from app.migrate import migrate

    url = with_database(admin, DB_NAME)
    with psycopg.connect(admin, autocommit=True) as conn:
        exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s",
                              (DB_NAME,)).fetchone()
    if exists:
        with psycopg.connect(url) as conn:
            have = seeded(conn)
        if have == (customers, months, SEED_VERSION):
            migrate(url)  # indexes added since the seeding
            print(f"data: cached in {DATA.relative_to(REPO)} ({customers:,} customers, "
                  f"{months} months); seeding skipped", flush=True)
            return url
        with psycopg.connect(admin, autocommit=True) as conn:
            conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(
                sql.Identifier(DB_NAME)))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(DB_NAME)))
    migrate(url)
    print(f"seeding {customers:,} customers × {months} months …", flush=True)
    took = seed(url, customers, months, today)
    with psycopg.connect(url) as conn:
        counts = {t: conn.execute(sql.SQL("SELECT count(*) FROM {}").format(
            sql.Identifier(t))).fetchone() for t in ("invoices", "invoice_lines", "payments")}
    print("seeded in " + f"{took:.0f} s: " + ", ".join(
        f"{t} {c[0]:,}" for t, c in counts.items() if c), flush=True)
    return url


def open_sessions(url: str, now: datetime, out: Path) -> int:
    """A fresh portal session for every customer; the plain tokens go to ``out``."""
    from api.security import new_token, token_sha256

    with psycopg.connect(url) as conn:
        ids = [r[0] for r in conn.execute("SELECT customer_id FROM customers ORDER BY 1")]
        tokens = [new_token() for _ in ids]
        conn.execute("DELETE FROM portal_sessions")
        with conn.cursor().copy("COPY portal_sessions (session_sha256, customer_id, created_at,"
                                " last_seen_at, expires_at) FROM STDIN") as cp:
            for cid, tok in zip(ids, tokens, strict=True):
                cp.write_row((token_sha256(tok), cid, now, now, now + timedelta(hours=12)))
        conn.commit()
        conn.autocommit = True
        conn.execute("VACUUM ANALYZE portal_sessions")
    out.write_text("\n".join(tokens) + "\n")
    out.chmod(0o600)
    return len(tokens)


# ---- the run -------------------------------------------------------------------------


def check_answers(port: int, token: str, months: int) -> None:
    """One summary and one consumption call answer 200 with the seeded history."""
    import json

    def get(path: str) -> dict[str, object]:
        req = urllib.request.Request(f"http://127.0.0.1:{port}{path}",
                                     headers={"Cookie": f"portal_session={token}"})
        with urllib.request.urlopen(req, timeout=10) as r:
            body: dict[str, object] = json.loads(r.read())
            return body

    summary = get("/api/v1/portal/summary")
    series = get(f"/api/v1/portal/consumption?months={months}")["series"]
    periods = {row["period"] for row in series}  # type: ignore[attr-defined]
    if summary.get("last_month") is None or len(periods) != months:
        raise SystemExit(f"unexpected answers: summary {summary}, {len(periods)} periods")


def line(name: str, r: WrkResult) -> str:
    return (f"  {name:<9} {r.requests_s:>8,.0f} req/s  p50 {r.p50_ms:6.1f}  p90 {r.p90_ms:6.1f}"
            f"  p99 {r.p99_ms:6.1f} ms  CPU/request: API {r.api_cpu_ms:.2f} ms, PostgreSQL"
            f" {r.db_cpu_ms:.2f} ms  ({r.requests:,} requests, non-2xx {r.non_2xx},"
            f" socket errors {r.socket_errors})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    ap.add_argument("--customers", type=int, default=36000)
    ap.add_argument("--months", type=int, default=24)
    ap.add_argument("--connections", type=int, default=100)
    ap.add_argument("--duration", type=int, default=30, help="seconds per wrk run")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--workers", type=int, default=2, help="uvicorn worker processes")
    ap.add_argument("--pool-size", type=int, default=40,
                    help="connections per worker (BILLING_POOL_SIZE; see docs/performance.md"
                    " for why not the default 8)")
    ap.add_argument("--threads", type=int, default=2, help="wrk threads")
    ap.add_argument("--api-threads", type=int, default=0,
                    help="thread pool size per API worker (0: anyio's default 40, as deployed)")
    ap.add_argument("--paths", default=PORTAL, help="comma-separated portal paths to mix")
    ap.add_argument("--think-ms", type=int, default=1000,
                    help="mean think time of the users run (0: flat-out runs only)")
    args = ap.parse_args()
    if not 1 <= args.customers <= 400_000 or not 2 <= args.months <= 60:
        ap.error("--customers: 1 … 400,000 (invoice sequence per year); --months: 2 … 60")
    if shutil.which("wrk") is None:
        raise SystemExit("wrk is missing: apt-get install -y wrk")

    from app.database import start_embedded

    DATA.mkdir(parents=True, exist_ok=True)
    lock = (DATA / "run.lock").open("w")
    try:  # a second bench at the same time would replace this one's sessions
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise SystemExit("another portal_load bench is running (var/bench_portal/run.lock)") \
            from None
    admin = os.environ.get("BILLING_DATABASE_URL") or start_embedded(DATA)
    now = datetime.now(UTC)  # the API's clock is the system clock: sessions must be live
    url = prepare_database(admin, args.customers, args.months, now.date())
    tokens = DATA / "tokens.txt"
    print(f"sessions: {open_sessions(url, now, tokens):,} opened", flush=True)

    port = free_port()
    proc = start_api(url, args.workers, args.pool_size, port, args.api_threads)
    loads = [("ceiling", CEILING, None, 0), ("portal", args.paths, tokens, 0)]
    if args.think_ms > 0:
        loads += [("ceiling·u", CEILING, None, args.think_ms),
                  ("portal·u", args.paths, tokens, args.think_ms)]
    results: dict[str, list[WrkResult]] = {name: [] for name, *_ in loads}
    try:
        check_answers(port, tokens.read_text().split("\n", 1)[0], args.months)
        w = (port, args.connections)
        # warm-up: /healthz first grows each worker's pool (it takes a connection in the
        # same thread that uses it), then the portal calls warm the caches
        run_wrk(*w, min(5, args.duration), args.threads, CEILING, None)
        run_wrk(*w, min(5, args.duration), args.threads, args.paths, tokens)
        for n in range(1, args.runs + 1):
            print(f"run {n} (load average {os.getloadavg()[0]:.1f}):", flush=True)
            for name, path, toks, think in loads:
                results[name].append(run_wrk(*w, args.duration, args.threads, path, toks, think,
                                             api_pid=proc.pid))
                print(line(name, results[name][-1]), flush=True)
    finally:
        stop_api(proc)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} (2 cores shared with others:"
          " figures are noisy; CPU per request is the steadier figure)")
    report(args, results)


def report(args: argparse.Namespace, results: dict[str, list[WrkResult]]) -> None:
    def med(name: str, attr: str) -> float:
        """Median over the runs; a stalled run counts as ∞ latency and has no CPU figure."""
        values = [v for r in results[name] if (v := getattr(r, attr)) == v]  # drop nan
        return statistics.median(values) if values else float("nan")

    print(f"\n{args.customers:,} customers × {args.months} months, {args.connections}"
          f" connections, {args.duration} s × {args.runs} runs (medians), uvicorn"
          f" {args.workers} worker(s) × pool {args.pool_size} × threads"
          f" {args.api_threads or 40}; paths {args.paths}")
    print("  flat out (every connection sends its next request as soon as it is answered):")
    for name in results:
        if name.endswith("·u"):
            continue
        print(f"    {name:<10} {med(name, 'requests_s'):>8,.0f} req/s  p50"
              f" {med(name, 'p50_ms'):.1f}  p90 {med(name, 'p90_ms'):.1f}"
              f"  p99 {med(name, 'p99_ms'):.1f} ms  CPU/request: API"
              f" {med(name, 'api_cpu_ms'):.2f} ms, PostgreSQL {med(name, 'db_cpu_ms'):.2f} ms")
    ratio = med("portal", "requests_s") / max(med("ceiling", "requests_s"), 1e-9)
    print(f"    portal / ceiling: {ratio:.2f} of the requests/s")
    if "portal·u" in results:
        print(f"  {args.connections} users, each thinking {args.think_ms} ms on average"
              " between an answer and the next click:")
        for name in ("ceiling·u", "portal·u"):
            print(f"    {name[:-2]:<10} {med(name, 'requests_s'):>8,.0f} req/s  p50"
                  f" {med(name, 'p50_ms'):.1f}  p90 {med(name, 'p90_ms'):.1f}"
                  f"  p99 {med(name, 'p99_ms'):.1f} ms")
    for name in ("portal", "portal·u"):
        if name in results:
            p99 = med(name, "p99_ms")
            verdict = "meets" if p99 <= AIM_P99_MS else "MISSES"
            print(f"  {name}: p99 {p99:.1f} ms {verdict} the aim of ≤ {AIM_P99_MS:.0f} ms")
    stalled = sum(1 for rs in results.values() for r in rs if not r.requests)
    if stalled:
        print(f"  WARNING: {stalled} run(s) got no answer at all (latency counted as ∞):"
              " the API stalled, see docs/performance.md (portal load)")
    bad = sum(r.non_2xx + r.socket_errors for rs in results.values() for r in rs)
    if bad:
        print(f"  WARNING: {bad} non-2xx answers or socket errors (see the runs above)")


if __name__ == "__main__":
    main()
