"""The sweep service under load: two sweeps run side by side on a real server
(`python -m cvsweep serve --max-running 2` on a free port of 127.0.0.1), without clients (phase
A) and with 50 clients (phase B), each client polling `GET /sweeps/{id}` every 0.5-1 s and
holding the sweep's event stream (`/sweeps/{id}/events`) until `sweep_finished`; 25 clients
watch each sweep.

    uv run python benchmarks/service_load.py [--order ABA] [--clients 50] [--trials 4] [--epochs 40]
        [--keep DIR]

Phases alternate (A, B, A by default: B against the mean of the As cancels a steady drift of
the shared machine's speed). Every phase runs the same two sweeps, the same training cost:
`search=base` (nothing searched, every trial the same model), a fixed number of epochs (early
stopping off), no pruner. Each sweep gets its own `training.seed`, so each is a study of its
own (the seed is part of the study's identity; the sampler's seed is not, and a repeated
identity would resume the earlier study instead of training).

Reported per phase: the polls (count, errors, latency p50/p95/p99/max), the streams (errors,
a stream that ends without sweep_finished is one; events per stream), the trials' mean
`train_seconds` (each result.json), the sweeps' wall time, the CPU seconds of the server
process and of this one (the clients), and the machine's load. The goals: no errors, trials no
slower with clients than without by more than 5% (ratio of mean train_seconds, B over A).
JSON in benchmarks/results/service_load.json (written after each phase), and a table.

The clients share the machine with the trials they watch, so their CPU time slows the trials as
much as the server's does: they use aiohttp (its C parser; httpx took 2-2.5 ms of CPU a
request here, four times the server's share), one session per client, all in one event loop.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp
import httpx

REPO = Path(__file__).resolve().parents[1]
FINAL = ("finished", "failed", "cancelled")
GOAL_RATIO = 1.05


def sweep_overrides(trials: int, epochs: int, seed: int) -> list[str]:
    return ["search=base", f"training.epochs={epochs}", "training.early_stopping_patience=0",
            "hydra/sweeper/pruner=none", f"hydra.sweeper.n_trials={trials}", "plots=summary", f"training.seed={seed}"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads) so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def machine_busy() -> tuple[int, int]:
    """(busy, total) jiffies of all CPUs since boot."""
    values = [int(v) for v in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    idle = values[3] + values[4]  # idle + iowait
    return sum(values) - idle, sum(values)


class Server:
    def __init__(self, root: Path):
        self.root = root
        self.base_url = f"http://127.0.0.1:{free_port()}"
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        env.pop("CVSWEEP_API_TOKEN", None)
        self.log = open(root.parent / "service.log", "w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "cvsweep", "serve", "--port", self.base_url.rsplit(":", 1)[1], "--max-running", "2",
             "--output-root", str(root)], cwd=REPO, env=env, stdout=self.log, stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(Path(self.log.name).read_text()[-3000:])
            try:
                if httpx.get(self.base_url + "/health", timeout=5).status_code == 200:
                    return
            except httpx.TransportError:
                pass
            time.sleep(0.3)
        raise TimeoutError("the service did not start")

    def start_sweep(self, overrides: list[str]) -> str:
        response = httpx.post(self.base_url + "/sweeps", json={"overrides": overrides}, timeout=120)
        if response.status_code != 201:
            raise RuntimeError(f"POST /sweeps: {response.status_code} {response.text}")
        return response.json()["id"]

    def kill_sweeps(self) -> None:
        for state in self.root.glob("sweeps/*/service_state.json"):
            pid = json.loads(state.read_text()).get("supervisor_pid")
            try:
                os.killpg(pid, signal.SIGKILL)  # the supervisor leads its own process group
            except (OSError, TypeError):
                pass

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=30)
        self.log.close()


class Record:
    """What the clients of one phase saw."""

    def __init__(self):
        self.poll_latencies: list[float] = []
        self.connect_latencies: list[float] = []
        self.events_per_stream: dict[str, list[int]] = {}
        self.errors: list[str] = []

    def error(self, what: str) -> None:
        self.errors.append(what)


async def watch_stream(http: aiohttp.ClientSession, url: str, record: Record) -> None:
    events, finished, name = 0, False, None
    started = time.perf_counter()
    try:
        async with http.get(url + "/events") as response:
            record.connect_latencies.append(time.perf_counter() - started)
            if response.status != 200:
                record.error(f"events: HTTP {response.status}")
                return
            async for raw in response.content:
                line = raw.decode().rstrip("\r\n")
                if line.startswith("event:"):
                    name = line[len("event:"):].strip()
                elif line.startswith("data:"):
                    events += 1
                    finished = finished or name == "sweep_finished"
    except Exception as err:  # every failure of a client is a result, not a crash of the benchmark
        record.error(f"events: {type(err).__name__}: {err}")
        return
    record.events_per_stream.setdefault(url, []).append(events)
    if not finished:
        record.error(f"events: the stream ended after {events} events without sweep_finished")


async def client(number: int, url: str, record: Record, deadline: float) -> None:
    """One watcher of a sweep, as a browser tab would be: its stream open, its view polled."""
    rng = random.Random(number)
    await asyncio.sleep(rng.uniform(0, 1))
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=None, connect=30, sock_read=300)) as http:
        stream = asyncio.create_task(watch_stream(http, url, record))
        status = None
        while time.monotonic() < deadline:
            started = time.perf_counter()
            try:
                async with http.get(url, timeout=aiohttp.ClientTimeout(total=30)) as response:
                    body = await response.read()
                latency = time.perf_counter() - started
                if response.status == 200:
                    record.poll_latencies.append(latency)
                    status = json.loads(body)["status"]
                else:
                    record.error(f"poll: HTTP {response.status}")
            except Exception as err:
                record.error(f"poll: {type(err).__name__}: {err}")
            if status in FINAL and stream.done():
                break
            await asyncio.sleep(rng.uniform(0.5, 1.0))
        await stream


async def wait_for(base_url: str, sweep_id: str, started: float, deadline: float) -> float:
    """The sweep's wall time as the benchmark sees it: from its POST to its final status (0.5 s polls)."""
    async with httpx.AsyncClient(base_url=base_url, timeout=30) as http:
        while time.monotonic() < deadline:
            view = (await http.get(f"/sweeps/{sweep_id}")).json()
            if view["status"] in FINAL:
                if view["status"] != "finished":
                    raise RuntimeError(f"sweep {sweep_id} {view['status']}: {view['reason']}")
                return time.monotonic() - started
            await asyncio.sleep(0.5)
    raise TimeoutError(f"sweep {sweep_id} did not finish in time")


