"""From per-round measurements to ``summary.md`` and PNG plots.

Ratios are monoport's value divided by the other target's, computed per
round (rounds are interleaved, so each round's targets saw the same machine
noise) and summarised by their median and min-max spread. For a metric where
lower is better (latency, memory) a ratio below 1 favours monoport.
"""

from __future__ import annotations

import math
import statistics
from dataclasses import dataclass
from pathlib import Path

Rounds = dict[str, dict[str, list[float]]]  # target -> metric -> one value per round


@dataclass(frozen=True)
class Metric:
    key: str
    label: str
    unit: str
    higher_is_better: bool = True
    fmt: str = "{:.0f}"


METRICS = [
    Metric("keepalive_rps", "HTTPS keep-alive", "req/s"),
    Metric("keepalive_p50_ms", "HTTPS keep-alive p50", "ms", False, "{:.1f}"),
    Metric("keepalive_p99_ms", "HTTPS keep-alive p99", "ms", False, "{:.1f}"),
    Metric("keepalive_cpu_us", "HTTPS keep-alive: target CPU per request", "µs", False),
    Metric("handshake_rps", "HTTPS full handshake per request", "req/s"),
    Metric("handshake_p99_ms", "HTTPS full handshake p99", "ms", False, "{:.1f}"),
    Metric("handshake_cpu_us", "HTTPS full handshake: target CPU per request", "µs", False),
    Metric("handshake_errors", "HTTPS full handshake: wrk socket errors", "count", False),
    Metric("echo_msgs", "Socket.IO WebSocket echo", "msgs/s"),
    Metric("echo_p99_ms", "Socket.IO WebSocket echo round trip p99", "ms", False, "{:.1f}"),
    Metric("echo_cpu_us", "Socket.IO WebSocket echo: target CPU per message", "µs", False),
    Metric("poll_msgs", "Socket.IO polling echo", "msgs/s"),
    Metric("poll_p99_ms", "Socket.IO polling echo round trip p99", "ms", False, "{:.1f}"),
    Metric("poll_cpu_us", "Socket.IO polling echo: target CPU per message", "µs", False),
    Metric("idle_rss_mb", "idle WebSocket clients: total RSS", "MB", False, "{:.1f}"),
    Metric("idle_kb_per_conn", "idle WebSocket clients: RSS per connection", "KB", False, "{:.1f}"),
    Metric("bcast_ms", "broadcast to every idle client", "ms", False, "{:.0f}"),
    Metric("raw_gbps", "raw TCP forwarding, one stream", "Gbit/s", True, "{:.2f}"),
    Metric("raw_pingpong", "raw TCP 64-byte ping-pong", "round trips/s"),
    Metric("raw_pingpong_cpu_us", "raw TCP ping-pong: forwarder CPU per round trip", "µs", False),
]
BY_KEY = {m.key: m for m in METRICS}


@dataclass(frozen=True)
class Goal:
    text: str
    key: str
    other: str | None  # None: an absolute bound on monoport's own value
    bound: float

    def check(self, value: float) -> bool:
        higher = BY_KEY[self.key].higher_is_better if self.key in BY_KEY else True
        return value >= self.bound if higher else value <= self.bound


GOALS = [
    Goal("HTTPS keep-alive req/s ≥ 1.0× bare", "keepalive_rps", "bare", 1.0),
    Goal("HTTPS keep-alive req/s ≥ 0.9× nginx", "keepalive_rps", "nginx", 0.9),
    Goal("HTTPS keep-alive p99 ≤ 1.0× the stack's", "keepalive_p99_ms", "stack", 1.0),
    Goal("(floor) HTTPS keep-alive req/s ≥ 1.0× bare-nodelay", "keepalive_rps", "bare-nodelay", 1.0),
    Goal("(floor) keep-alive CPU per request ≤ 1.05× bare-nodelay's", "keepalive_cpu_us", "bare-nodelay", 1.05),
    Goal("full-handshake req/s ≥ 1.0× bare", "handshake_rps", "bare", 1.0),
    Goal("full-handshake req/s ≥ 1.5× the stack", "handshake_rps", "stack", 1.5),
    Goal("full-handshake req/s ≥ 0.9× nginx", "handshake_rps", "nginx", 0.9),
    Goal("(floor) full-handshake req/s ≥ 1.0× bare-nodelay", "handshake_rps", "bare-nodelay", 1.0),
    Goal("WebSocket echo msgs/s ≥ 0.95× bare", "echo_msgs", "bare", 0.95),
    Goal("WebSocket echo p99 ≤ 0.75× the stack's", "echo_p99_ms", "stack", 0.75),
    Goal("(floor) WebSocket echo CPU per message ≤ 1.05× bare-nodelay's", "echo_cpu_us", "bare-nodelay", 1.05),
    Goal("polling echo msgs/s ≥ 0.95× bare", "poll_msgs", "bare", 0.95),
    Goal("(floor) polling echo msgs/s ≥ 0.95× bare-nodelay", "poll_msgs", "bare-nodelay", 0.95),
    Goal("idle clients: total RSS ≤ 0.5× the stack's", "idle_rss_mb", "stack", 0.5),
    Goal("idle clients: ≤ 60 KB per connection", "idle_kb_per_conn", None, 60),
    Goal("raw forwarding throughput ≥ 0.9× HAProxy (splice)", "raw_gbps", "haproxy", 0.9),
    Goal("raw 64-byte ping-pong ≥ 0.8× HAProxy", "raw_pingpong", "haproxy", 0.8),
    Goal("10 000 concurrent WebSocket clients in one process", "max_clients", None, 10000),
]


