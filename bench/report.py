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
    ratio: bool = True  # False: a ratio between targets means nothing (the machine's load)


METRICS = [
    Metric("keepalive_rps", "HTTPS keep-alive", "req/s"),
    Metric("keepalive_p50_ms", "HTTPS keep-alive p50", "ms", False, "{:.1f}"),
    Metric("keepalive_p99_ms", "HTTPS keep-alive p99", "ms", False, "{:.1f}"),
    Metric("keepalive_cpu_us", "HTTPS keep-alive: target CPU per request", "µs", False),
    Metric("handshake_rps", "full TLS handshake, one request each", "req/s"),
    Metric("handshake_p99_ms", "full TLS handshake p99", "ms", False, "{:.1f}"),
    Metric("handshake_cpu_us", "full TLS handshake: target CPU per handshake", "µs", False),
    Metric("handshake_client_cpu_us", "full TLS handshake: client CPU per handshake", "µs", False),
    Metric("handshake_errors", "full TLS handshake: failed connections", "count", False),
    Metric("resumed_rps", "resumed TLS handshake (ticket offered), one request each", "req/s"),
    Metric("resumed_p99_ms", "resumed TLS handshake p99", "ms", False, "{:.1f}"),
    Metric("resumed_cpu_us", "resumed TLS handshake: target CPU per handshake", "µs", False),
    Metric("resumed_client_cpu_us", "resumed TLS handshake: client CPU per handshake", "µs", False),
    Metric("resumed_reused", "resumed TLS handshake: share of sessions the server resumed", "fraction", True,
           "{:.2f}"),
    Metric("echo_msgs", "Socket.IO WebSocket echo", "msgs/s"),
    Metric("echo_p99_ms", "Socket.IO WebSocket echo round trip p99", "ms", False, "{:.1f}"),
    Metric("echo_cpu_us", "Socket.IO WebSocket echo: target CPU per message", "µs", False),
    Metric("poll_msgs", "Socket.IO polling echo", "msgs/s"),
    Metric("poll_p99_ms", "Socket.IO polling echo round trip p99", "ms", False, "{:.1f}"),
    Metric("poll_cpu_us", "Socket.IO polling echo: target CPU per message", "µs", False),
    Metric("idle_rss_mb", "idle WebSocket clients: total RSS", "MB", False, "{:.1f}"),
    Metric("idle_kb_per_conn", "idle WebSocket clients: RSS per connection", "KB", False, "{:.1f}"),
    Metric("bcast_ms", "broadcast to every idle client", "ms", False, "{:.0f}"),
    Metric("storm_s", "reconnect storm: seconds until every client is back", "s", False, "{:.1f}"),
    Metric("storm_lost", "reconnect storm: clients that never came back", "count", False),
    Metric("load1", "the machine's 1-minute load average as the target started (2 cores)", "load", False,
           "{:.1f}", ratio=False),
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
    bound: float | None  # None: no bound, the ratio is stated
    mine: str = "monoport"

    def check(self, value: float) -> bool:
        if self.bound is None:
            return True
        higher = BY_KEY[self.key].higher_is_better if self.key in BY_KEY else True
        return value >= self.bound if higher else value <= self.bound


#: "bare gevent" in issue 13's goals is bare-nodelay: the same gevent stack without sniffing, Nagle off as
#: monoport (bare keeps gevent's default Nagle, whose delayed ACKs cap it near 1 000 req/s).
RATE_KEYS = ["keepalive_rps", "handshake_rps", "resumed_rps", "echo_msgs", "poll_msgs"]
CPU_KEYS = ["keepalive_cpu_us", "handshake_cpu_us", "resumed_cpu_us", "echo_cpu_us", "poll_cpu_us"]
GOALS = [
    *[Goal(f"{BY_KEY[k].label} ≥ 1.0× bare gevent", k, "bare-nodelay", 1.0) for k in RATE_KEYS],
    *[Goal(f"{BY_KEY[k].label} ≤ bare gevent's", k, "bare-nodelay", 1.0) for k in CPU_KEYS],
    Goal("Socket.IO WebSocket echo ≥ 1.0× uvicorn", "echo_msgs", "uvicorn", 1.0),
    Goal("Socket.IO polling echo ≥ 1.0× uvicorn", "poll_msgs", "uvicorn", 1.0),
    Goal("full handshakes ≥ 1.0× uvicorn", "handshake_rps", "uvicorn", 1.0),
    Goal("resumed handshakes ≥ 1.0× uvicorn", "resumed_rps", "uvicorn", 1.0),
    Goal("full-handshake CPU per handshake ≤ uvicorn's", "handshake_cpu_us", "uvicorn", 1.0),
    Goal("keep-alive p99 ≤ the classic stack's", "keepalive_p99_ms", "stack", 1.0),
    Goal("keep-alive p99 ≤ 2× uvicorn's", "keepalive_p99_ms", "uvicorn", 2.0),
    Goal("HTTPS keep-alive ≥ 0.5× uvicorn (Flask vs Starlette)", "keepalive_rps", "uvicorn", 0.5),
    Goal("HTTPS keep-alive, bare WSGI callable on monoport ÷ bare ASGI callable on uvicorn",
         "keepalive_rps", "uvicorn-hello", None, mine="monoport-hello"),
    Goal("≤ 60 KB RSS per idle TLS WebSocket", "idle_kb_per_conn", None, 60),
    Goal("broadcast to every idle client ≤ bare gevent's", "bcast_ms", "bare-nodelay", 1.0),
    Goal("reconnect storm: all back no later than bare gevent", "storm_s", "bare-nodelay", 1.0),
    Goal("reconnect storm: none lost", "storm_lost", None, 0),
]

#: the keep-alive split: server -> (bare callable in clear text, bare callable over TLS, the framework app)
SPLIT = {"monoport": ("monoport-hello-clear", "monoport-hello", "monoport"),
         "pywsgi (bare-nodelay)": ("pywsgi-hello-clear", "pywsgi-hello", "bare-nodelay"),
         "uvicorn": ("uvicorn-hello-clear", "uvicorn-hello", "uvicorn")}
SPLIT_TARGETS = {name for names in SPLIT.values() for name in names[:2]}


def main_targets(targets: list[str]) -> list[str]:
    """The targets of the big table (the split's bare-callable targets have their own)."""
    return [t for t in targets if t not in SPLIT_TARGETS]


def median(values: list[float]) -> float:
    values = [v for v in values if not math.isnan(v)]
    return statistics.median(values) if values else float("nan")


def paired_ratios(rounds: Rounds, key: str, other: str, me: str = "monoport") -> list[float]:
    """``me``'s value ÷ ``other``'s, round by round (interleaved rounds saw the same machine)."""
    mine, theirs = rounds.get(me, {}).get(key, []), rounds.get(other, {}).get(key, [])
    return [a / b for a, b in zip(mine, theirs) if b and not math.isnan(a) and not math.isnan(b)]


def _fmt(fmt: str, value: float) -> str:
    """A figure, or – when there is none (NaN: the target did not run that workload)."""
    return "–" if math.isnan(value) else fmt.format(value)


def _cell(values: list[float], fmt: str) -> str:
    if not values or math.isnan(median(values)):
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
        cells += [_ratio(paired_ratios(rounds, m.key, t)) if m.ratio else "–" for t in others]
        lines.append("| " + " | ".join(cells) + " |")
    return lines


def goal_lines(rounds: Rounds, raw_rounds: Rounds, capacity: dict[str, float]) -> list[str]:
    lines = ["| goal | measured | met |", "|---|---|---|"]
    for goal in GOALS:
        if goal.key == "max_clients":
            value = capacity.get("max_clients")
            shown = f"{value:.0f} of {capacity.get('max_tried', 0):.0f} tried" if value is not None else None
        elif goal.other is None:
            value = median(rounds.get(goal.mine, {}).get(goal.key, []))
            shown = None if math.isnan(value) else f"{value:.1f}"
        else:
            source = raw_rounds if goal.key.startswith("raw_") else rounds
            ratios = paired_ratios(source, goal.key, goal.other, goal.mine)
            value = median(ratios) if ratios else None
            shown = _ratio(ratios) if ratios else None
        if value is None or shown is None:
            lines.append(f"| {goal.text} | not measured | – |")
        else:
            verdict = "–" if goal.bound is None else ("yes" if goal.check(value) else "**no**")
            lines.append(f"| {goal.text} | {shown} | {verdict} |")
    return lines


#: one sentence per peer: how it is configured, and why (the summary and the README say the same)
PEERS = [
    "**monoport**: `python -m monoport --app bench.app:app` on one TLS port (it sniffs TLS, HTTP and Socket.IO "
    "there), one SSLContext built at start, Nagle off, warnings-only logging (the proxies log nothing per "
    "request either).",
    "**bare**: gevent.pywsgi's WSGIServer with gevent-websocket's handler serving the same app over TLS itself, "
    "given one `ssl_context` built at start as its users write it, with gevent's default Nagle on: it shows "
    "what delayed ACKs cost (pywsgi sends a response head and body in two writes).",
    "**bare-nodelay**: the same with TCP_NODELAY on accepted sockets, i.e. monoport's own gevent stack "
    "without sniffing: the \"bare gevent\" of the goals.",
    "**stack**: stunnel (TLS; its default session cache, OpenSSL's session tickets) → HAProxy (TCP frontend "
    "detecting HTTP, `path_beg /socket.io`, `http-server-close`, `forwardfor`) → a web and a Socket.IO gevent "
    "process with Nagle off, as gunicorn runs its workers.",
    "**nginx**: nginx terminating TLS with `ssl_session_cache shared:SSL:10m`, `ssl_session_timeout 1d` and "
    "its default session tickets (its documented HTTPS setup), one worker for the one CPU the target has, "
    "kept-alive upstreams → the same two gevent processes with Nagle off.",
    "**uvicorn**: `uvicorn bench.asgi_app:app --ssl-keyfile … --ssl-certfile …` from `uvicorn[standard]` "
    "(it picks uvloop, httptools and websockets itself), python-socketio's AsyncServer in ASGI mode + "
    "Starlette with the same routes and payloads, one SSLContext built at start, Nagle off (asyncio's "
    "default), warnings-only logging: what a Python developer picks today.",
]

METHOD = [
    "Every target serves the same routes (`/`, Socket.IO `echo` and `bcast`) with the same ECDSA P-256 "
    "certificate; all its processes are pinned to one CPU and the load generators (wrk for keep-alive, "
    "`bench/loadgen.py` for everything else) to the other, so a client never takes CPU from the server it "
    "measures. *CPU per operation* is the CPU time of all the target's processes (psutil) ÷ operations "
    "served: the machine's other load steals wall time from a target, hardly CPU time, so it is the steady "
    "figure. Ratios are monoport ÷ the other target, paired per interleaved round (below 1 is better for "
    "latency, CPU and memory).",
    "Handshakes come from `bench/loadgen.py` (gevent, waiting for readability; wrk busy-polls a pending "
    "handshake and cannot resume): each loop opens a TLS connection per `GET /` with `Connection: close`, "
    "offering no session (**full**) or the ticket its previous connection received (**resumed**; the share "
    "the server actually resumed is a row). OpenSSL 3's client spends about as much CPU per handshake as "
    "the servers do (a row shows it), so on one client CPU the handshake *rates* are bounded by the client "
    "for the faster servers: read the *CPU per handshake* rows to rank servers.",
]


def split_lines(rounds: Rounds) -> list[str]:
    """Where one HTTPS keep-alive request's CPU goes: TLS, the server itself, the framework."""
    if not any(rounds.get(names[0]) for names in SPLIT.values()):
        return []

    def cpu(target: str) -> float:
        return median(rounds.get(target, {}).get("keepalive_cpu_us", []))

    def rate(target: str) -> float:
        return median(rounds.get(target, {}).get("keepalive_rps", []))

    def fmt(value: float) -> str:
        return "–" if math.isnan(value) else f"{value:.0f}"

    servers = list(SPLIT)
    lines = ["| HTTPS keep-alive request, µs of target CPU | " + " | ".join(servers) + " |",
             "|---|" + "---|" * len(servers)]
    rows = [
        ("TLS (bare callable over TLS − in clear text)", lambda c, t, a: cpu(t) - cpu(c)),
        ("server: parse, own bookkeeping, WSGI/ASGI call (bare callable, clear text)", lambda c, t, a: cpu(c)),
        ("framework: Flask/Starlette + Socket.IO dispatch (the app − the bare callable, TLS)",
         lambda c, t, a: cpu(a) - cpu(t)),
        ("total: the app over TLS", lambda c, t, a: cpu(a)),
        ("req/s: bare callable in clear text", lambda c, t, a: rate(c)),
        ("req/s: bare callable over TLS", lambda c, t, a: rate(t)),
        ("req/s: the app over TLS", lambda c, t, a: rate(a)),
    ]
    for label, fn in rows:
        lines.append(f"| {label} | " + " | ".join(fmt(fn(*SPLIT[s])) for s in servers) + " |")
    own = cpu("monoport-hello-clear") - cpu("pywsgi-hello-clear")
    if not math.isnan(own):
        lines += ["", f"monoport's own work over pywsgi's on the same bare callable in clear text (sniffing, "
                  f"stats, metrics, deadlines, its router): {own:.0f} µs per request."]
    return lines


def write_summary(path: Path, info: dict[str, str], notes: list[str], rounds: Rounds, targets: list[str],
                  raw_rounds: Rounds, capacity: dict[str, float], failures: list[str], plots: list[str]) -> None:
    sio_metrics = [m for m in METRICS if not m.key.startswith("raw_")]
    raw_metrics = [m for m in METRICS if m.key.startswith("raw_")]
    lines = [
        "# monoport benchmark",
        "",
        f"- date: {info['date']}",
        f"- machine: {info['machine']} ({info['load']}; the machine is shared with other engineers' work)",
        f"- pinning: {info.get('pinning', 'none')}",
        f"- software: {info['software']}",
        f"- monoport commit: {info.get('commit', '?')}",
        f"- command: `{info['command']}`; wall time {info['wall']}",
        *[f"- {note}" for note in notes],
        "",
        "Cells are the median of the rounds (min–max in brackets); ratios are monoport's value divided by",
        "the other target's, paired per round.",
        "",
        *[f"- {p}" for p in PEERS],
        "",
        *METHOD[:1], "", *METHOD[1:],
        "",
        *table(rounds, main_targets(targets), sio_metrics),
        "",
    ]
    split = split_lines(rounds)
    if split:
        lines += ["## Where the time goes: one HTTPS keep-alive request", "",
                  "Bare callables (`bench/hello.py`: the same body, no framework) served by each server over "
                  "TLS and in clear text, beside the Flask and Starlette apps.", "", *split, ""]
    if raw_rounds:
        lines += ["## Raw TCP forwarding (monoport `--raw HOST:PORT` vs HAProxy TCP mode with `splice-auto`)", "",
                  *table(raw_rounds, ["monoport", "haproxy"], raw_metrics), ""]
    if capacity:
        lines += ["## Capacity of one monoport process", "",
                  f"{capacity['max_clients']:.0f} of {capacity['max_tried']:.0f} Socket.IO WebSocket clients "
                  f"({capacity['max_connected']:.0f} connected) received one broadcast in "
                  f"{capacity['max_bcast_ms']:.0f} ms; monoport's RSS {capacity['max_rss_mb']:.0f} MB, "
                  f"{capacity['max_kb_per_conn']:.1f} KB per connection.", ""]
    lines += ["## Goals (issue 13)", "", *goal_lines(rounds, raw_rounds, capacity), ""]
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
    colors = {"monoport": "#2b7bba", "stack": "#c44e52", "nginx": "#55a868", "bare": "#8172b2", "haproxy": "#c44e52",
              "uvicorn": "#dd8452"}
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
    ("throughput.png", "Throughput", RATE_KEYS, False),
    ("latency.png", "Latency (p99)",
     ["keepalive_p99_ms", "handshake_p99_ms", "resumed_p99_ms", "echo_p99_ms", "poll_p99_ms"], False),
    ("cpu.png", "CPU time of the target per operation (all its processes)", CPU_KEYS, False),
    ("memory.png", "Idle WebSocket clients", ["idle_rss_mb", "idle_kb_per_conn", "bcast_ms"], False),
    ("raw.png", "Raw TCP forwarding", ["raw_gbps", "raw_pingpong"], True),
]


