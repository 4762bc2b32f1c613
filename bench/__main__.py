"""``python -m bench``: every workload on every target, interleaved, then the report.

Rounds are interleaved (round r runs the targets in an order rotated by r,
each started fresh and stopped by pid afterwards), so slow drifts of the
machine (other processes, thermal, page cache) hit every target alike.
Everything runs on this machine's loopback, the target's processes pinned to
one CPU and the load clients (this process and its children) to another.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import shutil
import sys
import tempfile
import time
import traceback
from pathlib import Path

from . import report, system
from .targets import DEFAULT_TARGETS, RAW_TARGETS, STORM_TARGETS, TARGETS, Env, Monoport, monoport_has_forward
from .workloads import QUICK, SIO_WORKLOADS, Scale, max_clients, raw, storm

RESULTS = Path(__file__).resolve().parent / "results"


def make_certs(tmp: Path) -> tuple[str, str]:
    import trustme

    # ECDSA P-256 for every target (trustme's default, said here so that a change of default shows)
    ca = trustme.CA(key_type=trustme.KeyType.ECDSA)
    leaf = ca.issue_cert("localhost", "127.0.0.1", key_type=trustme.KeyType.ECDSA)
    cert, key = tmp / "cert.pem", tmp / "key.pem"
    leaf.cert_chain_pems[0].write_to_path(str(cert))
    leaf.private_key_pem.write_to_path(str(key))
    return str(cert), str(key)


def say(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def rotated(names: list[str], r: int) -> list[str]:
    r %= len(names)
    return names[r:] + names[:r]


def run_rounds(env: Env, classes: dict, workloads: dict, rounds: int, scale: Scale,
               failures: list[str]) -> dict[str, dict[str, list[float]]]:
    results: dict[str, dict[str, list[float]]] = {name: {} for name in classes}
    for r in range(rounds):
        for name in rotated(list(classes), r):
            target = classes[name](name, env)
            # the machine's 1-minute load average as each target starts: how busy the shared machine was
            results[name].setdefault("load1", []).append(os.getloadavg()[0])
            try:
                target.start()
                for wname, workload in workloads.items():
                    if target.only is not None and wname not in target.only:
                        continue
                    started = time.monotonic()
                    try:
                        metrics = workload(target, scale)
                    except Exception as exc:  # one failed workload must not end the run
                        failures.append(f"round {r + 1}, {name}, {wname}: {type(exc).__name__}: {exc}")
                        say(f"  {name} {wname} FAILED: {exc}")
                        traceback.print_exc()
                        continue
                    for key, value in metrics.items():
                        results[name].setdefault(key, []).append(value)
                    shown = ", ".join(f"{k}={v:.4g}" for k, v in metrics.items())
                    say(f"round {r + 1} {name} {wname} ({time.monotonic() - started:.0f}s): {shown}")
            except Exception as exc:
                failures.append(f"round {r + 1}, {name}: {type(exc).__name__}: {exc}")
                say(f"  {name} FAILED: {exc}")
            finally:
                target.stop()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=2, help="interleaved rounds (default 2)")
    parser.add_argument("--quick", action="store_true", help="a short smoke run (seconds, not minutes)")
    parser.add_argument("--targets", default=",".join(DEFAULT_TARGETS),
                        help="comma-separated, of " + ",".join(TARGETS) + " (default: all but monoport-w2)")
    parser.add_argument("--workloads", default=",".join(SIO_WORKLOADS) + ",raw,max,storm",
                        help="comma-separated subset of " + ",".join(SIO_WORKLOADS) + ",raw,max,storm")
    parser.add_argument("--storm-clients", type=int, default=None,
                        help=f"clients of the reconnect storm (default {Scale().storm_clients}, "
                             f"{QUICK.storm_clients} with --quick)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="where summary.md and the plots go")
    parser.add_argument("--keep", action="store_true", help="keep the scratch directory (configs, logs)")
    parser.add_argument("--report-only", action="store_true", help="redraw summary.md and plots from results.json")
    parser.add_argument("--update-readme", action="store_true",
                        help="also rewrite README.md's Performance section from the results")
    args = parser.parse_args(argv)
    if args.report_only:
        write_report(args.out, args.update_readme)
        return 0

    began = time.monotonic()
    system.ensure_packages()
    clients_cpus, target_cpus = system.pin_self()
    info = system.machine()
    info["pinning"] = (f"targets on CPU {','.join(map(str, sorted(target_cpus)))}, load generators on CPU "
                       f"{','.join(map(str, sorted(clients_cpus)))}"
                       + (" (one CPU only: not separated)" if clients_cpus == target_cpus else ""))
    scale = QUICK if args.quick else Scale()
    if args.storm_clients:
        scale = dataclasses.replace(scale, storm_clients=args.storm_clients)
    chosen = args.workloads.split(",")
    targets = {n: TARGETS[n] for n in args.targets.split(",")}
    tmp = Path(tempfile.mkdtemp(prefix="monoport-bench-"))
    env = Env(tmp, *make_certs(tmp), cpus=target_cpus)
    failures: list[str] = []
    say(f"bench: {args.rounds} rounds, targets {', '.join(targets)}, scratch {tmp}")
    try:
        workloads = {k: v for k, v in SIO_WORKLOADS.items() if k in chosen}
        rounds = run_rounds(env, targets, workloads, args.rounds, scale, failures) if workloads else {}
        raw_rounds: dict = {}
        if "raw" in chosen:
            if monoport_has_forward(env):
                raw_rounds = run_rounds(env, RAW_TARGETS, {"raw": raw}, args.rounds, scale, failures)
            else:
                failures.append("raw: this monoport has no --raw HOST:PORT forwarding yet (row left out)")
        if "storm" in chosen:
            # one round (it is long): monoport drains to a peer, bare-nodelay and uvicorn restart
            storm_classes = {n: c for n, c in STORM_TARGETS.items() if n in targets}
            for name, found in run_rounds(env, storm_classes, {"storm": storm}, 1, scale, failures).items():
                rounds.setdefault(name, {}).update({k: v for k, v in found.items() if k != "load1"})
        capacity: dict = {}
        if "max" in chosen:
            found = run_rounds(env, {"monoport": Monoport}, {"max": max_clients}, 1, scale, failures)["monoport"]
            capacity = {k: v[0] for k, v in found.items()}
    finally:
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    minutes, seconds = divmod(int(time.monotonic() - began), 60)
    info["wall"] = f"{minutes} min {seconds} s"
    info["load"] += "; at the end: " + " ".join(f"{x:.2f}" for x in os.getloadavg())
    info["command"] = "make bench" + (f" BENCH_ARGS='{' '.join(argv or sys.argv[1:])}'" if (argv or sys.argv[1:]) else "")
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "results.json").write_text(json.dumps(
        {"info": info, "scale": scale.__dict__, "rounds": rounds, "raw": raw_rounds, "capacity": capacity,
         "failures": failures, "targets": list(targets), "notes": [f"{args.rounds} interleaved rounds; scale: "
                                                                    f"{scale_note(scale)}", *NOTES]}, indent=1))
    write_report(args.out, args.update_readme)
    say(f"bench: wrote {args.out / 'summary.md'} in {info['wall']}")
    return 0


NOTES = ["monoport runs with `--log-level warning` (its one line per connection is INFO; the proxies here "
         "log nothing per request either)."]


def write_report(out: Path, update_readme: bool = False) -> None:
    """summary.md and the plots from results.json (``--report-only`` redraws them without measuring)."""
    data = json.loads((out / "results.json").read_text())
    targets = data.get("targets") or list(data["rounds"])
    plots = report.write_plots(out, data["rounds"], targets, data["raw"])
    report.write_summary(out / "summary.md", data["info"], data["notes"], data["rounds"], targets, data["raw"],
                         data["capacity"], data["failures"], plots)
    if update_readme:
        report.update_readme(Path(__file__).resolve().parent.parent / "README.md", report.readme_section(data))


def scale_note(s: Scale) -> str:
    return (f"keep-alive: wrk 1 thread, {s.wrk_connections} connections, {s.wrk_seconds:g} s; handshakes "
            f"(full, resumed): {s.handshake_connections} loops of one TLS connection per `Connection: close` "
            f"request in {s.loadgen_procs} bench/loadgen.py processes, {s.wrk_seconds:g} s each; Socket.IO echo {s.echo_clients} WebSocket clients "
            f"and polling echo {s.poll_clients} clients, {s.echo_seconds:g} s each, from {s.loadgen_procs} "
            f"load-generator processes (back to back, one message in flight per client); {s.idle_clients} idle "
            f"clients, {s.broadcasts} broadcasts; raw TCP {s.raw_seconds:g} s per direction test; "
            f"capacity probe up to {s.max_clients} clients; reconnect storm of {s.storm_clients} WebSocket "
            f"clients from {s.storm_procs} processes, one round.")


if __name__ == "__main__":
    sys.exit(main())