async def watched(server: Server, sweep_ids: list[str], started: float, clients: int, record: Record,
                  timeout: float) -> list[float]:
    deadline = time.monotonic() + timeout
    urls = [f"{server.base_url}/sweeps/{sweep_id}" for sweep_id in sweep_ids]
    watchers = [client(n, urls[n % len(urls)], record, deadline) for n in range(clients)]
    walls, *_ = await asyncio.gather(
        asyncio.gather(*(wait_for(server.base_url, s, started, deadline) for s in sweep_ids)), *watchers)
    return walls


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def ms(value: float | None) -> float | None:
    return None if value is None else round(value * 1000, 1)


def run_phase(server: Server, label: str, clients: int, seeds: list[int], args) -> dict:
    record = Record()
    load_before = os.getloadavg()
    busy_before, server_before, own_before = machine_busy(), cpu_seconds(server.process.pid), time.process_time()
    started = time.monotonic()
    sweep_ids = [server.start_sweep(sweep_overrides(args.trials, args.epochs, seed)) for seed in seeds]
    walls = asyncio.run(watched(server, sweep_ids, started, clients, record, args.timeout))
    busy_after = machine_busy()
    trains = []
    for sweep_id in sweep_ids:
        results = sorted((server.root / "sweeps" / sweep_id).glob("*/result.json"))
        trains += [json.loads(p.read_text())["metrics"]["train_seconds"] for p in results]
    events = {url.rsplit("/", 1)[1]: (min(v), max(v)) for url, v in record.events_per_stream.items()}
    return {
        "phase": label, "clients": clients, "sweeps": sweep_ids, "seeds": seeds,
        "trials": len(trains), "train_seconds": trains, "mean_train_s": round(statistics.mean(trains), 3),
        "sweep_wall_s": [round(w, 1) for w in walls], "mean_sweep_wall_s": round(statistics.mean(walls), 1),
        "server_cpu_s": round(cpu_seconds(server.process.pid) - server_before, 2),
        "client_cpu_s": round(time.process_time() - own_before, 2),
        "machine_busy": round((busy_after[0] - busy_before[0]) / max(1, busy_after[1] - busy_before[1]), 3),
        "load_before": [round(x, 2) for x in load_before], "load_after": [round(x, 2) for x in os.getloadavg()],
        "polls": len(record.poll_latencies) + sum(e.startswith("poll") for e in record.errors),
        "streams": sum(len(v) for v in record.events_per_stream.values())
        + sum(e.startswith("events") for e in record.errors),
        "errors": len(record.errors), "error_samples": record.errors[:10],
        "poll_latency_ms": {f"p{q}": ms(percentile(record.poll_latencies, q)) for q in (50, 95, 99)}
        | {"max": ms(max(record.poll_latencies, default=None))},
        "stream_connect_ms": {"p50": ms(percentile(record.connect_latencies, 50)),
                              "max": ms(max(record.connect_latencies, default=None))},
        "events_per_stream": {s: {"min": lo, "max": hi} for s, (lo, hi) in events.items()},
    }


