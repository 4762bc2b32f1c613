"""``<admin-prefix>/stats``: the snapshot as an HTML page, in the spirit of HAProxy's.

One table per section, a colour band per table header as HAProxy draws
them, a ``<meta http-equiv=refresh>`` every :data:`REFRESH` seconds, and no
script, no external asset: it is read at 3 a.m. on a phone, through a
tunnel. Everything shown comes from :meth:`Stats.snapshot` (read-only view);
every value is HTML-escaped.
"""

from __future__ import annotations

import html
import time
from typing import Any, Iterable

from .stats import peer_up

#: seconds between automatic reloads of the page
REFRESH = 5

STYLE = """
body{font:13px/1.35 system-ui,-apple-system,"Segoe UI",sans-serif;margin:0;background:#f4f4f4;color:#111}
header{background:#2b3f56;color:#fff;padding:8px 12px}
header h1{font-size:17px;margin:0}header p{margin:2px 0 0;font-size:12px;opacity:.85}
main{padding:8px;display:grid;gap:10px;grid-template-columns:repeat(auto-fit,minmax(320px,1fr))}
section{background:#fff;border:1px solid #bbb;overflow-x:auto}
section.wide{grid-column:1/-1}
h2{font-size:13px;margin:0;padding:4px 8px;background:#c7d8ea;border-bottom:1px solid #9ab}
table{border-collapse:collapse;width:100%}
th,td{padding:3px 8px;border-bottom:1px solid #e3e3e3;text-align:left;white-space:nowrap}
th{background:#eef2f6;font-weight:600}
td.n{text-align:right;font-variant-numeric:tabular-nums}
tr.up td:first-child{border-left:4px solid #3a3}tr.down td:first-child{border-left:4px solid #c33}
.empty{padding:6px 8px;color:#777}
.bad{color:#b00;font-weight:600}
"""


def _cell(value: Any) -> str:
    if isinstance(value, bool):
        text = "yes" if value else "no"
    elif value is None:
        text = "-"
    elif isinstance(value, float):
        text = f"{value:.3f}"
    else:
        text = str(value)
    numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
    return f'<td class="n">{html.escape(text)}</td>' if numeric else f"<td>{html.escape(text)}</td>"


def table(title: str, headers: Iterable[str], rows: Iterable[Iterable[Any]], wide: bool = False,
          row_classes: Iterable[str] | None = None) -> str:
    rows = [list(r) for r in rows]
    classes = list(row_classes or [""] * len(rows))
    head = "".join(f"<th>{html.escape(h)}</th>" for h in headers)
    if rows:
        body = "".join(
            f'<tr class="{cls}">' + "".join(_cell(v) for v in row) + "</tr>" for row, cls in zip(rows, classes)
        )
        content = f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"
    else:
        content = '<p class="empty">none</p>'
    return f'<section{" class=wide" if wide else ""}><h2>{html.escape(title)}</h2>{content}</section>'


