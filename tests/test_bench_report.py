"""The bench's pure pieces: wrk's report parsed, CPU per operation, pinning, the keep-alive split, goals."""

import math

from bench import report, system
from bench.workloads import cpu_per_op_us, loop_metrics, parse_wrk, storm_metrics

WRK = """\
Running 6s test @ https://127.0.0.1:4443/
  1 threads and 50 connections
  Thread Stats   Avg      Stdev     Max   +/- Stdev
    Latency    13.10ms    5.01ms  119.40ms   90.00%
  Latency Distribution
     50%   12.10ms
     75%   14.00ms
     90%   16.00ms
     99%  850.00us
  23052 requests in 6.00s, 3.50MB read
  Socket errors: connect 0, read 3, write 2, timeout 1
  Non-2xx or 3xx responses: 4
Requests/sec:   3842.00
Transfer/sec:    597.00KB
"""


def test_wrk_report_gives_rate_requests_percentiles_in_ms_and_every_error():
    found = parse_wrk(WRK)
    assert found == {"rps": 3842.0, "requests": 23052, "p50_ms": 12.1, "p99_ms": 0.85, "errors": 10}


def test_cpu_per_operation_is_in_microseconds_and_nan_when_nothing_was_served():
    assert cpu_per_op_us(0.5, 1000) == 500.0
    assert math.isnan(cpu_per_op_us(0.5, 0))


def test_loop_metrics_merge_the_load_generators_and_report_resumed_share_and_client_cpu():
    results = [{"count": 300, "rtts": [1.0] * 300, "errors": 1, "reused": 290, "client_cpu": 0.3},
               {"count": 100, "rtts": [5.0] * 100, "errors": 0, "reused": 100, "client_cpu": 0.1}]
    metrics = loop_metrics("resumed", "rps", results, seconds=2.0, cpu=0.2, missing=2)
    assert metrics["resumed_rps"] == 200.0
    assert metrics["resumed_p50_ms"] == 1.0 and metrics["resumed_p99_ms"] == 5.0
    assert metrics["resumed_errors"] == 3
    assert metrics["resumed_cpu_us"] == 500.0
    assert metrics["resumed_reused"] == 390 / 400
    assert metrics["resumed_client_cpu_us"] == 1000.0


def test_echo_metrics_have_no_resumed_share():
    metrics = loop_metrics("echo", "msgs", [{"count": 10, "rtts": [1.0] * 10, "errors": 0}], 1.0, 0.001)
    assert "echo_reused" not in metrics and "echo_client_cpu_us" not in metrics


def test_pinning_gives_clients_and_targets_different_cpus_when_there_are_two():
    assert system.pin_plan({0, 1}) == ({0}, {1})
    assert system.pin_plan({3, 5, 7}) == ({3}, {5})
    assert system.pin_plan({2}) == ({2}, {2})


def test_keepalive_split_is_tls_server_and_framework_from_the_bare_callables():
    rounds = {"monoport-hello-clear": {"keepalive_cpu_us": [200, 220]},
              "monoport-hello": {"keepalive_cpu_us": [300]},
              "monoport": {"keepalive_cpu_us": [450]},
              "pywsgi-hello-clear": {"keepalive_cpu_us": [180]}}
    text = "\n".join(report.split_lines(rounds))
    rows = {line.split(" | ")[0].strip("| "): line.split(" | ")[1] for line in text.splitlines() if " | " in line}
    assert rows["TLS (bare callable over TLS − in clear text)"] == "90"
    assert rows["server: parse, own bookkeeping, WSGI/ASGI call (bare callable, clear text)"] == "210"
    assert rows["framework: Flask/Starlette + Socket.IO dispatch (the app − the bare callable, TLS)"] == "150"
    assert "30 µs per request" in text  # monoport's own work over pywsgi's


def test_goals_compare_paired_rounds_and_state_unbounded_ratios_without_a_verdict():
    rounds = {"monoport": {"echo_msgs": [100, 90]}, "uvicorn": {"echo_msgs": [100, 100]},
              "monoport-hello": {"keepalive_rps": [50]}, "uvicorn-hello": {"keepalive_rps": [100]}}
    lines = report.goal_lines(rounds, {}, {})
    echo = next(line for line in lines if line.startswith("| Socket.IO WebSocket echo ≥ 1.0× uvicorn"))
    assert "0.95×" in echo and echo.endswith("| **no** |")
    stated = next(line for line in lines if "bare WSGI callable" in line)
    assert "0.50×" in stated and stated.endswith("| – |")
    assert any(line.startswith("| ≤ 60 KB RSS") and "not measured" in line for line in lines)


def test_readme_section_lists_every_peer_and_sorts_goals_into_met_and_missed():
    rounds = {"monoport": {"echo_msgs": [110], "echo_cpu_us": [100]},
              "uvicorn": {"echo_msgs": [100], "echo_cpu_us": [90]}}
    info = {"date": "d", "machine": "m", "software": "s", "load": "load average at start: 1; at the end: 2",
            "wall": "1 min", "pinning": "targets on CPU 1"}
    text = report.readme_section({"rounds": rounds, "raw": {}, "info": info, "capacity": {},
                                  "targets": ["monoport", "uvicorn"]})
    assert all(peer.split("**")[1] in text for peer in report.PEERS)
    met = next(line for line in text.splitlines() if line.startswith("Goals of issue 13"))
    assert "Socket.IO WebSocket echo ≥ 1.0× uvicorn: 1.10×" in met
    assert "load average at start: 1; at the end: 2" in text


def test_reconnect_backoff_is_socketio_clients_default():
    from bench.backoff import reconnect_delay

    assert reconnect_delay(0, 0.5) == 1.0
    assert (reconnect_delay(0, 0.0), reconnect_delay(0, 1.0)) == (0.5, 1.5)
    assert reconnect_delay(1, 0.5) == 2.0
    assert reconnect_delay(10, 0.5) == 5.0  # capped at reconnectionDelayMax


def test_storm_counts_the_last_return_and_every_client_lost_or_never_connected():
    reports = [{"dropped": 10, "back": 10, "last": 105.0}, {"dropped": 10, "back": 9, "last": 103.0},
               {"dropped": 0, "back": 0, "last": None}]
    metrics = storm_metrics(100.0, reports, tried=32, connected=30)
    assert metrics == {"storm_s": 5.0, "storm_dropped": 20, "storm_lost": 3, "storm_clients": 30}