def median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else float("nan")


def paired_ratios(rounds: Rounds, key: str, other: str) -> list[float]:
    mine, theirs = rounds.get("monoport", {}).get(key, []), rounds.get(other, {}).get(key, [])
    return [a / b for a, b in zip(mine, theirs) if b and not math.isnan(a) and not math.isnan(b)]


def _cell(values: list[float], fmt: str) -> str:
    if not values:
        return "–"
    text = fmt.format(median(values))
    if len(values) > 1:
        text += f" ({fmt.format(min(values))}–{fmt.format(max(values))})"
    return text


def _ratio(ratios: list[float]) -> str:
    if not ratios:
        return "–"
    text = f"{median(ratios):.2f}×"
    if len(ratios) > 1:
        text += f" ({min(ratios):.2f}–{max(ratios):.2f})"
    return text


def table(rounds: Rounds, targets: list[str], metrics: list[Metric]) -> list[str]:
    others = [t for t in targets if t != "monoport"]
    head = ["metric", *targets, *[f"monoport ÷ {t}" for t in others]]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for m in metrics:
        if not any(rounds.get(t, {}).get(m.key) for t in targets):
            continue
        cells = [f"{m.label} ({m.unit}, {'higher' if m.higher_is_better else 'lower'} is better)"]
        cells += [_cell(rounds.get(t, {}).get(m.key, []), m.fmt) for t in targets]
        cells += [_ratio(paired_ratios(rounds, m.key, t)) for t in others]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def goal_lines(rounds: Rounds, raw_rounds: Rounds, capacity: dict[str, float]) -> list[str]:
    lines = ["| goal | measured | met |", "|---|---|---|"]
    for goal in GOALS:
        if goal.key == "max_clients":
            value = capacity.get("max_clients")
            shown = f"{value:.0f} of {capacity.get('max_tried', 0):.0f} tried" if value is not None else None
        elif goal.other is None:
            value = median(rounds.get("monoport", {}).get(goal.key, []))
            shown = None if math.isnan(value) else f"{value:.1f}"
        else:
            source = raw_rounds if goal.key.startswith("raw_") else rounds
            ratios = paired_ratios(source, goal.key, goal.other)
            value = median(ratios) if ratios else None
            shown = _ratio(ratios) if ratios else None
        if value is None or shown is None:
            lines.append(f"| {goal.text} | not measured | – |")
        else:
            lines.append(f"| {goal.text} | {shown} | {'yes' if goal.check(value) else '**no**'} |")
    return lines