def _duration(seconds: float) -> str:
    seconds = int(seconds)
    days, rest = divmod(seconds, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{secs:02d}"


def _mean(hist: dict[str, Any]) -> float | None:
    return hist["sum"] / hist["count"] if hist["count"] else None


def render(snap: dict[str, Any], environ: dict | None = None) -> bytes:
    conns, tls, sio = snap["connections"], snap["tls"], snap["socketio"]
    sections = [
        table("Instance", ("field", "value"), [
            ("instance id", snap["id"]), ("cluster", snap["cluster"]), ("version", snap["version"]),
            ("uptime", _duration(snap["uptime"])), ("ready", snap["ready"]), ("draining", snap["draining"]),
            ("connections / max", f"{conns['live']} / {snap['max_conns'] if snap['max_conns'] is not None else '∞'}"),
            ("event-loop lag (last / max, ms)",
             f"{snap['event_loop']['lag'] * 1000:.1f} / {snap['event_loop']['lag_max'] * 1000:.1f}"),
            ("Socket.IO sessions", sio["sessions"]), ("Socket.IO rooms", sio["rooms"]),
            ("bytes in / out", f"{snap['bytes']['in']} / {snap['bytes']['out']}"),
        ]),
        table("Connections now, by kind", ("kind", "open"),
              list(conns["by_kind"].items()) + [("forwarded in", conns["forwarded_in_live"]),
                                                ("forwarded out", conns["forwarded_out_live"])]),
        table("Connections ended, by termination", ("termination", "count"),
              [(reason, n) for reason, n in conns["terminations"].items() if n]
              + [("total opened", conns["opened_total"])]),
        table("Connections ended, by kind", ("kind", "tls", "termination", "count"),
              [(r["kind"], r["tls"], r["termination"], r["count"]) for r in conns["closed"]]),
        table("TLS handshakes", ("outcome", "count"),
              list(tls["handshakes"].items()) + [(f"version {v}", n) for v, n in tls["versions"].items()]
              + ([("mean time (s)", _mean(tls["seconds"]))] if tls["seconds"]["count"] else [])),
        table("HTTP requests", ("transport", "tls", "status", "count"),
              [(r["transport"], r["tls"], r["status"], r["count"]) for r in snap["http"]["requests"]]),
        table("Sniffed as", ("outcome", "count"), snap["sniff"].items()),
        table("Errors", ("reason", "count"), snap["errors"].items()),
        _peers(snap["peers"]),
        *_acme(snap.get("extra", {}).get("acme")),
        _recovery(snap["extra"].get("recovery")),
        table("Socket.IO namespaces", ("namespace", "clients", "rooms"),
              [(ns, v["clients"], v["rooms"]) for ns, v in sio["namespaces"].items()]),
        table("Clients connected now", ("client", "kind", "tls", "sni", "age (s)", "requests", "bytes in",
                                        "bytes out", "served by", "forwarded by"),
              [(c["client"], c["kind"], c["tls"], c["sni"], c["age"], c["requests"], c["bytes_in"], c["bytes_out"],
                c["served_by"], c["forwarded_by"]) for c in conns["clients"]], wide=True),
    ]
    now = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    page = (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        f'<meta http-equiv="refresh" content="{REFRESH}">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>monoport {html.escape(snap['id'])} stats</title><style>{STYLE}</style></head><body>"
        f"<header><h1>monoport · instance {html.escape(snap['id'])}</h1>"
        f"<p>{html.escape(now)} · refreshes every {REFRESH}s · "
        f'<a style="color:#fff" href="stats.json">json</a> · <a style="color:#fff" href="metrics">metrics</a></p></header>'
        f"<main>{''.join(sections)}</main></body></html>"
    )
    return page.encode("utf-8")


def _acme(certs: list[dict[str, Any]] | None) -> list[str]:
    if certs is None:
        return []
    rows = [(", ".join(c["names"]), c["issuer"], c["not_after"], c["renew_in"], c["failures"], c["last_error"])
            for c in certs]
    classes = ["down" if c["failures"] else "up" for c in certs]
    return [table("ACME certificates", ("names", "issuer", "not after", "renewal in (s)", "failed attempts",
                                        "last error"), rows, wide=True, row_classes=classes)]


def _recovery(rec: dict[str, Any] | None) -> str:
    """Connection state recovery (--recovery): nothing when it is off."""
    if rec is None:
        return ""
    return table("Socket.IO recovery", ("field", "count"), [
        ("recovered", rec["recovered"]), ("packets replayed", rec["replayed"]),
        ("sessions kept after a lost transport", rec["kept"]), ("sockets connected with a pid", rec["live"]),
        ("failed (fresh session)", rec["failed"]),
    ] + [(f"failed: {why}", n) for why, n in rec["failures"].items()])


def _peers(peers: dict[str, dict[str, Any]]) -> str:
    columns = sorted({key for info in peers.values() for key in info if key not in ("healthy", "up", "id")})
    rows = [[name, "UP" if peer_up(info) else "DOWN"] + [info.get(c) for c in columns]
            for name, info in peers.items()]
    classes = ["up" if peer_up(info) else "down" for info in peers.values()]
    return table("Peers", ["peer", "state"] + columns, rows, wide=True, row_classes=classes)
