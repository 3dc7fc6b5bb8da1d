"""Markdown tables from ``bench/results.json`` (for docs/PERFORMANCE.md).

.venv/bin/python bench/report.py [bench/results.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SCENARIOS = (
    "token_client_credentials",
    "token_code_exchange",
    "call_get",
    "call_list",
    "call_create_end",
    "call_at_limit",
    "jwks",
)


def f(value: Any, digits: int = 0) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def rows(results: dict[str, Any], items: list[tuple[str, dict[str, Any]]]) -> list[str]:
    out = [
        "| scenario | req/s | p50 ms | p95 ms | p99 ms | errors | ×flask | ×pg | RSS MB/worker "
        "| CPU ms/req (app + PostgreSQL) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in items:
        cpu = (
            f"{f(r.get('cpu_ms_per_req'), 2)} ({f(r.get('app_cpu_ms_per_req'), 2)} + "
            f"{f(r.get('db_cpu_ms_per_req'), 2)})"
            if r.get("db_cpu_ms_per_req") is not None
            else f(r.get("cpu_ms_per_req", r.get("app_cpu_ms_per_req")), 2)
        )
        note = ""
        if name.startswith("call_create_end"):
            note = f" ({f(r.get('pairs_per_s'), 0)} pairs/s)"
        if name.startswith("call_at_limit"):
            note = f" ({r.get('expected_409')} × 409)"
        out.append(
            f"| {name}{note} | {f(r['rps'], 0)} | {f(r['p50_ms'], 1)} | {f(r['p95_ms'], 1)} | "
            f"{f(r['p99_ms'], 1)} | {f(r['errors'])} | {f(r['ratio_flask'], 2)} | "
            f"{f(r['ratio_pg'], 2)} | {f(r['rss_mb'], 0)} | {cpu} |"
        )
    return out


def lifecycle_rows(life: dict[str, Any]) -> list[str]:
    """The ``lifecycle`` scenario: delivery, latency, the outbox's cost, the drain."""
    cfg, st = life["settings"], life["steady"]
    lat = st["latency_ms"]
    out = [
        "",
        f"Lifecycle: {cfg['calls_at_once']} calls at once to the simulator's answering number "
        f"(rings {cfg['simulator_ring_s']:g} s, talks {cfg['simulator_talk_s']:g} s) for "
        f"{cfg['seconds']} s, {cfg['webhook_workers']} webhook worker(s):",
        "",
        "| measure | value |",
        "|---|---:|",
        f"| calls / events delivered | {st['calls']} / {st['events']} |",
        f"| events/s delivered (calls/s) | {f(st['events_per_s'], 0)} "
        f"({f(st['calls_per_s'], 1)}) |",
        f"| transition → webhook received, p50 / p95 / p99 / max | {f(lat['p50'], 0)} / "
        f"{f(lat['p95'], 0)} / {f(lat['p99'], 0)} / {f(lat['max'], 0)} ms |",
        f"| worker CPU per event | {st['worker_cpu_ms_per_event']} ms |",
        f"| every event once, verified, in order | {'yes' if st['check']['ok'] else '**no**'} |",
    ]
    box = life.get("outbox")
    if box:
        out += [
            f"| POST+PUT req/s with / without the outbox (×) | {f(box['rps_with'], 0)} / "
            f"{f(box['rps_without'], 0)} (×{f(box.get('throughput_ratio'), 2)}) |",
            f"| POST+PUT p50 / p99 with vs without | {f(box['p50_ms_with'], 1)} / "
            f"{f(box['p99_ms_with'], 1)} vs {f(box['p50_ms_without'], 1)} / "
            f"{f(box['p99_ms_without'], 1)} ms |",
            f"| CPU per request, app + PostgreSQL, with vs without | "
            f"{f(box['cpu_ms_per_req_with'], 2)} vs {f(box['cpu_ms_per_req_without'], 2)} ms |",
            f"| pgbench of the same SQL, with / without (×) | {f(box['pgbench_tps_with'], 0)} / "
            f"{f(box['pgbench_tps_without'], 0)} tps (×{f(box['pgbench_ratio'], 2)}) |",
        ]
    drain = life.get("drain")
    if drain and drain.get("events_per_s") is not None:
        out.append(
            f"| drain of a backlog: delivered / pending, seconds, events/s | "
            f"{drain['delivered']} / {drain['backlog']}, {drain['seconds']} s, "
            f"{f(drain['events_per_s'], 0)} |"
        )
    return out


