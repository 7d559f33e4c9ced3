"""Annotation results at SaaS scale (issue 16): documents in the object store against rows.

The peer is Xtreme1 as it is (bench/xtreme1_rows.py): one row per object in its own table on
MariaDB/InnoDB, loaded with `WHERE data_id IN (…)`, saved with DELETE + INSERT in one
transaction, with a buffer pool far below the table and O_DIRECT. Both sides hold the same
long, interleaved history (bench/annotation_history.py), built once and kept between runs.
The designs — (a) pre-signed URLs fetched 6 at a time, (b) the batch endpoints, (c) rows —
answer on one server (bench/annotation_server.py) and are driven by the same client code.

Each figure is measured cold and warm. Cold: before each measured one-client round, and
before each throughput run, the page cache is emptied of every file of SeaweedFS, TiDB and
the row server (bench/servers.py), and the sequence is one not loaded before in this run,
picked at random (so for the rows it is not in the buffer pool either). Warm: the same
sequence again (one client), or a few sequences over and over (many clients).

Per sequence, from /proc: CPU seconds of the API (with its parse process), of SeaweedFS, of
TiDB (the product's database) and of the row server, and the bytes each read from disk.
SeaweedFS and TiDB are the shared stack's; their idle rate, measured before each phase, is
subtracted (other engineers' tests may be running on them).

`BENCH_QUICK=1`: a small history (its own cache directories), few rounds, 2 and 4 clients.
`BENCH_BREAKDOWN_ONLY=1`: only where the time goes (bench/annotation_breakdown.py).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import os
import random
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Any

import httpx

from annostack.devstack.processes import running
from annostack.devstack.settings import DevStackSettings
from annostack.services.tenancy import create_api_token
from bench import annotation_objects, xtreme1_rows
from bench.annotation_breakdown import breakdown
from bench.annotation_clients import Batch, Design, Failed, Presigned, Rows, Sequence
from bench.annotation_history import Layout, SideState
from bench.runner import Figures, benchmark
from bench.servers import Meter, Server, Tally, Usage, evict, resident_bytes, with_children
from bench.xtreme1_rows import RowServer, ServerConfig

FULL = Layout(sequences=340)  # 3.06 million objects, 2.65 GB of documents
QUICK = Layout(sequences=40)  # enough fresh sequences for the quick plan's saves
# One pass of the history on the object side, two on the rows. A second pass of PUTs only
# leaves the first pass's copies as garbage between the live documents (SeaweedFS appends),
# which are already spread over the volumes by the first pass's order; it costs 2.65 GB of a
# shared disk. InnoDB's second pass is what ages the table: freed pages reused, pages split.
OBJECT_PASSES = 1
REPOSITORY = Path(__file__).resolve().parent.parent
BACKGROUND_SECONDS = 5.0


@dataclass(frozen=True)
class Plan:
    rounds: int
    seconds: float  # of each throughput run
    clients: tuple[int, ...]


FULL_PLAN = Plan(rounds=20, seconds=15.0, clients=(16, 64))
QUICK_PLAN = Plan(rounds=4, seconds=3.0, clients=(2, 4))


@benchmark("annotations")
def annotations_bench() -> Figures:
    quick = os.environ.get("BENCH_QUICK") == "1"
    layout, plan = (QUICK, QUICK_PLAN) if quick else (FULL, FULL_PLAN)
    suffix = "-quick" if quick else ""
    home = DevStackSettings().home / "bench"
    rows_home, objects_home = home / f"xtreme1-rows{suffix}", home / f"annotation-objects{suffix}"
    rows_state = xtreme1_rows.ensure_history(rows_home, layout)
    with annotation_objects.kept_tenant(objects_home) as (api_env, settings, ctx):
        objects_layout = replace(layout, passes=OBJECT_PASSES)
        objects_state = annotation_objects.ensure_history(
            settings, ctx, objects_home, objects_layout
        )
        token = create_api_token(ctx, "bench")
        rows_server = RowServer(rows_home)
        with rows_server.running(ServerConfig()):
            env = {**os.environ, **api_env, "BENCH_ROWS_URL": rows_server.url}
            with bench_api(env, rows_home / "api.log") as (http_base, api_pid):
                run = Run(layout, plan, objects_state, rows_state, rows_server, http_base, token)
                run.meter = meter(api_pid, rows_server.pid)
                try:
                    figures = run.everything(partial(breakdown, run, settings, ctx))
                finally:
                    objects_state.rewritten = sorted(set(run.saved["objects"]))
                    objects_state.write(objects_home / "objects.json")
                    rows_state.rewritten = sorted(set(run.saved["rows"]))
                    rows_state.write(rows_home / "state.json")
        figures["conditions"] = run.conditions(rows_server, rows_state, objects_state)
    return figures


@contextlib.contextmanager
def bench_api(env: dict[str, str], log: Path) -> Iterator[tuple[str, int]]:
    """bench.annotation_server as its own process: (base URL, pid)."""
    port = xtreme1_rows._free_port()
    with log.open("w") as output:
        process = subprocess.Popen(
            [sys.executable, "-m", "bench.annotation_server", "--port", str(port)],
            env=env,
            cwd=REPOSITORY,
            stdout=output,
            stderr=output,
        )
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while not _healthy(base):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"the bench API did not start; see {log}")
            time.sleep(0.2)
        yield base, process.pid
    finally:
        process.terminate()
        process.wait(timeout=30)


def _healthy(base: str) -> bool:
    with contextlib.suppress(httpx.TransportError):
        return httpx.get(f"{base}/healthz", timeout=2).status_code == 200
    return False


def stack_files(component: str) -> Path:
    return DevStackSettings().state_dir / component


def meter(api_pid: int, rows_pid: int) -> Meter:
    def stack_pid(name: str) -> Callable[[], list[int]]:
        def pids() -> list[int]:
            record = running(DevStackSettings().state_dir / f"{name}.pid")
            return [record.pid] if record else []

        return pids

    return Meter(
        [
            Server("api", with_children(api_pid)),
            Server("seaweedfs", stack_pid("seaweedfs"), (stack_files("seaweedfs"),), shared=True),
            Server("tidb", stack_pid("tidb"), (stack_files("tidb"),), shared=True),
            Server("mariadb_rows", lambda: [rows_pid]),
            Server("client", lambda: [os.getpid()], measure=client_usage),
        ]
    )


def client_usage() -> Usage:
    """This process and the curl processes it ran (reaped children count once they exit)."""
    import resource

    own, children = (
        resource.getrusage(resource.RUSAGE_SELF),
        resource.getrusage(resource.RUSAGE_CHILDREN),
    )
    cpu = own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime
    return Usage(cpu, 0)


@dataclass
class Run:
    """One benchmark run: the designs, which sequences it used, and every phase."""

    layout: Layout
    plan: Plan
    objects: SideState
    rows: SideState
    rows_server: RowServer
    base_url: str
    token: str
    meter: Meter = field(default_factory=lambda: Meter([]))
    loaded: dict[str, set[int]] = field(default_factory=lambda: {"objects": set(), "rows": set()})
    saved: dict[str, list[int]] = field(default_factory=lambda: {"objects": [], "rows": []})
    rng: random.Random = field(default_factory=lambda: random.Random())  # noqa: S311
    load_averages: list[tuple[float, float, float]] = field(default_factory=list)

    # -- sequences ---------------------------------------------------------------------------

    def sequence(self, side: str, number: int) -> Sequence:
        if side == "rows":
            return Sequence(number, xtreme1_rows.sequence_data_ids(number), number + 1)
        return Sequence(number, annotation_objects.items_of(self.objects, number), 0)

    def cold_for_load(self, side: str) -> Sequence:
        """A sequence this run has neither loaded nor saved on that side, at random."""
        used = self.loaded[side] | set(self.saved[side])
        fresh = [s for s in range(self.layout.sequences) if s not in used]
        number = self.rng.choice(fresh or list(range(self.layout.sequences)))
        self.loaded[side].add(number)
        return self.sequence(side, number)

    def cold_for_save(self, side: str) -> Sequence | None:
        """A sequence not saved yet in this run (saving one rewrites it whole), or None."""
        saved = set(self.saved[side])
        fresh = [s for s in range(self.layout.sequences) if s not in saved]
        if not fresh:
            return None
        number = self.rng.choice(fresh)
        self.saved[side].append(number)
        return self.sequence(side, number)

    def recently_saved(self, side: str, count: int) -> list[Sequence]:
        """The last `count` sequences saved on that side: in every cache now."""
        numbers = self.saved[side][-count:]
        if len(numbers) < count:
            raise RuntimeError(f"{count} warm saves need {count} sequences saved before")
        return [self.sequence(side, number) for number in numbers]

    # -- caches ------------------------------------------------------------------------------

    def evict(self) -> None:
        evict(self.cached_files())

    def cached_files(self) -> list[Path]:
        return [stack_files("seaweedfs"), stack_files("tidb"), self.rows_server.datadir]

    # -- phases ------------------------------------------------------------------------------

    def everything(self, parts: Callable[[], Figures]) -> Figures:
        """Loads, then where the time goes (`parts`), then saves.

        The parts come before the saves: after 64 clients' saves the row server purges and
        flushes for minutes (and SeaweedFS writes), and cold reads measured then measure that.
        """
        self.load_averages.append(os.getloadavg())
        figures: Figures = {"eviction_check": self.eviction_check()}
        figures["background_cpu_per_second"] = self.meter.measure_background(BACKGROUND_SECONDS)
        if os.environ.get("BENCH_BREAKDOWN_ONLY") == "1":
            return {**figures, "breakdown": parts()}
        for action in ("load", "save"):
            figures[action] = self.phase(action)
            self.load_averages.append(os.getloadavg())
            figures[f"background_after_{action}"] = self.meter.measure_background(
                BACKGROUND_SECONDS
            )
            if action == "load":
                figures["breakdown"] = parts()
        figures["targets"] = targets(figures)
        return figures

    def eviction_check(self) -> dict[str, float]:
        """What is cached of the servers' files before and after one eviction (MiB)."""
        before = resident_bytes(self.cached_files())
        started = time.perf_counter()
        self.evict()
        seconds = time.perf_counter() - started
        after = resident_bytes(self.cached_files())
        return {
            "resident_mib_before": round(before / 2**20, 1),
            "resident_mib_after": round(after / 2**20, 1),
            "eviction_seconds": round(seconds, 2),
        }

    def phase(self, action: str) -> Figures:
        figures: Figures = {}
        with self.designs(1) as designs:
            if action == "load":
                for design in designs:
                    design.load(self.cold_for_load(design.side))  # connections, pools, imports
            figures["one_client_cold"], figures["per_sequence_cold"] = self.one_client(
                designs, action, cold=True
            )
            figures["one_client_warm"], figures["per_sequence_warm"] = self.one_client(
                designs, action, cold=False
            )
        for clients in self.plan.clients:
            with self.designs(clients) as designs:
                for cold in (True, False):
                    rates, usage = self.throughput(designs, action, clients, cold)
                    label = f"clients_{clients}_{'cold' if cold else 'warm'}"
                    figures[f"{label}_sequences_per_second"] = rates
                    figures[f"{label}_per_sequence"] = usage
        return figures

    @contextlib.contextmanager
    def designs(self, clients: int) -> Iterator[list[Design]]:
        limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
        with httpx.Client(base_url=self.base_url, timeout=600, limits=limits) as http:
            auth = {"Authorization": f"Bearer {self.token}"}
            yield [Presigned(http, auth), Batch(http, auth), Rows(http, auth)]

    def one_client(
        self, designs: list[Design], action: str, cold: bool
    ) -> tuple[dict[str, Any], dict[str, Any]]:
        latencies, usage = {}, {}
        for design in designs:
            act = design.load if action == "load" else design.save
            tally, samples = Tally(), []
            warm = None if cold else self.warm_sequences(design, action, 1)[0]
            for _ in range(self.plan.rounds):
                sequence = warm or self.cold_sequence(design, action)
                if cold:
                    self.evict()
                samples.append(self.meter.timed(tally, partial(_once, act, sequence)))
            latencies[design.key] = percentiles(samples)
            usage[design.key] = self.meter.per_unit(tally)
            print(
                f"  {action} one client {'cold' if cold else 'warm'} {design.key}: "
                f"{latencies[design.key]}",
                file=sys.stderr,
                flush=True,
            )
        return latencies, usage

    def cold_sequence(self, design: Design, action: str) -> Sequence:
        side = design.side
        found = self.cold_for_load(side) if action == "load" else self.cold_for_save(side)
        if found is None:
            raise RuntimeError("every sequence was saved already in this run; a larger history")
        return found

    def warm_sequences(self, design: Design, action: str, count: int) -> list[Sequence]:
        """Sequences touched once now, to be loaded (or saved) again and again.

        Loads: fresh ones, loaded once. Saves: the last ones saved (saving a fresh one would
        rewrite one more sequence of the history).
        """
        if action == "save":
            return self.recently_saved(design.side, count)  # just saved: warm already
        sequences = [self.cold_sequence(design, action) for _ in range(count)]
        for sequence in sequences:
            design.load(sequence)
        return sequences

    def throughput(
        self, designs: list[Design], action: str, clients: int, cold: bool
    ) -> tuple[dict[str, float], dict[str, Any]]:
        rates, usage = {}, {}
        for design in designs:
            act = design.load if action == "load" else design.save
            pick = self.picker(design, action, clients, cold)
            if cold:
                self.evict()
            tally, errors = Tally(), list[str]()
            self.meter.timed(tally, partial(drive, clients, self.plan.seconds, act, pick, errors))
            rates[design.key] = round(tally.units / tally.seconds, 2)
            entry: dict[str, Any] = dict(self.meter.per_unit(tally))
            if errors:
                entry["errors"] = {"count": len(errors), "first": errors[:3]}
            usage[design.key] = entry
            print(
                f"  {action} {clients} clients {'cold' if cold else 'warm'} {design.key}: "
                f"{rates[design.key]} seq/s",
                file=sys.stderr,
                flush=True,
            )
        return rates, usage

    def picker(
        self, design: Design, action: str, clients: int, cold: bool
    ) -> Callable[[int], Sequence | None]:
        """Which sequence client i works on next: fresh ones when cold, a few again when warm.

        Warm saves: client i saves again the sequence it saved last (no two clients on one
        sequence: concurrent saves of one sequence are not the benchmark's question).
        """
        lock = threading.Lock()
        if cold:
            choose = self.cold_for_load if action == "load" else self.cold_for_save

            def fresh(client: int) -> Sequence | None:
                with lock:
                    return choose(design.side)

            return fresh
        if action == "load":
            warm = self.warm_sequences(design, "load", WARM_SEQUENCES)
            return lambda client: warm[client % len(warm)]
        warm = self.warm_sequences(design, "save", clients)
        return lambda client: warm[client]

    def conditions(
        self, rows_server: RowServer, rows: SideState, objects: SideState
    ) -> dict[str, Any]:
        return {
            "layout": {**vars(self.layout), "objects_total": self.layout.objects_total},
            "plan": vars(self.plan),
            "load_averages": [[round(x, 2) for x in avg] for avg in self.load_averages],
            "row_server": {
                "buffer_pool": ServerConfig().buffer_pool,
                "flush_method": "O_DIRECT",
                "build": rows.built,
            },
            "objects_build": objects.built,
            "tenant": objects.extra.get("tenant"),
        }