def write_plots(out: Path, rounds: Rounds, targets: list[str], raw_rounds: Rounds) -> list[str]:
    made = []
    for name, title, keys, raw in PLOTS:
        source, names = (raw_rounds, ["monoport", "haproxy"]) if raw else (rounds, main_targets(targets))
        if plot(out / name, title, source, names, keys):
            made.append(name)
    return made


#: rows of the README's compact table (medians only; summary.md has the spread): CPU per operation beside
#: every rate
README_KEYS = ["keepalive_rps", "keepalive_cpu_us", "keepalive_p99_ms", "handshake_rps", "handshake_cpu_us",
               "resumed_rps", "resumed_cpu_us", "resumed_reused", "echo_msgs", "echo_cpu_us", "echo_p99_ms",
               "poll_msgs", "poll_cpu_us", "idle_kb_per_conn", "bcast_ms", "storm_s", "storm_lost", "load1"]

README_INTRO = """\
`make bench` (installs stunnel4, haproxy, nginx and wrk when missing)
serves the same small app (`/` and Socket.IO `echo`/`bcast`: Flask +
python-socketio on gevent in `bench/app.py`, its Starlette + AsyncServer
twin in `bench/asgi_app.py`) from six targets on one TLS port each, runs
every workload on every target in interleaved rounds, and writes
[bench/results/summary.md](bench/results/summary.md) (medians, min–max,
per-round paired ratios, the goals of issue 13) and the plots below. Each
peer runs as its users run it:"""