def main() -> int:
    path = Path(sys.argv[1] if len(sys.argv) > 1 else Path(__file__).parent / "results.json")
    results = json.loads(path.read_text())
    m = results["machine"]
    st = m["settings"]
    print(
        f"Machine: {m['cores']} × {m['cpu']}, {m['memory_gb']} GB, kernel {m['kernel']}, "
        f"Python {m['python']}, gunicorn {m['gunicorn']}; load average "
        f"{m['load_average_at_start'][0]} at the start, {m.get('load_average_at_end', ['?'])[0]}"
        f" at the end; {m.get('wall_time_s')} s in all.\n"
        f"Settings: {st['workers_per_service']} workers × {st['threads_per_worker']} threads "
        f"({st['worker_class']}) per service, {st['connections']} connections, "
        f"{st['duration_s']} s per run after {st['warmup_s']} s of warm-up, pgbench "
        f"{st['pgbench_clients']} clients{' (QUICK)' if st['quick'] else ''}.\n"
    )
    b = results["baselines"]
    fl = b["flask"]
    print("| baseline | throughput | latency | errors | RSS MB/worker | CPU ms/req |")
    print("|---|---:|---|---:|---:|---:|")
    print(
        f"| (a) bare Flask, GET /ping | {f(fl['rps'], 0)} req/s | p50 {f(fl['p50_ms'], 1)} / "
        f"p95 {f(fl['p95_ms'], 1)} / p99 {f(fl['p99_ms'], 1)} ms | {fl['errors']} | "
        f"{f(fl['rss_mb'], 0)} | {f(fl.get('app_cpu_ms_per_req'), 2)} |"
    )
    for key, label in (
        ("call_create_end", "(b) pgbench, SQL of POST+PUT"),
        ("call_at_limit", "(b') pgbench, SQL of a refused POST, one user"),
    ):
        pg = b["pgbench"][key]
        print(
            f"| {label} | {f(pg['tps'], 0)} tps | avg {f(pg['latency_avg_ms'], 1)} ms "
            f"({pg['clients']} clients) | {pg['failed']} | – | – |"
        )
    print()
    items = [(n, results["scenarios"][n]) for n in SCENARIOS if n in results["scenarios"]]
    print("\n".join(rows(results, items)))
    nginx = results.get("proxy", {}).get("nginx")
    if nginx:
        print(
            f"\nThrough nginx, {nginx['workers_per_replica']} worker(s) × "
            f"{nginx['threads_per_worker']} threads per replica:\n"
        )
        items = [(f"{n} ×{k}", r) for k in ("1", "2") for n, r in nginx["replicas"][k].items()]
        print("\n".join(rows(results, items)))
        print(
            "\nScaling 1 → 2 replicas (req/s): "
            + ", ".join(f"{n} {f(v, 2)}×" for n, v in nginx["scaling"].items())
        )
    elif "proxy" in results:
        print(f"\nnginx part skipped: {results['proxy'].get('skipped')}")
    life = results.get("lifecycle")
    if life and "steady" in life:
        print("\n".join(lifecycle_rows(life)))
    print("\n| target | value | met |\n|---|---|---|")
    for t in results.get("targets", []):
        print(f"| {t['target']} | {t['value']} | {'yes' if t['met'] else '**no**'} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