WARM_SEQUENCES = 4  # a warm working set: a few sequences, well within every cache


def _once(act: Callable[[Sequence], None], sequence: Sequence) -> int:
    act(sequence)
    return 1


def drive(
    clients: int,
    seconds: float,
    act: Callable[[Sequence], None],
    pick: Callable[[int], Sequence | None],
    errors: list[str],
) -> int:
    """`clients` editors each doing `act` in a loop for `seconds`; sequences done whole.

    A request under way at the deadline is finished and counted (the interval is measured
    to its end): a 64-client run at ~1 sequence/s would otherwise count nothing. A sequence
    that failed (a non-200, an item not loaded or saved) is not counted and is listed in
    `errors`.
    """
    deadline = time.monotonic() + seconds

    def editor(client: int) -> int:
        done = 0
        while time.monotonic() < deadline:
            sequence = pick(client)
            if sequence is None:
                break
            try:
                act(sequence)
            except (Failed, httpx.TransportError) as error:
                errors.append(f"{type(error).__name__}: {str(error)[:120]}")
                continue
            done += 1
        return done

    with concurrent.futures.ThreadPoolExecutor(clients) as pool:
        return sum(pool.map(editor, range(clients)))


def percentiles(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "p50_ms": round(statistics.median(ordered) * 1000, 1),
        "p95_ms": round(ordered[round(0.95 * (len(ordered) - 1))] * 1000, 1),
    }


