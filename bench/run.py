"""`make bench`: the production-like stack on loopback under load, against its floors.

Starts Nginx -> Gunicorn (gevent, Django's psycopg pool) -> PostgreSQL, Redis on
loopback (tests/stack.py) on a fresh `wallet_bench_*` database, prepares data, runs
every scenario with wrk (bench/wrk/scenario.lua) and the floors with pgbench
(bench/sql/floor.sql) and a bare Django view (bench/floor.py), checks the ledger
after each one, prints one table and writes var/bench/bench-<time>.json (and
var/bench/latest.json).

Environment (all optional):
  BENCH_DATABASE_URL   server + base name for the throw-away database
                       (postgres://postgres@127.0.0.1:5432/wallet_bench)
  BENCH_REDIS_URL      redis://127.0.0.1:6379/8
  BENCH_SECONDS        one duration for every scenario (default: each its own, 20-60 s)
  BENCH_ONLY           comma-separated scenario names to run (default: all)
  BENCH_HISTORY_ENTRIES  entries on the history wallet (1000000)
  BENCH_AS_OF_TARGETS  random as_of paths for balance-as-of (10000)
  BENCH_EXPORT_MAX_GROWTH_MB  statement-csv fails if a worker's RSS grows this much (64)
  BENCH_FEE_WALLETS    due wallets for charge_fees (100000)
  BENCH_HOLDS          active holds on the hot-held wallet (100)
  BENCH_WEBHOOK_CATCHUP  seconds hot-webhook waits for the last deliveries (300)
  BENCH_FEES_TIMEOUT   stop charge_fees after this many seconds (600)
  BENCH_WEB_WORKERS    Gunicorn workers (2)
  BENCH_WORKER_NICE    nice(1) increment of hot-webhook's Celery worker and beat (0):
                       the two-core stand-in for a worker off the web's cores
  BENCH_KEEP_DB        keep the database afterwards (1)
  JWT_USER_CACHE_SECONDS  the web processes' user cache (5; 0 = a query per request)
  BENCH_STACK_ENV      more settings for the stack: "DATABASE_POOL_TIMEOUT=2,..."
  BENCH_PGBOUNCER_POOL PgBouncer's server connections in the scale-out run (20)

Scale-out (scenario `scale-out`): on a PostgreSQL cluster of its own (fsync on), a
streaming replica of it and PgBouncer in front of both, the hot, spread, GET and
history loads run on: one node straight to PostgreSQL (prepared statements), the
same without prepared statements, one node through PgBouncer (none), two nodes
(two Gunicorn masters behind Nginx's upstream) through PgBouncer with history on
the replica (then 256 connections on them), and the first setup again (the
machine's drift); PostgreSQL's server connections are sampled throughout.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import platform
import random
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from urllib.parse import urlsplit

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.stack import (  # noqa: E402
    Stack,
    _base_env,
    create_database,
    drop_database,
    free_port,
    http_request,
    manage,
    process_stats,
)

BENCH = REPO / "bench"
OUT = REPO / "var" / "bench"
LUA = BENCH / "wrk" / "scenario.lua"
WRK = os.environ.get("WRK", "wrk")
PGBENCH = os.environ.get("PGBENCH", "pgbench")
PSQL = os.environ.get("PSQL", "psql")


@dataclass
class Scenario:
    name: str
    title: str
    kind: str  # wrk | pgbench | fees
    seconds: int
    connections: int = 64
    mode: str = ""  # the Lua script's mode
    targets: str = ""  # which data file
    accounts: int = 1  # pgbench / floor: hot row (1) or spread (1000)


SCENARIOS = [
    Scenario("pgbench-hot", "DB floor: pgbench, 1 hot row", "pgbench", 20, accounts=1),
    Scenario(
        "pgbench-1000", "DB floor: pgbench, 1000 rows", "pgbench", 20, accounts=1000
    ),
    Scenario(
        "floor-hot",
        "Django floor: bare view, 1 hot row",
        "wrk",
        20,
        mode="floor",
        targets="floor-hot",
    ),
    Scenario(
        "floor-1000",
        "Django floor: bare view, 1000 rows",
        "wrk",
        20,
        mode="floor",
        targets="floor-1000",
    ),
    Scenario(
        "hot",
        "1. hot wallet: DEPOSIT/WITHDRAW 1.00",
        "wrk",
        30,
        mode="operation",
        targets="hot",
    ),
    # The same load on a wallet carrying active holds: every debit's rule runs
    # with money held (issue 18: within 10% of "hot").
    Scenario(
        "hot-held",
        "1b. hot wallet with active holds",
        "wrk",
        30,
        mode="operation",
        targets="hot-held",
    ),
    # The same load with one webhook endpoint of the wallet's owner (issue 19:
    # within 10% of "hot"), a Celery worker and beat delivering every
    # `transaction.posted` to a receiver on loopback (bench/receiver.py) while it
    # runs: the delivery rate and the lag from commit to arrival are measured.
    Scenario(
        "hot-webhook",
        "1c. hot wallet with a webhook endpoint",
        "wrk",
        30,
        mode="operation",
        targets="hot-webhook",
    ),
    # The same again with the worker and beat stopped (SIGSTOP) while the load
    # runs and continued after it: what having an endpoint costs the requests
    # themselves (the outbox rows and the enqueue, in the posting's
    # transaction), apart from the CPU the deliveries take on the same two
    # cores; then how fast the backlog is delivered with nothing else running.
    Scenario(
        "hot-webhook-queued",
        "1d. the same, deliveries after the load",
        "wrk",
        30,
        mode="operation",
        targets="hot-webhook",
    ),
    Scenario(
        "spread",
        "2. spread over 1000 wallets",
        "wrk",
        30,
        mode="operation",
        targets="spread",
    ),
    Scenario(
        "transfers",
        "3. transfers, random pairs of 1000",
        "wrk",
        30,
        mode="transfer",
        targets="spread",
    ),
    Scenario("get", "4. GET wallet detail", "wrk", 20, mode="get", targets="spread"),
    # Two-phase money out: each payout created by its owner (held) and paid by the
    # provider's service account (one `payout` transaction), over 1000 wallets.
    Scenario(
        "payouts",
        "8. payouts: create + paid, 1000 wallets",
        "wrk",
        30,
        mode="payout",
        targets="payouts",
    ),
    Scenario(
        "overload",
        "6. overload: 256 connections, 1 wallet",
        "wrk",
        60,
        connections=256,
        mode="operation",
        targets="hot",
    ),
    Scenario(
        "history-first",
        "5a. history, first page (1M entries)",
        "wrk",
        20,
        connections=4,
        mode="history",
        targets="history-first",
    ),
    Scenario(
        "history-deep",
        "5b. history, deep cursor (1M entries)",
        "wrk",
        20,
        connections=4,
        mode="history",
        targets="history-deep",
    ),
    # Issue 20: a balance in the past on the history wallet, each request a random
    # as_of across the wallet's life (p99 < 5 ms: one index probe, not a scan).
    Scenario(
        "balance-as-of",
        "5c. balance as of (1M entries)",
        "wrk",
        20,
        connections=4,
        mode="history",
        targets="balance-as-of",
    ),
    # The same with one client: the latency one request sees, without the queueing
    # of four connections on two saturated cores (wrk, Nginx, Gunicorn, PostgreSQL).
    Scenario(
        "balance-as-of-1",
        "5c'. balance as of (1M entries), 1 client",
        "wrk",
        20,
        connections=1,
        mode="history",
        targets="balance-as-of",
    ),
    # The history wallet's whole life as one CSV statement, streamed through Nginx:
    # seconds, rows/s and the web workers' RSS before/peak (it must stay flat).
    Scenario("statement-csv", "5d. statement CSV, all 1M entries", "export", 0),
    Scenario("fees", "7. charge_fees over due wallets", "fees", 0),
    Scenario("scale-out", "9. scale-out: PgBouncer, replica, 2 nodes", "scaleout", 20),
]

# The scale-out run's loads, each on 1 node, 1 node + PgBouncer, 2 nodes.
SCALE_LOADS = [
    ("hot", "operation", "hot", 64),
    ("spread", "operation", "spread", 64),
    ("get", "get", "spread", 64),
    ("history", "history", "spread-history", 64),
]
SCALE_SETUPS = [
    ("1-node", "1 node, PostgreSQL direct"),
    # What PgBouncer 1.18 costs, in two parts: no prepared statements, the hop.
    ("unprepared", "1 node, direct, unprepared"),
    ("pgbouncer", "1 node, PgBouncer"),
    ("2-nodes", "2 nodes, PgBouncer + replica"),
    # The first setup again: how far the machine drifted meanwhile.
    ("1-node-again", "1 node, PostgreSQL direct, again"),
]


@dataclass
class Result:
    name: str
    title: str
    connections: int
    seconds: float
    requests: int = 0
    rps: float = 0.0
    ok_per_s: float = 0.0
    p50_ms: float | None = None
    p99_ms: float | None = None
    non_2xx: int = 0
    server_errors: int = 0  # 5xx other than a 503 shedding load with Retry-After
    shed: int = 0  # 429/503 with Retry-After
    socket_errors: int = 0
    statuses: dict = field(default_factory=dict)
    check: str = ""
    check_ok: bool = True
    extra: dict = field(default_factory=dict)


def log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


# --- helpers ---------------------------------------------------------------------------


def psql(url: str, sql: str | None = None, *, file: Path | None = None) -> str:
    args = [PSQL, url, "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1"]
    args += ["-f", str(file)] if file else ["-c", sql]
    return subprocess.run(args, check=True, capture_output=True, text=True).stdout


def prepare(env: dict, *args: str) -> str:
    result = subprocess.run(
        [sys.executable, "-m", "bench.prepare", *args],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    if result.returncode:
        raise RuntimeError(f"bench.prepare {' '.join(args)}:\n{result.stderr}")
    return result.stdout


def snapshot(env: dict, wallet: str | None = None) -> dict:
    return json.loads(
        prepare(env, "snapshot", *(["--wallet", wallet] if wallet else []))
    )


def children_rss_mb(parent: int) -> list[float]:
    """Resident memory (MiB) of each live child of `parent` (Gunicorn's workers)."""
    sizes = []
    for pid, fields in process_stats():
        if int(fields[1]) != parent:
            continue
        try:
            status = Path(f"/proc/{pid}/status").read_text()
        except OSError:
            continue
        match = re.search(r"^VmRSS:\s+(\d+) kB", status, re.MULTILINE)
        if match:
            sizes.append(round(int(match.group(1)) / 1024, 1))
    return sorted(sizes)


def reconcile(env: dict) -> tuple[bool, str]:
    result = subprocess.run(
        [sys.executable, "manage.py", "reconcile", "--quiet"],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
    )
    return result.returncode == 0, (result.stdout.strip().splitlines() or [""])[-1]


def run_wrk(url: str, scenario: Scenario, datafile: Path) -> dict:
    threads = min(2, scenario.connections)
    args = [
        WRK,
        f"-t{threads}",
        f"-c{scenario.connections}",
        f"-d{scenario.seconds}s",
        "--timeout",
        "5s",
        "-s",
        str(LUA),
        url,
        "--",
        scenario.mode,
        str(datafile),
    ]
    out = subprocess.run(args, check=True, capture_output=True, text=True).stdout
    line = next(x for x in out.splitlines() if x.startswith("BENCH_JSON "))
    return json.loads(line.removeprefix("BENCH_JSON "))


def wrk_result(scenario: Scenario, data: dict) -> Result:
    seconds = data["duration_us"] / 1e6
    statuses = {int(k): v for k, v in data["statuses"].items()}
    ok = sum(v for k, v in statuses.items() if 200 <= k < 300)
    shed = data["retry_after"]
    errors = data["errors"]
    return Result(
        name=scenario.name,
        title=scenario.title,
        connections=scenario.connections,
        seconds=round(seconds, 1),
        requests=data["requests"],
        rps=round(data["requests"] / seconds, 1),
        ok_per_s=round(ok / seconds, 1),
        p50_ms=round(data["latency_ms"]["p50"], 1),
        p99_ms=round(data["latency_ms"]["p99"], 1),
        non_2xx=sum(v for k, v in statuses.items() if not 200 <= k < 300),
        server_errors=sum(v for k, v in statuses.items() if k >= 500) - shed,
        shed=shed,
        socket_errors=sum(errors[k] for k in ("connect", "read", "write", "timeout")),
        statuses=statuses,
        extra={
            "deposits": data["deposits"],
            "withdrawals": data["withdrawals"],
            "transfers": data["transfers"],
            "payouts": data["payouts"],
            "paid": data["paid"],
            "unpaid_queued": data["unpaid_queued"],
            "sent": data["sent"],
            "latency_ms": data["latency_ms"],
        },
    )


def database_url_kind(setup: str) -> str:
    return "pgbouncer" if setup in ("pgbouncer", "2-nodes") else "direct"


class ServerConnections:
    """Samples, every 0.1 s while open, how many server connections PostgreSQL
    has to `database_url`'s database (pg_stat_activity); `.peak` the most seen."""

    def __init__(self, database_url: str) -> None:
        import threading

        self.url = database_url
        self.peak = 0
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        import psycopg

        dbname = self.url.rsplit("/", 1)[1]
        admin = self.url.rsplit("/", 1)[0] + "/postgres"
        with psycopg.connect(admin, autocommit=True) as conn:
            while not self._done.is_set():
                (count,) = conn.execute(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = %s "
                    "AND backend_type = 'client backend'",
                    [dbname],
                ).fetchone()
                self.peak = max(self.peak, count)
                self._done.wait(0.1)

    def __enter__(self) -> ServerConnections:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._done.set()
        self._thread.join()


# --- the run -----------------------------------------------------------------------------


class Bench:
    def __init__(self) -> None:
        self.base_url = os.environ.get(
            "BENCH_DATABASE_URL", "postgres://postgres@127.0.0.1:5432/wallet_bench"
        )
        self.redis_url = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379/8")
        self.only = {x for x in os.environ.get("BENCH_ONLY", "").split(",") if x}
        self.fixed_seconds = int(os.environ.get("BENCH_SECONDS", "0") or 0)
        self.history_entries = int(os.environ.get("BENCH_HISTORY_ENTRIES", "1000000"))
        self.fee_wallets = int(os.environ.get("BENCH_FEE_WALLETS", "100000"))
        self.hold_count = int(os.environ.get("BENCH_HOLDS", "100"))
        # The hot-held wallet and the money held on it (prepare_held).
        self.held_wallet = ""
        self.held = Decimal(0)
        # The hot-webhook wallet, its receiver and the Celery processes that
        # deliver to it (prepare_webhook; stopped after the scenario).
        self.webhook_wallet = ""
        self.receiver: subprocess.Popen | None = None
        self.receiver_url = ""
        self.celery: list[subprocess.Popen] = []
        self.webhook_catchup = int(os.environ.get("BENCH_WEBHOOK_CATCHUP", "300"))
        self.web_workers = int(os.environ.get("BENCH_WEB_WORKERS", "2"))
        self.worker_nice = int(os.environ.get("BENCH_WORKER_NICE", "0"))
        self.fees_timeout = int(os.environ.get("BENCH_FEES_TIMEOUT", "600"))
        self.web_rss: dict[str, list[float]] = {}
        # The history wallet (id, owner's token), set by prepare_history.
        self.history_wallet: tuple[str, str] = ("", "")
        # The production setting the benchmark runs with (accounts/authentication.py).
        self.user_cache = os.environ.get("JWT_USER_CACHE_SECONDS", "5")
        self.tmp = Path(tempfile.mkdtemp(prefix="wallet-bench-"))
        self.results: list[Result] = []
        self.db_url = ""
        self.stack: Stack | None = None
        self.env: dict = {}
        self.files: dict[str, Path] = {}
        self.scale_ratios: dict[str, float | None] = {}
        self.pgbouncer_pool = int(os.environ.get("BENCH_PGBOUNCER_POOL", "20"))

    def wanted(self, scenario: Scenario) -> bool:
        return not self.only or scenario.name in self.only

    def seconds(self, scenario: Scenario) -> int:
        return self.fixed_seconds or scenario.seconds

    def run(self) -> int:
        started = datetime.now(UTC)
        load_before = loadavg()
        log(f"load average {load_before} on {os.cpu_count()} cores")
        self.db_url = create_database(self.base_url, prefix="wallet_bench")
        log(
            f"database {self.db_url} (autovacuum "
            f"{psql(self.db_url, 'SHOW autovacuum').strip()}; every data set is "
            "vacuumed and analyzed once loaded)"
        )
        try:
            manage("migrate", "--noinput", env=_base_env(self.db_url))
            psql(self.db_url, file=BENCH / "sql" / "floor_schema.sql")
            for scenario in SCENARIOS:
                if scenario.kind == "pgbench" and self.wanted(scenario):
                    self.pgbench(scenario)
            self.start_stack()
            self.prepare_data()
            self.web_rss["start"] = self.workers_rss()
            for scenario in SCENARIOS:
                if scenario.kind != "pgbench" and self.wanted(scenario):
                    time.sleep(2)
                    getattr(self, scenario.kind)(scenario)
                    if scenario.kind != "fees":
                        self.web_rss[scenario.name] = self.workers_rss()
        finally:
            self.stop_webhooks()
            if self.stack is not None:
                self.stack.stop()
            if not os.environ.get("BENCH_KEEP_DB"):
                drop_database(self.db_url)
        self.report(started, load_before)
        return 0 if all(r.check_ok for r in self.results) else 1

    def workers_rss(self) -> list[float]:
        """The web workers' resident memory now (MiB each): it should stay flat
        from scenario to scenario (Gunicorn does not recycle workers)."""
        assert self.stack is not None
        master = next(p for p in self.stack._processes if p.name == "web")
        return children_rss_mb(master.popen.pid)

    # -- setup ----------------------------------------------------------------------

    def stack_env(self) -> dict[str, str]:
        return {
            "JWT_ACCESS_MINUTES": "600",
            "DATABASE_POOL": "true",
            "JWT_USER_CACHE_SECONDS": self.user_cache,
            # Extra settings for the web processes, e.g. DATABASE_POOL_TIMEOUT=2.
            **dict(
                item.split("=", 1)
                for item in os.environ.get("BENCH_STACK_ENV", "").split(",")
                if "=" in item
            ),
        }

    def start_stack(self) -> None:
        log(f"starting nginx + gunicorn (gevent, {self.web_workers} workers)")
        self.stack = Stack.start(
            database_url=self.db_url,
            redis_url=self.redis_url,
            celery=False,
            web_workers=self.web_workers,
            settings_module="bench.settings",
            env=self.stack_env(),
        )
        self.env = self.stack.env

    def prepare_data(self) -> None:
        log("preparing users, wallets and tokens")
        hot, spread = self.tmp / "hot.tsv", self.tmp / "spread.tsv"
        prepare(self.env, "users", "--count", "1", "--out", str(hot), "--prefix", "hot")
        prepare(
            self.env,
            "users",
            "--count",
            "1000",
            "--out",
            str(spread),
            "--prefix",
            "spread",
        )
        self.files = {"hot": hot, "spread": spread}
        self.files["floor-hot"] = self.tmp / "floor-hot.tsv"
        self.files["floor-hot"].write_text("1\n")
        self.files["floor-1000"] = self.tmp / "floor-1000.tsv"
        self.files["floor-1000"].write_text("".join(f"{i}\n" for i in range(1, 1001)))

    # -- scenarios --------------------------------------------------------------------

    def pgbench(self, scenario: Scenario) -> None:
        seconds = self.seconds(scenario)
        log(f"{scenario.name}: pgbench -c {scenario.connections} -T {seconds}")
        before = psql(self.db_url, "SELECT sum(balance), count(*) FROM bench_account")
        out = subprocess.run(
            [
                PGBENCH,
                "-n",
                "-M",
                "prepared",
                "-c",
                str(scenario.connections),
                "-j",
                "2",
                "-T",
                str(seconds),
                "-D",
                f"accounts={scenario.accounts}",
                "-f",
                str(BENCH / "sql" / "floor.sql"),
                self.db_url,
            ],
            check=True,
            capture_output=True,
            text=True,
        ).stdout
        tps = float(re.search(r"tps = ([\d.]+)", out).group(1))
        done = int(
            re.search(r"number of transactions actually processed: (\d+)", out).group(1)
        )
        failed = re.search(r"number of failed transactions: (\d+)", out)
        avg = float(re.search(r"latency average = ([\d.]+) ms", out).group(1))
        result = Result(
            scenario.name,
            scenario.title,
            scenario.connections,
            seconds,
            requests=done,
            rps=round(tps, 1),
            ok_per_s=round(tps, 1),
            p50_ms=None,
            p99_ms=None,
            non_2xx=int(failed.group(1)) if failed else 0,
            extra={"latency_avg_ms": avg},
        )
        self.floor_check(result, before)
        self.results.append(result)
        self.show(result)

    def floor_check(self, result: Result, before: str) -> None:
        total_before = Decimal(before.split("|")[0])
        row = psql(
            self.db_url,
            "SELECT (SELECT sum(balance) FROM bench_account), "
            "(SELECT coalesce(sum(amount), 0) FROM bench_entry), "
            "(SELECT count(*) FROM bench_entry)",
        ).split("|")
        psql(
            self.db_url,
            "TRUNCATE bench_entry; UPDATE bench_account SET balance = 1000000.00",
        )
        total, moved, entries = Decimal(row[0]), Decimal(row[1]), int(row[2])
        ok = total == total_before + moved
        result.check_ok = ok
        result.check = (
            f"{entries} entries, balances {'=' if ok else '!='} start + entries"
        )
        result.extra["entries"] = entries

    def wrk(self, scenario: Scenario) -> None:
        seconds = self.seconds(scenario)
        scenario = Scenario(**{**asdict(scenario), "seconds": seconds})
        if scenario.mode == "history":
            self.prepare_history()
        elif scenario.targets == "hot-held":
            self.prepare_held()
        elif scenario.targets == "payouts":
            self.prepare_payouts()
        elif scenario.targets == "hot-webhook":
            self.prepare_webhook()
        watched = self.held_wallet if scenario.targets == "hot-held" else None
        # Warm up (imports, pools, caches) before anything is counted.
        warmup = Scenario(**{**asdict(scenario), "seconds": 2})
        run_wrk(self.stack.url, warmup, self.files[scenario.targets])
        if scenario.targets == "hot-webhook":
            # The warm-up's deliveries (and the outbox of earlier scenarios,
            # dispatched to no one) are done before the load is counted.
            self.webhook_wait(since=0.0, until=time.time())
        self.drain()
        if scenario.mode == "floor":
            before_floor = psql(
                self.db_url, "SELECT sum(balance), count(*) FROM bench_account"
            )
            psql(self.db_url, "TRUNCATE bench_entry")
        before = snapshot(self.env, watched)
        queued = scenario.name == "hot-webhook-queued"
        if queued:
            self.pause_webhook_workers(True)
        log(f"{scenario.name}: wrk -c {scenario.connections} -d {seconds}s")
        load_started = time.time()
        result = wrk_result(
            scenario, run_wrk(self.stack.url, scenario, self.files[scenario.targets])
        )
        load_ended = time.time()
        webhook_problems: list[str] = []
        if scenario.targets == "hot-webhook":
            if queued:
                # The requests wrk left in flight commit before the worker runs.
                self.drain()
                self.pause_webhook_workers(False)
            webhook_problems = self.webhook_measure(result, load_started, load_ended)
            self.stop_webhooks(receiver=False)
        self.drain()
        if scenario.mode == "floor":
            self.floor_check(result, before_floor)
            created, entries = result.statuses.get(201, 0), result.extra["entries"]
            if not created <= entries <= created + scenario.connections:
                result.check_ok = False
                result.check += f"; {created} x 201 vs {entries} entries"
        elif scenario.mode == "payout":
            self.payout_check(result, before, snapshot(self.env))
        else:
            self.ledger_check(result, scenario, before, snapshot(self.env, watched))
        if scenario.targets == "hot-webhook":
            webhook = result.extra["webhook"]
            if queued and webhook["caught_up_s_after_load"]:
                webhook["delivered_per_s_after_load"] = round(
                    webhook["delivered"] / webhook["caught_up_s_after_load"], 1
                )
            if webhook_problems:
                result.check_ok = False
                result.check = "; ".join([*webhook_problems, result.check])
            else:
                result.check += (
                    f"; webhooks: {webhook['events']} events delivered "
                    f"({webhook['duplicates']} twice), none lost"
                )
        self.results.append(result)
        self.show(result)

    def drain(self) -> None:
        """Wait until the requests wrk left in flight have finished: the
        database stops changing (nothing but this check is running)."""
        query = (
            "SELECT (SELECT count(*) FROM transactions_entry), "
            "(SELECT count(*) FROM bench_entry), "
            "(SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
            " AND state = 'active' AND pid <> pg_backend_pid())"
        )
        last = None
        for _ in range(60):
            time.sleep(1)
            now = psql(self.db_url, query)
            if now == last and now.strip().endswith("|0"):
                return
            last = now
        log("the stack kept writing for 60 s after the load stopped")

    def ledger_check(
        self, result: Result, scenario: Scenario, before: dict, after: dict
    ) -> None:
        problems = []
        moved = Decimal(after["user_balance_total"]) - Decimal(
            before["user_balance_total"]
        )
        kinds_before, kinds_after = before["transactions"], after["transactions"]

        def new(kind: str) -> int:
            return kinds_after.get(kind, 0) - kinds_before.get(kind, 0)

        # Every answered 201 is in the ledger; a request still in flight when wrk
        # stops (at most one per connection) or timed out may be posted too, its
        # answer unseen: answered <= posted <= sent. The balances must equal the
        # sum of what the ledger posted, exactly.
        kinds = {"operation": ("deposit", "withdrawal"), "transfer": ("transfer",)}
        unseen = 0
        for kind in kinds.get(scenario.mode, ()):
            answered = result.extra[kind + "s"]
            sent = result.extra["sent"][kind + "s"]
            posted = new(kind)
            if not answered <= posted <= sent:
                problems.append(f"{kind}: {answered} answered, {posted} posted")
            unseen += posted - answered
        if scenario.mode == "operation":
            expected = new("deposit") - new("withdrawal")
            if moved != expected:
                problems.append(f"balances moved {moved}, ledger posted {expected}")
            summary = f"balance {moved:+} == posted ops"
            if scenario.targets == "hot-held":
                summary += self.held_check(before, after, problems)
        elif scenario.mode == "transfer":
            if moved != 0:
                problems.append(f"user balances moved {moved}")
            summary = "sum unchanged"
        else:
            if after["entries"] != before["entries"]:
                problems.append("a read scenario wrote entries")
            summary = "nothing moved"
        if scenario.mode in kinds:
            summary += f", 201s == ledger (+{unseen} unanswered at cut-off)"
        result.extra["unanswered_posted"] = unseen
        clean, line = reconcile(self.env)
        if not clean:
            problems.append(line)
        result.check_ok = not problems
        result.check = "; ".join(problems) if problems else summary + ", reconcile ok"

    def held_check(self, before: dict, after: dict, problems: list[str]) -> str:
        """The hot-held wallet's holds stay as they were: nothing captures or
        releases them, and a debit never takes from the money held."""
        held = [
            Decimal(s["wallet"][k])
            for s in (before, after)
            for k in ("held", "active_holds")
        ]
        if any(x != self.held for x in held):
            problems.append(
                f"held before {held[0]} (holds {held[1]}), after {held[2]} "
                f"(holds {held[3]}), expected {self.held}"
            )
        return f", held {self.held} == {self.hold_count} holds, unchanged"

    def payout_check(self, result: Result, before: dict, after: dict) -> None:
        """Every answered 201 is a payout; each new payout is paid exactly once
        (one posted `payout` transaction) or, created near the cut-off, still
        pending with its hold; what left the user wallets is what the provider's
        wallet received; the money held is the sum of the active holds."""
        problems = []

        def payouts(snap: dict, status: str | None = None) -> tuple[int, Decimal]:
            rows = [v for k, v in snap["payouts"].items() if status in (None, k)]
            return sum(n for n, _ in rows), sum(
                (Decimal(a) for _, a in rows), Decimal(0)
            )

        def new(status: str | None = None) -> tuple[int, Decimal]:
            (n1, a1), (n0, a0) = payouts(after, status), payouts(before, status)
            return n1 - n0, a1 - a0

        created, _ = new()
        paid, paid_amount = new("paid")
        pending, pending_amount = new("pending")
        sent = result.extra["sent"]
        if not result.extra["payouts"] <= created <= sent["payouts"]:
            problems.append(
                f"payouts: {result.extra['payouts']} answered, {created} created"
            )
        if not result.extra["paid"] <= paid <= sent["payments"]:
            problems.append(f"paid: {result.extra['paid']} answered, {paid} in ledger")
        if created != paid + pending:
            problems.append(
                f"{created - paid - pending} payouts neither paid nor pending"
            )
        transactions = after["transactions"].get("payout", 0) - before[
            "transactions"
        ].get("payout", 0)
        if transactions != paid:
            problems.append(f"{paid} payouts paid by {transactions} transactions")
        if bad := {k: v for k, v in after["payout_problems"].items() if v}:
            problems.append(f"payouts breaking the two-phase rule: {bad}")
        moved = Decimal(after["user_balance_total"]) - Decimal(
            before["user_balance_total"]
        )
        received = Decimal(after["provider_entries"]) - Decimal(
            before["provider_entries"]
        )
        if not moved == -paid_amount == -received:
            problems.append(
                f"user balances moved {moved}, provider received {received}, "
                f"paid {paid_amount}"
            )
        held = Decimal(after["held_total"]) - Decimal(before["held_total"])
        in_holds = Decimal(after["active_holds_total"])
        if held != pending_amount or Decimal(after["held_total"]) != in_holds:
            problems.append(
                f"held moved {held} for {pending_amount} pending; held "
                f"{after['held_total']}, active holds {after['active_holds_total']}"
            )
        if result.server_errors:
            problems.append(f"{result.server_errors} x 5xx")
        per_s = round(paid / result.seconds, 1) if result.seconds else 0.0
        result.extra.update(
            payouts_created=created, payouts_paid=paid, paid_per_s=per_s
        )
        result.extra["unanswered_posted"] = created - result.extra["payouts"]
        clean, line = reconcile(self.env)
        if not clean:
            problems.append(line)
        result.check_ok = not problems
        result.check = (
            "; ".join(problems)
            if problems
            else (
                f"{paid} paid once ({per_s}/s), {pending} pending with holds at "
                f"cut-off, users {moved:+} == -(provider {received:+}), "
                "held == active holds, reconcile ok"
            )
        )

    def prepare_held(self) -> None:
        if self.held_wallet:
            return
        log(f"creating {self.hold_count} holds on the hot-held wallet")
        path = self.tmp / "hot-held.tsv"
        prepare(
            self.env, "users", "--count", "1", "--out", str(path), "--prefix", "held"
        )
        self.held_wallet = path.read_text().split("\t", 1)[0]
        self.held = Decimal(
            prepare(
                self.env,
                "holds",
                "--wallet",
                self.held_wallet,
                "--count",
                str(self.hold_count),
            ).strip()
        )
        self.files["hot-held"] = path

    def prepare_webhook(self) -> None:
        """The hot-webhook wallet (its own user), a receiver on loopback
        (bench/receiver.py, its own process), the owner's endpoint for
        `transaction.posted` (through the service, URL check included), and a
        Celery worker and beat as tests/stack.py starts them (the dispatcher
        runs every WEBHOOKS_DISPATCH_SECONDS)."""
        if not self.webhook_wallet:
            self.prepare_webhook_endpoint()
        if not self.celery:
            self.start_webhook_workers()

    def prepare_webhook_endpoint(self) -> None:
        path = self.tmp / "hot-webhook.tsv"
        prepare(
            self.env, "users", "--count", "1", "--out", str(path), "--prefix", "hook"
        )
        self.webhook_wallet = path.read_text().split("\t", 1)[0]
        self.files["hot-webhook"] = path
        port = free_port()
        self.receiver = subprocess.Popen(
            [sys.executable, "-m", "bench.receiver", "--port", str(port)],
            cwd=REPO,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        assert self.receiver.stdout is not None
        if self.receiver.stdout.readline().strip() != "READY":
            raise RuntimeError("the webhook receiver did not start")
        self.receiver_url = f"http://127.0.0.1:{port}"
        endpoint = prepare(
            self.env,
            "webhook",
            "--wallet",
            self.webhook_wallet,
            "--url",
            f"{self.receiver_url}/hooks",
        ).strip()
        log(f"hot-webhook: endpoint {endpoint} -> {self.receiver_url}/hooks")

    def start_webhook_workers(self) -> None:
        assert self.stack is not None
        workdir = self.stack.workdir
        # As docker-compose.yml runs them: the psycopg pool is the web's only.
        celery_env = {**self.env, "DATABASE_POOL": "false"}
        nice = ["nice", "-n", str(self.worker_nice)] if self.worker_nice else []
        for name, argv in (
            (
                "worker",
                [
                    *("worker", "--loglevel", "INFO", "--concurrency", "2"),
                    *("-n", "bench-webhooks@%h", "--without-gossip"),
                    "--without-mingle",
                ],
            ),
            (
                "beat",
                [
                    *("beat", "--loglevel", "INFO"),
                    *("--pidfile", str(workdir / "beat.pid")),
                ],
            ),
        ):
            with open(workdir / f"bench-{name}.log", "ab") as out:
                self.celery.append(
                    subprocess.Popen(
                        [
                            *nice,
                            *(sys.executable, "-m", "celery", "-A", "wallet_project"),
                            *argv,
                        ],
                        cwd=REPO,
                        env=celery_env,
                        stdin=subprocess.DEVNULL,
                        stdout=out,
                        stderr=subprocess.STDOUT,
                        start_new_session=True,
                    )
                )
        deadline = time.monotonic() + 60
        for name, text in (("worker", " ready."), ("beat", "beat: Starting")):
            log_path = workdir / f"bench-{name}.log"
            while text not in log_path.read_text(errors="replace"):
                if time.monotonic() > deadline or any(
                    p.poll() is not None for p in self.celery
                ):
                    raise RuntimeError(
                        f"celery {name} did not start:\n"
                        + log_path.read_text(errors="replace")[-3000:]
                    )
                time.sleep(0.2)

    def stop_webhooks(self, *, receiver: bool = True) -> None:
        """Stop the Celery worker and beat (warm shutdown) and the receiver
        (unless told to keep it for the next scenario)."""
        processes = [*self.celery]
        if receiver and self.receiver:
            processes.append(self.receiver)
        for process in processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGCONT)
                os.killpg(process.pid, signal.SIGTERM)
        for process in processes:
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        self.celery = []
        if receiver:
            self.receiver = None

    def pause_webhook_workers(self, paused: bool) -> None:
        """SIGSTOP (or SIGCONT) the Celery worker and beat, children included."""
        for process in self.celery:
            os.killpg(process.pid, signal.SIGSTOP if paused else signal.SIGCONT)

    def webhook_events(self, since: float, until: float) -> list[tuple[int, float]]:
        """(id, created_at as unix time) of the hot-webhook wallet's events
        created in [since, until]."""
        query = (
            "SELECT id, extract(epoch FROM created_at) FROM transactions_event "  # noqa: S608 - our own uuid and floats
            f"WHERE wallet_id = '{self.webhook_wallet}' "
            f"AND created_at >= to_timestamp({since}) "
            f"AND created_at <= to_timestamp({until}) ORDER BY id"
        )
        for attempt in range(30):
            try:
                rows = psql(self.db_url, query)
                break
            except subprocess.CalledProcessError as exc:
                # A shared server may refuse a connection for a moment ("too
                # many clients"): a measurement is not a reason to give up.
                if attempt == 29:
                    raise
                log(f"psql failed ({exc.stderr.strip()[:200]}); again in 1 s")
                time.sleep(1)
        return [
            (int(i), float(t))
            for i, t in (line.split("|") for line in rows.splitlines() if line)
        ]

    def webhook_arrivals(self) -> dict[int, list[float]]:
        """Every arrival at the receiver, by event id."""
        stats = http_request("GET", self.receiver_url + "/stats", timeout=60).json()
        arrivals: dict[int, list[float]] = {}
        for event_id, at in stats["arrivals"]:
            arrivals.setdefault(event_id, []).append(at)
        return arrivals

    def webhook_wait(self, *, since: float, until: float) -> float:
        """Wait until every event of the hot-webhook wallet created in [since,
        until] has reached the receiver (at most BENCH_WEBHOOK_CATCHUP s); when
        the last one arrived (or 0.0 if some never did)."""
        deadline = time.monotonic() + self.webhook_catchup
        while True:
            events = self.webhook_events(since, until)
            arrivals = self.webhook_arrivals()
            missing = [i for i, _ in events if i not in arrivals]
            if not missing:
                return max((min(arrivals[i]) for i, _ in events), default=until)
            if time.monotonic() > deadline:
                log(f"hot-webhook: {len(missing)} of {len(events)} never arrived")
                return 0.0
            time.sleep(1)

    def webhook_measure(
        self, result: Result, load_started: float, load_ended: float
    ) -> list[str]:
        """Wait for the load's last deliveries, then measure: deliveries per
        second that arrived while the load ran, the lag from each event's commit
        (created_at, in the posting's transaction) to its first arrival (p50,
        p99, max), duplicates (an event sent twice) and lost events (never
        arrived within BENCH_WEBHOOK_CATCHUP)."""
        # Requests wrk left in flight may commit just after it stops.
        last_arrival = self.webhook_wait(since=load_started, until=load_ended + 5)
        events = self.webhook_events(load_started, load_ended + 5)
        arrivals = self.webhook_arrivals()
        lags = sorted(min(arrivals[i]) - t for i, t in events if i in arrivals)
        seconds = load_ended - load_started
        during = sum(
            1 for i, _ in events if i in arrivals and min(arrivals[i]) <= load_ended
        )
        lost = len(events) - len(lags)
        duplicates = sum(len(arrivals[i]) - 1 for i, _ in events if i in arrivals)

        def pct(q: float) -> float | None:
            if not lags:
                return None
            return round(lags[min(len(lags) - 1, int(q * len(lags)))] * 1000, 1)

        webhook = {
            "events": len(events),
            "delivered": len(lags),
            "delivered_during_load": during,
            "delivered_per_s_during_load": round(during / seconds, 1),
            "events_per_s": round(len(events) / seconds, 1),
            "lag_ms": {"p50": pct(0.5), "p99": pct(0.99), "max": pct(1.0)},
            "caught_up_s_after_load": (
                round(last_arrival - load_ended, 1) if last_arrival else None
            ),
            "duplicates": duplicates,
            "lost": lost,
            "worker_nice": self.worker_nice,
        }
        result.extra["webhook"] = webhook
        log(f"hot-webhook: {webhook}")
        problems = []
        if lost:
            problems.append(f"webhooks: {lost} of {len(events)} events never arrived")
        if not events:
            problems.append("webhooks: no event was written")
        return problems

    def prepare_payouts(self) -> None:
        """The 1000 spread wallets' owners create; one service account pays."""
        if "payouts" in self.files:
            return
        token = prepare(self.env, "service", "--prefix", "bench-provider").strip()
        path = self.tmp / "payouts.tsv"
        rows = (
            line.split("\t")[:2]
            for line in self.files["spread"].read_text().splitlines()
        )
        path.write_text("".join(f"{w}\t{t}\t{token}\n" for w, t in rows))
        self.files["payouts"] = path

    def prepare_history(self) -> None:
        if "history-first" in self.files:
            return
        log(f"seeding {self.history_entries} entries on one wallet")
        path = self.tmp / "history.tsv"
        prepare(
            self.env, "users", "--count", "1", "--out", str(path), "--prefix", "history"
        )
        wallet_id, token, _ = path.read_text().strip().split("\t")
        started = time.monotonic()
        prepare(
            self.env,
            "history",
            "--wallet",
            wallet_id,
            "--entries",
            str(self.history_entries),
        )
        log(f"seeded in {time.monotonic() - started:.0f}s")
        first = self.tmp / "history-first.tsv"
        first.write_text(f"/api/v1/wallets/{wallet_id}/transactions/\t{token}\n")
        deep = self.tmp / "history-deep.tsv"
        depth = self.history_entries * 9 // 10
        path_deep = prepare(
            self.env, "cursor", "--wallet", wallet_id, "--offset", str(depth)
        ).strip()
        deep.write_text(f"{path_deep}\t{token}\n")
        self.files["history-first"], self.files["history-deep"] = first, deep
        self.history_wallet = (wallet_id, token)
        self.prepare_balance_as_of()

    def prepare_balance_as_of(self) -> None:
        """BENCH_AS_OF_TARGETS balance paths on the history wallet, each with a
        random as_of (to the microsecond) from a minute before its first entry
        to a minute after its last: before the first, inside, at the end."""
        wallet_id, token = self.history_wallet
        first, last = (
            float(x)
            for x in psql(
                self.db_url,
                "SELECT extract(epoch FROM min(created_at)), "  # noqa: S608 - our own uuid
                "extract(epoch FROM max(created_at)) FROM transactions_entry "
                f"WHERE wallet_id = '{wallet_id}'",
            )
            .strip()
            .split("|")
        )
        rng = random.Random(20)
        lines = []
        for _ in range(int(os.environ.get("BENCH_AS_OF_TARGETS", "10000"))):
            at = datetime.fromtimestamp(rng.uniform(first - 60, last + 60), UTC)
            as_of = at.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
            lines.append(
                f"/api/v1/wallets/{wallet_id}/balance/?as_of={as_of}\t{token}\n"
            )
        path = self.tmp / "balance-as-of.tsv"
        path.write_text("".join(lines))
        self.files["balance-as-of"] = path

    def export(self, scenario: Scenario) -> None:
        """The history wallet's statement as CSV, all of it, through Nginx: one
        streamed request (after a small warm-up export) read in 1 MiB pieces
        while a thread samples every web worker's VmRSS every 20 ms. Checked:
        a 200, a header and one row per entry of the wallet, and the workers'
        resident memory staying flat (peak - before < BENCH_EXPORT_MAX_GROWTH_MB)."""
        self.prepare_history()
        wallet_id, token = self.history_wallet
        assert self.stack is not None
        master = next(p for p in self.stack._processes if p.name == "web")
        workers = [
            pid for pid, fields in process_stats() if int(fields[1]) == master.popen.pid
        ]

        def status_kb(pid: int, field_name: str) -> int:
            text = Path(f"/proc/{pid}/status").read_text()
            return int(re.search(rf"^{field_name}:\s+(\d+) kB", text, re.M).group(1))

        expected = int(
            psql(
                self.db_url,
                "SELECT count(*) FROM transactions_entry "  # noqa: S608 - our own uuid
                f"WHERE wallet_id = '{wallet_id}'",
            ).strip()
        )
        path = f"/api/v1/wallets/{wallet_id}/statement/?format=csv"
        everything = "&from=2000-01-01T00:00:00Z&to=2100-01-01T00:00:00Z"
        parts = urlsplit(self.stack.url)

        def stream(query: str) -> tuple[int, int, int]:
            conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=120)
            try:
                conn.request(
                    "GET",
                    path + query,
                    headers={"Authorization": f"Bearer {token}", "Accept": "*/*"},
                )
                response = conn.getresponse()
                size = lines = 0
                while piece := response.read(1 << 20):
                    size += len(piece)
                    lines += piece.count(b"\n")
                return response.status, size, lines
            finally:
                conn.close()

        stream("&from=2000-01-01T00:00:00Z&to=2000-01-02T00:00:00Z")  # warm-up
        time.sleep(1)
        before = {pid: status_kb(pid, "VmRSS") for pid in workers}
        hwm_before = {pid: status_kb(pid, "VmHWM") for pid in workers}
        peak = dict(before)
        done = threading.Event()

        def sample() -> None:
            while not done.wait(0.02):
                for pid in workers:
                    with contextlib.suppress(OSError):  # a worker gone
                        peak[pid] = max(peak[pid], status_kb(pid, "VmRSS"))

        sampler = threading.Thread(target=sample, daemon=True)
        log(f"{scenario.name}: GET {path}{everything} ({expected} entries)")
        sampler.start()
        started = time.monotonic()
        status, size, lines = stream(everything)
        seconds = time.monotonic() - started
        done.set()
        sampler.join()
        hwm_after = {pid: status_kb(pid, "VmHWM") for pid in workers}
        mb = 1024.0
        growth = max((peak[pid] - before[pid]) / mb for pid in workers)
        limit = float(os.environ.get("BENCH_EXPORT_MAX_GROWTH_MB", "64"))
        rows = lines - 1
        result = Result(
            scenario.name,
            scenario.title,
            1,
            round(seconds, 1),
            requests=rows,
            rps=round(rows / seconds, 1),
            ok_per_s=round(rows / seconds, 1) if status == 200 else 0.0,
            non_2xx=0 if status == 200 else 1,
            statuses={status: 1},
            extra={
                "bytes": size,
                "rows": rows,
                "mb_per_s": round(size / seconds / 1e6, 1),
                "rss_before_mb": {p: round(v / mb, 1) for p, v in before.items()},
                "rss_peak_mb": {p: round(v / mb, 1) for p, v in peak.items()},
                "vmhwm_before_mb": {p: round(v / mb, 1) for p, v in hwm_before.items()},
                "vmhwm_after_mb": {p: round(v / mb, 1) for p, v in hwm_after.items()},
                "rss_growth_mb": round(growth, 1),
            },
        )
        problems = []
        if status != 200:
            problems.append(f"status {status}")
        if rows != expected:
            problems.append(f"{rows} rows for {expected} entries")
        if growth >= limit:
            problems.append(f"a worker grew {growth:.1f} MiB (limit {limit:.0f})")
        rss = ", ".join(
            f"{before[p] / mb:.0f}->{peak[p] / mb:.0f}" for p in sorted(workers)
        )
        result.check_ok = not problems
        result.check = "; ".join(problems) or (
            f"{rows} rows, {size / 1e6:.0f} MB in {seconds:.1f} s; workers' RSS "
            f"MiB before->peak {rss} (+{growth:.1f} max)"
        )
        self.results.append(result)
        self.show(result)

    def fees(self, scenario: Scenario) -> None:
        n = self.fee_wallets
        log(f"fees: seeding {n} due wallets")
        prepare(self.env, "fees", "--wallets", str(n))
        before = snapshot(self.env)
        started = time.monotonic()
        run = subprocess.Popen(
            [sys.executable, "manage.py", "charge_fees", "--quiet"],
            cwd=REPO,
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        try:
            out, _ = run.communicate(timeout=self.fees_timeout)
            finished = run.returncode == 0
        except subprocess.TimeoutExpired:
            # Stopped part-way: each wallet is its own DB transaction, so what was
            # charged stays charged and the rest is still due (reconcile clean).
            run.terminate()
            out, _ = run.communicate()
            finished = False
        seconds = time.monotonic() - started
        after = snapshot(self.env)
        charged = after["fee_charges"] - before["fee_charges"]
        result = Result(
            scenario.name,
            scenario.title,
            1,
            round(seconds, 1),
            requests=charged,
            rps=round(charged / seconds, 1),
            ok_per_s=round(charged / seconds, 1),
            extra={"wallets": n, "output": out.strip().splitlines()},
        )
        problems = []
        if not finished:
            problems.append(
                f"stopped after {self.fees_timeout}s (BENCH_FEES_TIMEOUT): "
                f"{charged} of {n} charged"
            )
        elif charged != n:
            problems.append(f"{charged} fee charges for {n} due wallets")
        clean, line = reconcile(self.env)
        if not clean:
            problems.append(line)
        result.check_ok = not problems
        result.check = (
            "; ".join(problems)
            if problems
            else f"{charged} wallets charged once, reconcile ok"
        )
        self.results.append(result)
        self.show(result)

    def scaleout(self, scenario: Scenario) -> None:
        """The scale-out run (module docstring), on a cluster of its own: the
        machine's server cannot be base-backed-up or given a replica."""
        from tests.hostile.services import own_postgres
        from tests.stack import pgbouncer, streaming_replica

        seconds = self.seconds(scenario)
        log("scale-out: own PostgreSQL cluster (fsync on), replica, PgBouncer")
        with own_postgres(options="-c fsync=on -c max_connections=300") as cluster:
            db_url = create_database(cluster.url, prefix="wallet_bench")
            dbname = db_url.rsplit("/", 1)[1]
            env = _base_env(db_url, self.redis_url)
            manage("migrate", "--noinput", env=env)
            files = self.scale_files(env)
            with (
                streaming_replica(cluster) as replica,
                pgbouncer(
                    cluster.url,
                    pool_size=self.pgbouncer_pool,
                    databases={
                        f"{dbname}_replica": f"host=127.0.0.1 port={replica.port} "
                        f"dbname={dbname}"
                    },
                ) as bouncer,
            ):
                replica.wait_for_replay(db_url, timeout=300)
                setups = {
                    "1-node": (db_url, 1, {}),
                    "1-node-again": (db_url, 1, {}),
                    "unprepared": (db_url, 1, {"DATABASE_POOLER": "pgbouncer"}),
                    "pgbouncer": (
                        bouncer.url(db_url),
                        1,
                        {"DATABASE_POOLER": "pgbouncer"},
                    ),
                    "2-nodes": (
                        bouncer.url(db_url),
                        2,
                        {
                            "DATABASE_POOLER": "pgbouncer",
                            "DATABASE_REPLICA_URL": bouncer.url(
                                db_url, f"{dbname}_replica"
                            ),
                        },
                    ),
                }
                for setup, title in SCALE_SETUPS:
                    url, nodes, more = setups[setup]
                    self.scale_setup(
                        setup,
                        title,
                        url,
                        nodes,
                        more,
                        files,
                        seconds,
                        db_url,
                        replica.url(db_url),
                        {k: env[k] for k in ("SECRET_KEY", "JWT_SIGNING_KEY")},
                    )
            clean, line = reconcile(env)
            if not clean:
                self.results[-1].check_ok = False
                self.results[-1].check += f"; {line}"
        by_name = {r.name: r for r in self.results}
        for load, *_ in SCALE_LOADS:
            single = by_name.get(f"{load}@1-node")
            for setup in ("unprepared", "pgbouncer", "2-nodes", "1-node-again"):
                other = by_name.get(f"{load}@{setup}")
                if single and other and single.ok_per_s:
                    self.scale_ratios[f"{load} {setup}/1-node"] = round(
                        other.ok_per_s / single.ok_per_s, 2
                    )

    @staticmethod
    def replica_xacts(replica_url: str) -> int:
        return int(
            psql(
                replica_url,
                "SELECT xact_commit + xact_rollback FROM pg_stat_database "
                "WHERE datname = current_database()",
            )
        )

    def scale_files(self, env: dict) -> dict[str, Path]:
        log("scale-out: preparing users, wallets and tokens")
        hot, spread = self.tmp / "scale-hot.tsv", self.tmp / "scale-spread.tsv"
        prepare(env, "users", "--count", "1", "--out", str(hot), "--prefix", "hot")
        prepare(
            env, "users", "--count", "1000", "--out", str(spread), "--prefix", "spread"
        )
        history = self.tmp / "scale-history.tsv"
        history.write_text(
            "".join(
                f"/api/v1/wallets/{wallet}/transactions/\t{token}\n"
                for wallet, token, _ in (
                    line.split("\t") for line in spread.read_text().splitlines()
                )
            )
        )
        return {"hot": hot, "spread": spread, "spread-history": history}

    def scale_setup(
        self,
        setup: str,
        title: str,
        database_url: str,
        nodes: int,
        more: dict[str, str],
        files: dict[str, Path],
        seconds: int,
        primary_url: str,
        replica_url: str,
        signing_keys: dict[str, str],
    ) -> None:
        log(f"scale-out: {title}")
        stack = Stack.start(
            database_url=database_url,
            redis_url=self.redis_url,
            celery=False,
            web_workers=self.web_workers,
            web_nodes=nodes,
            settings_module="bench.settings",
            # The keys the prepared tokens are signed with.
            env={**self.stack_env(), **signing_keys, **more},
        )
        loads = [*SCALE_LOADS]
        if setup == "2-nodes":
            loads.append(("overload", "operation", "spread", 256))
        try:
            for load, mode, targets, connections in loads:
                scenario = Scenario(
                    f"{load}@{setup}",
                    f"9. {load} ({title})",
                    "wrk",
                    seconds,
                    connections=connections,
                    mode=mode,
                    targets=targets,
                )
                run_wrk(
                    stack.url,
                    Scenario(**{**asdict(scenario), "seconds": 2}),
                    files[targets],
                )
                replica_before = self.replica_xacts(replica_url)
                with ServerConnections(primary_url) as sampled:
                    result = wrk_result(
                        scenario, run_wrk(stack.url, scenario, files[targets])
                    )
                result.extra["server_connections_max"] = sampled.peak
                time.sleep(1)  # the replica's statistics are flushed within a second
                # Transactions the replica ran meanwhile: history is read there.
                result.extra["replica_transactions"] = (
                    self.replica_xacts(replica_url) - replica_before
                )
                problems = []
                # Socket errors (wrk's 5 s timeouts under 256 connections on two
                # shared cores) are latency, shown in their column.
                if result.server_errors or not result.ok_per_s:
                    problems.append(
                        f"{result.server_errors} 5xx, {result.socket_errors} socket "
                        f"errors, statuses {result.statuses}"
                    )
                if "pgbouncer" in database_url_kind(setup) and (
                    sampled.peak > self.pgbouncer_pool
                ):
                    problems.append(
                        f"{sampled.peak} server connections > pool {self.pgbouncer_pool}"
                    )
                result.check_ok = not problems
                result.check = "; ".join(problems) or (
                    f"server connections <= {sampled.peak}"
                )
                self.results.append(result)
                self.show(result)
                time.sleep(1)
        finally:
            stack.stop()

    # -- output -----------------------------------------------------------------------

    def show(self, r: Result) -> None:
        log(
            f"{r.name}: {r.rps} req/s, ok {r.ok_per_s}/s, p50 {r.p50_ms} ms, "
            f"p99 {r.p99_ms} ms, non-2xx {r.non_2xx}, 5xx {r.server_errors}, "
            f"socket errors {r.socket_errors}; {'OK' if r.check_ok else 'FAIL'} "
            f"{r.check}"
        )

    def report(self, started: datetime, load_before: list[float]) -> dict:
        by_name = {r.name: r for r in self.results}

        def ratio(name: str, floor: str) -> float | None:
            if name in by_name and floor in by_name and by_name[floor].ok_per_s:
                return round(by_name[name].ok_per_s / by_name[floor].ok_per_s, 2)
            return None

        ratios = {
            "hot/floor-hot": ratio("hot", "floor-hot"),
            "hot-held/hot": ratio("hot-held", "hot"),  # issue 18: >= 0.9
            "hot-webhook/hot": ratio("hot-webhook", "hot"),  # issue 19: >= 0.9
            "hot-webhook/floor-hot": ratio("hot-webhook", "floor-hot"),
            "hot-webhook-queued/hot": ratio("hot-webhook-queued", "hot"),
            "hot/pgbench-hot": ratio("hot", "pgbench-hot"),
            "spread/floor-1000": ratio("spread", "floor-1000"),
            "transfers/floor-1000": ratio("transfers", "floor-1000"),
            "floor-hot/pgbench-hot": ratio("floor-hot", "pgbench-hot"),
            "floor-1000/pgbench-1000": ratio("floor-1000", "pgbench-1000"),
            **self.scale_ratios,
        }
        header = (
            f"{'scenario':<42} {'conn':>4} {'req/s':>8} {'ok/s':>8} "
            f"{'p50 ms':>7} {'p99 ms':>7} {'non2xx':>6} {'5xx':>4} "
            f"{'sock':>4}  check"
        )
        lines = [header, "-" * len(header)]
        for r in self.results:
            p50 = "-" if r.p50_ms is None else f"{r.p50_ms:.1f}"
            p99 = "-" if r.p99_ms is None else f"{r.p99_ms:.1f}"
            if r.name == "fees":
                p50 = p99 = "-"
            lines.append(
                f"{r.title:<42} {r.connections:>4} {r.rps:>8.1f} {r.ok_per_s:>8.1f} "
                f"{p50:>7} {p99:>7} {r.non_2xx:>6} {r.server_errors:>4} "
                f"{r.socket_errors:>4}  {'OK' if r.check_ok else 'FAIL'} {r.check}"
            )
        lines.append("")
        if self.web_rss:
            lines.append(
                "web workers' RSS (MiB): "
                + ", ".join(f"{k} {v}" for k, v in self.web_rss.items())
            )
        for name in ("hot-webhook", "hot-webhook-queued"):
            if name not in by_name:
                continue
            w = by_name[name].extra.get("webhook", {})
            after = w.get("delivered_per_s_after_load")
            lines.append(
                f"webhooks ({name}): {w.get('delivered_per_s_during_load')} "
                f"deliveries/s during the load ({w.get('events_per_s')} events/s "
                f"written), lag from commit p50 {w.get('lag_ms', {}).get('p50')} ms, "
                f"p99 {w.get('lag_ms', {}).get('p99')} ms, caught up "
                f"{w.get('caught_up_s_after_load')} s after the load, "
                f"{w.get('duplicates')} duplicates, {w.get('lost')} lost"
                + (f"; {after} deliveries/s after the load" if after else "")
            )
        lines.append(
            "ratios: "
            + ", ".join(f"{k} {v}" for k, v in ratios.items() if v is not None)
        )
        table = "\n".join(lines)
        print(table)
        report = {
            "started_at": started.isoformat(),
            "finished_at": datetime.now(UTC).isoformat(),
            "machine": {
                "cpus": os.cpu_count(),
                "platform": platform.platform(),
                "load_before": load_before,
                "load_after": loadavg(),
            },
            "git": subprocess.run(
                ["git", "rev-parse", "--short", "HEAD"],
                cwd=REPO,
                capture_output=True,
                text=True,
            ).stdout.strip(),
            "settings": {
                "web_workers": self.web_workers,
                "seconds": self.fixed_seconds or "per scenario",
                "history_entries": self.history_entries,
                "fee_wallets": self.fee_wallets,
                "holds": self.hold_count,
                "jwt_user_cache_seconds": self.user_cache,
                "stack_env": os.environ.get("BENCH_STACK_ENV", ""),
            },
            "results": [asdict(r) for r in self.results],
            "ratios": ratios,
            "web_workers_rss_mb": self.web_rss,
            "table": table,
        }
        OUT.mkdir(parents=True, exist_ok=True)
        stamp = started.strftime("%Y%m%dT%H%M%SZ")
        for path in (OUT / f"bench-{stamp}.json", OUT / "latest.json"):
            path.write_text(json.dumps(report, indent=2, default=str) + "\n")
        log(f"wrote {OUT / f'bench-{stamp}.json'}")
        return report


if __name__ == "__main__":
    sys.exit(Bench().run())