def summary(phases: list[dict]) -> dict:
    def mean_of(label, key):
        values = [p[key] for p in phases if p["phase"] == label]
        return statistics.mean(values) if values else None

    a_train, b_train = mean_of("A", "mean_train_s"), mean_of("B", "mean_train_s")
    a_wall, b_wall = mean_of("A", "mean_sweep_wall_s"), mean_of("B", "mean_sweep_wall_s")
    train_ratio = round(b_train / a_train, 3) if a_train and b_train else None
    loaded = [p for p in phases if p["clients"]]
    # Each B against the As beside it: the spread shows how much the shared machine's speed moved.
    pairs = []
    for i, p in enumerate(phases):
        beside = [q["mean_train_s"] for q in phases[max(0, i - 1):i + 2] if q["phase"] == "A"]
        if p["phase"] == "B" and beside:
            pairs.append(round(p["mean_train_s"] / statistics.mean(beside), 3))

    def cpu_share(label, key):  # CPU seconds per second of a phase, as a share of the machine's cores
        values = [p[key] / p["mean_sweep_wall_s"] for p in phases if p["phase"] == label]
        return statistics.mean(values) / (os.cpu_count() or 1) if values else None

    extra = {key.split("_")[0]: round(cpu_share("B", key) - cpu_share("A", key), 4)
             for key in ("server_cpu_s", "client_cpu_s") if cpu_share("A", key) is not None and cpu_share("B", key)}
    return {
        "train_ratio": train_ratio, "wall_ratio": round(b_wall / a_wall, 3) if a_wall and b_wall else None,
        "train_ratio_each_b": pairs, "extra_cpu_share_of_machine_with_clients": extra,
        "errors": sum(p["errors"] for p in loaded), "polls": sum(p["polls"] for p in loaded),
        "goal_met": train_ratio is not None and train_ratio <= GOAL_RATIO and not any(p["errors"] for p in loaded),
    }


def print_table(report: dict) -> None:
    print(f"\n{'phase':5} {'clients':>7} {'trials':>6} {'train s':>8} {'wall s':>7} {'server cpu':>10} "
          f"{'client cpu':>10} {'busy':>5} {'polls':>6} {'errors':>6} {'p50 ms':>7} {'p95 ms':>7} {'p99 ms':>7} "
          f"{'max ms':>7} {'events/stream':>13}")
    for p in report["phases"]:
        lat = p["poll_latency_ms"]
        spreads = [f"{e['min']}-{e['max']}" if e["min"] != e["max"] else str(e["min"])
                   for e in p["events_per_stream"].values()]
        events = "/".join(spreads) or "-"

        def fmt(v):
            return "-" if v is None else f"{v:.1f}"
        print(f"{p['phase']:5} {p['clients']:>7} {p['trials']:>6} {p['mean_train_s']:>8.2f} "
              f"{p['mean_sweep_wall_s']:>7.1f} {p['server_cpu_s']:>10.1f} {p['client_cpu_s']:>10.1f} "
              f"{p['machine_busy']:>5.2f} {p['polls']:>6} {p['errors']:>6} {fmt(lat['p50']):>7} {fmt(lat['p95']):>7} "
              f"{fmt(lat['p99']):>7} {fmt(lat['max']):>7} {events:>13}")
    s = report["summary"]
    print(f"\ntrials' mean train_seconds, B / A: {s['train_ratio']} (goal <= {GOAL_RATIO}); sweeps' wall time, "
          f"B / A: {s['wall_ratio']}; each B against the As beside it: {s['train_ratio_each_b']}; {s['polls']} polls "
          f"with clients, {s['errors']} errors; goal {'met' if s['goal_met'] else 'NOT met'}")
    extra = s["extra_cpu_share_of_machine_with_clients"]
    print(f"CPU the clients added, as a share of the machine's {os.cpu_count()} cores: the server "
          f"{extra.get('server', 0):.1%}, the clients themselves {extra.get('client', 0):.1%}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--order", default="ABA", help="the phases in order: A without clients, B with them")
    parser.add_argument("--clients", type=int, default=50)
    parser.add_argument("--trials", type=int, default=4, help="trials per sweep")
    parser.add_argument("--epochs", type=int, default=40)
    parser.add_argument("--timeout", type=float, default=900, help="seconds a phase may take")
    parser.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "service_load.json"))
    parser.add_argument("--keep", default=None, help="the server's output root (default: a temporary one, removed)")
    args = parser.parse_args()
    if set(args.order) - {"A", "B"}:
        parser.error(f"--order={args.order}: allowed are the letters A (no clients) and B (with clients)")
    report = {"machine": {"cpus": os.cpu_count(), "python": sys.version.split()[0]},
              "sweep": sweep_overrides(args.trials, args.epochs, 0)[:-1] + ["training.seed=<one per sweep>"],
              "order": args.order, "clients": args.clients, "phases": []}
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(args.keep or tmp) / "outputs"
        root.mkdir(parents=True)
        server = Server(root)
        try:
            for index, label in enumerate(args.order):
                phase = run_phase(server, label, args.clients if label == "B" else 0, [2 * index + 1, 2 * index + 2],
                                  args)
                report["phases"].append(phase)
                report["summary"] = summary(report["phases"])
                print(f"{label}: {json.dumps({k: v for k, v in phase.items() if k != 'train_seconds'})}", flush=True)
                Path(args.out).parent.mkdir(parents=True, exist_ok=True)
                Path(args.out).write_text(json.dumps(report, indent=2) + "\n")  # after each: a crash loses no phase
        finally:
            server.kill_sweeps()
            server.close()
    print_table(report)
    print(f"written to {args.out}")


if __name__ == "__main__":
    main()