def targets(figures: Figures) -> dict[str, Any]:
    """The issue's targets, each with the measured ratio and whether it is met."""
    load, save = figures["load"], figures["save"]
    a, b, c = "a_presigned_curl_6", "b_batch_endpoints", "c_rows_xtreme1"
    top = max(int(k.split("_")[1]) for k in load if k.startswith("clients_"))

    def p50(section: Figures, design: str) -> float:
        return float(section["one_client_cold"][design]["p50_ms"])

    def rate(section: Figures, design: str) -> float:
        return float(section[f"clients_{top}_cold_sequences_per_second"][design])

    def db_cpu(design: str) -> float:
        used = load["per_sequence_cold"][design]
        return float(used["tidb"]["cpu_seconds"] + used["mariadb_rows"]["cpu_seconds"])

    def check(name: str, ratio: float, bound: float, at_most: bool) -> dict[str, Any]:
        met = ratio <= bound if at_most else ratio >= bound
        return {
            "target": f"{'<=' if at_most else '>='} {bound}x",
            "ratio": round(ratio, 3),
            "met": met,
        }

    checks = {}
    for design in (a, b):
        checks[f"cold_load_p50_{design}_vs_c"] = check(
            "", p50(load, design) / p50(load, c), 0.5, True
        )
        checks[f"load_{top}_clients_{design}_vs_c"] = check(
            "", rate(load, design) / max(rate(load, c), 1e-9), 2.0, False
        )
        checks[f"db_cpu_per_load_{design}_vs_c"] = check(
            "", db_cpu(design) / max(db_cpu(c), 1e-9), 0.05, True
        )
    checks[f"cold_save_p50_{b}_vs_c"] = check("", p50(save, b) / p50(save, c), 0.5, True)
    checks[f"save_{top}_clients_{b}_vs_c"] = check(
        "", rate(save, b) / max(rate(save, c), 1e-9), 2.0, False
    )
    return checks