def write_summary(path: Path, info: dict[str, str], notes: list[str], rounds: Rounds, targets: list[str],
                  raw_rounds: Rounds, capacity: dict[str, float], failures: list[str], plots: list[str]) -> None:
    sio_metrics = [m for m in METRICS if not m.key.startswith("raw_")]
    raw_metrics = [m for m in METRICS if m.key.startswith("raw_")]
    lines = [
        "# monoport benchmark",
        "",
        f"- date: {info['date']}",
        f"- machine: {info['machine']} ({info['load']})",
        f"- software: {info['software']}",
        f"- monoport commit: {info.get('commit', '?')}",
        f"- command: `{info['command']}`; wall time {info['wall']}",
        *[f"- {note}" for note in notes],
        "",
        "Cells are the median of the rounds (min–max in brackets); ratios are monoport's value divided by",
        "the other target's, paired per round. Targets: **monoport** on one TLS port; **stack** = stunnel →",
        "HAProxy (TCP frontend, HTTP detection, `path_beg /socket.io`) → web and Socket.IO gevent processes;",
        "**nginx** → the same two processes; **bare** = one gevent process serving TLS itself;",
        "**bare-nodelay** = bare with Nagle off, as monoport runs: the true floor of monoport's overhead",
        "(gevent.pywsgi writes a response head and body in two sends, so with Nagle on each keep-alive",
        "response waits ~40 ms for a delayed ACK; this caps bare, and nginx's kept-alive upstreams, at",
        "~1 000 req/s, while the stack's `http-server-close` ends each backend response with a FIN instead).",
        "*CPU per request/message* is the CPU time of every process of the target divided by the operations",
        "served: it barely moves with the machine's other load, unlike wall-clock rates. Socket errors of",
        "bare targets on full handshakes are pywsgi closing after `Connection: close` without saying so",
        "(wrk then writes the next request into a closed connection); monoport answers `Connection: close`.",
        "",
        *table(rounds, targets, sio_metrics),
        "",
    ]
    if raw_rounds:
        lines += ["## Raw TCP forwarding (monoport `--raw HOST:PORT` vs HAProxy TCP mode with `splice-auto`)", "",
                  *table(raw_rounds, ["monoport", "haproxy"], raw_metrics), ""]
    if capacity:
        lines += ["## Capacity of one monoport process", "",
                  f"{capacity['max_clients']:.0f} of {capacity['max_tried']:.0f} Socket.IO WebSocket clients "
                  f"({capacity['max_connected']:.0f} connected) received one broadcast in "
                  f"{capacity['max_bcast_ms']:.0f} ms; monoport's RSS {capacity['max_rss_mb']:.0f} MB, "
                  f"{capacity['max_kb_per_conn']:.1f} KB per connection.", ""]
    lines += ["## Goals (issue #9)", "", *goal_lines(rounds, raw_rounds, capacity), ""]
    if failures:
        lines += ["## Failures", "", *[f"- {f}" for f in failures], ""]
    lines += ["## Plots", "", *[f"![{p}]({p})" for p in plots], ""]
    path.write_text("\n".join(lines))


def plot(path: Path, title: str, rounds: Rounds, targets: list[str], keys: list[str]) -> bool:
    """One bar chart per metric (median, whiskers min–max), side by side."""
    keys = [k for k in keys if any(rounds.get(t, {}).get(k) for t in targets)]
    if not keys:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(keys), figsize=(3.6 * len(keys), 3.4), squeeze=False)
    colors = {"monoport": "#2b7bba", "stack": "#c44e52", "nginx": "#55a868", "bare": "#8172b2", "haproxy": "#c44e52"}
    for ax, key in zip(axes[0], keys):
        m = BY_KEY[key]
        meds, lows, highs = [], [], []
        for t in targets:
            vals = rounds.get(t, {}).get(key) or [float("nan")]
            med = median(vals)
            meds.append(med)
            lows.append(med - min(vals))
            highs.append(max(vals) - med)
        ax.bar(targets, meds, yerr=[lows, highs], capsize=4, color=[colors.get(t, "gray") for t in targets])
        ax.set_title(f"{m.label}\n({m.unit}, {'higher' if m.higher_is_better else 'lower'} is better)", fontsize=9)
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return True


#: file, title, metrics, raw (monoport vs HAProxy) or the four app targets
PLOTS = [
    ("throughput.png", "Throughput", ["keepalive_rps", "handshake_rps", "echo_msgs", "poll_msgs"], False),
    ("latency.png", "Latency (p99)", ["keepalive_p99_ms", "handshake_p99_ms", "echo_p99_ms", "poll_p99_ms"], False),
    ("cpu.png", "CPU time of the target per operation (all its processes)",
     ["keepalive_cpu_us", "handshake_cpu_us", "echo_cpu_us", "poll_cpu_us"], False),
    ("memory.png", "Idle WebSocket clients", ["idle_rss_mb", "idle_kb_per_conn", "bcast_ms"], False),
    ("raw.png", "Raw TCP forwarding", ["raw_gbps", "raw_pingpong"], True),
]


def write_plots(out: Path, rounds: Rounds, targets: list[str], raw_rounds: Rounds) -> list[str]:
    made = []
    for name, title, keys, raw in PLOTS:
        source, names = (raw_rounds, ["monoport", "haproxy"]) if raw else (rounds, targets)
        if plot(out / name, title, source, names, keys):
            made.append(name)
    return made


#: rows of the README's compact table (medians only; summary.md has the spread)
README_KEYS = ["keepalive_rps", "keepalive_p99_ms", "keepalive_cpu_us", "handshake_rps", "handshake_cpu_us",
               "echo_msgs", "echo_p99_ms", "echo_cpu_us", "poll_msgs", "poll_cpu_us", "idle_rss_mb",
               "idle_kb_per_conn", "bcast_ms"]