def readme_section(data: dict) -> str:
    """The README's ``## Performance`` section, from one run's results.json."""
    rounds, raw, info, cap = data["rounds"], data["raw"], data["info"], data["capacity"]
    targets = main_targets(data.get("targets") or list(rounds))
    others = [t for t in targets if t != "monoport"]
    n = max((len(v) for t in targets for v in rounds.get(t, {}).values()), default=0)
    lines = ["## Performance", "", README_INTRO, "", *[f"- {p}" for p in PEERS], "", *METHOD, "",
             f"Measured {info['date']} (commit {info.get('commit', '?')}) on {info['machine']}; {info['software']}; "
             f"{info.get('pinning', 'not pinned')}; {n} interleaved rounds, wall time {info['wall']}. The machine "
             f"is shared with other engineers' work ({info['load']}, the bench's own load generators included): "
             f"pinning keeps other load off the target's CPU only in part, so the ratios within this one run are "
             f"what we report, not the absolute rates.", "",
             "| metric | " + " | ".join(targets) + " | " + " | ".join(f"÷ {t}" for t in others) + " |",
             "|" + "---|" * (1 + len(targets) + len(others))]
    for key in README_KEYS:
        if not rounds.get("monoport", {}).get(key):
            continue
        m = BY_KEY[key]
        row = [f"{m.label} ({m.unit})"] + [_fmt(m.fmt, median(rounds.get(t, {}).get(key, []) or [math.nan]))
                                           for t in targets]
        row += [(f"{median(r):.2f}×" if m.ratio and (r := paired_ratios(rounds, key, t)) else "–") for t in others]
        lines.append("| " + " | ".join(row) + " |")
    split = split_lines(rounds)
    if split:
        lines += ["", "Where one HTTPS keep-alive request's CPU goes (bare callables from `bench/hello.py` served "
                  "beside the apps, over TLS and in clear text; differences of medians):", "", *split]
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
    met, missed, stated, unmeasured = [], [], [], []
    for goal, row in zip(GOALS, goal_lines(rounds, raw, cap)[2:]):
        measured, verdict = row.split(" | ")[1:3]
        figure = f"{goal.text}: {measured.split(' (')[0]}"
        if measured == "not measured":
            unmeasured.append(goal.text)
        elif goal.bound is None:
            stated.append(figure)
        else:
            (met if verdict.startswith("yes") else missed).append(figure)
    lines += ["Goals of issue 13 (\"bare gevent\" is bare-nodelay), met in this run: "
              + ("; ".join(met) or "none") + ".", "",
              "Missed: " + ("; ".join(missed) or "none") + ".", ""]
    if stated:
        lines += ["Stated: " + "; ".join(stated) + ".", ""]
    if unmeasured:
        lines += ["Not measured in this run: " + "; ".join(unmeasured) + ".", ""]
    return "\n".join(lines)


def update_readme(readme: Path, section: str) -> None:
    """Move the README's ``## Performance`` section to the end, rewritten as ``section``."""
    text = readme.read_text()
    start = text.find("\n## Performance\n")
    if start >= 0:
        end = text.find("\n## ", start + 1)
        text = text[: start + 1] + (text[end + 1:] if end >= 0 else "")
    readme.write_text(text.rstrip("\n") + "\n\n" + section.rstrip("\n") + "\n")