README_INTRO = """\
`make bench` (about 13 minutes; installs stunnel4, haproxy, nginx and wrk
when missing) serves one Flask + python-socketio app on gevent
(`bench/app.py`) from five targets on one TLS port each, runs every
workload on every target in interleaved rounds, and writes
[bench/results/summary.md](bench/results/summary.md) (medians, min–max,
per-round paired ratios, the goals of issue #9) and the plots below.
Targets: **monoport**; **stack** = stunnel → HAProxy (TCP frontend, HTTP
detection, `path_beg /socket.io`, `http-server-close`, `forwardfor`) → a
web and a Socket.IO gevent process; **nginx** → the same two processes;
**bare** = one gevent.pywsgi process serving TLS itself; **bare-nodelay** =
bare with Nagle off, as monoport runs (the floor of monoport's own cost:
pywsgi sends a response head and body in two writes, so with Nagle on each
keep-alive response waits ~40 ms for a delayed ACK). The load clients (wrk,
and `bench/loadgen.py`, a hand-written gevent Engine.IO client in 2–8
processes) share the cores with the target, so wall-clock rates move with
the machine's other load; the *CPU per operation* rows (CPU time of all the
target's processes ÷ operations served) are the steady ones. Ratios are
monoport ÷ the other target (below 1 is better for latency, CPU, memory)."""


def readme_section(data: dict) -> str:
    """The README's ``## Performance`` section, from one run's results.json."""
    rounds, raw, info, cap = data["rounds"], data["raw"], data["info"], data["capacity"]
    targets = data.get("targets") or list(rounds)
    others = [t for t in targets if t != "monoport"]
    n = max((len(v) for per in rounds.values() for v in per.values()), default=0)
    lines = ["## Performance", "", README_INTRO, "",
             f"Measured {info['date']} (commit {info.get('commit', '?')}) on {info['machine']}; {info['software']}; "
             f"{info['load']}; "
             f"{n} rounds, wall time {info['wall']}.", "",
             "| metric | " + " | ".join(targets) + " | " + " | ".join(f"÷ {t}" for t in others) + " |",
             "|" + "---|" * (1 + len(targets) + len(others))]
    for key in README_KEYS:
        if not rounds.get("monoport", {}).get(key):
            continue
        m = BY_KEY[key]
        row = [f"{m.label} ({m.unit})"] + [m.fmt.format(median(rounds.get(t, {}).get(key, []) or [math.nan]))
                                           for t in targets]
        row += [(f"{median(r):.2f}×" if (r := paired_ratios(rounds, key, t)) else "–") for t in others]
        lines.append("| " + " | ".join(row) + " |")
    if raw:
        lines += ["", "| raw TCP: monoport `--raw HOST:PORT` vs HAProxy `mode tcp` + `splice-auto` | monoport | "
                  "HAProxy | ratio |", "|---|---|---|---|"]
        for key in ("raw_gbps", "raw_pingpong", "raw_pingpong_cpu_us"):
            m = BY_KEY[key]
            lines.append(f"| {m.label} ({m.unit}) | {m.fmt.format(median(raw['monoport'][key]))} | "
                         f"{m.fmt.format(median(raw['haproxy'][key]))} | "
                         f"{median(paired_ratios(raw, key, 'haproxy')):.2f}× |")
    if cap:
        lines += ["", f"One monoport process held **{cap['max_clients']:.0f} of {cap['max_tried']:.0f}** Socket.IO "
                  f"WebSocket clients over TLS ({cap['max_rss_mb']:.0f} MB RSS, {cap['max_kb_per_conn']:.1f} KB per "
                  f"connection) and broadcast to all of them in {cap['max_bcast_ms'] / 1000:.1f} s."]
    lines += ["", *[f"![{name[:-4]}](bench/results/{name})" for name, *_ in PLOTS], ""]
    met, missed = [], []
    for goal in GOALS:
        row = goal_lines(rounds, raw, cap)[2 + GOALS.index(goal)]
        measured, verdict = row.split(" | ")[1:3]
        if measured != "not measured":
            (met if verdict.startswith("yes") else missed).append(f"{goal.text}: {measured.split(' (')[0]}")
    lines += ["Goals of issue #9 met in this run: " + "; ".join(met) + ".", "",
              "Missed: " + ("; ".join(missed) if missed else "none") + " (the spread of every figure is in "
              "summary.md).", ""]
    return "\n".join(lines)


def update_readme(readme: Path, section: str) -> None:
    """Move the README's ``## Performance`` section to the end, rewritten as ``section``."""
    text = readme.read_text()
    start = text.find("\n## Performance\n")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[: start + 1] + (text[end + 1:] if end >= 0 else "")
    readme.write_text(text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n")
