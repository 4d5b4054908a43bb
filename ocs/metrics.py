"""Prometheus metrics for the charging hot path: plain counters, rendered on demand.

The Diameter/charging code calls `observe_ccr()`, `set_live_sessions()` and `set_peers()`;
each is a few dict/list operations (no locks: everything runs on one asyncio loop). `/metrics`
renders the text exposition format (version 0.0.4) from a `Registry` snapshot.

Exported series:
  ocs_ccr_total{type,result_code}       counter  CCRs answered, by request type and Result-Code
  ocs_ccr_duration_seconds{type}        histogram time from CCR decoded to CCA written
  ocs_live_sessions                     gauge    open credit-control sessions
  ocs_diameter_peers                    gauge    Diameter peers in state Open
  ocs_process_start_time_seconds        gauge    unix time the registry was created
"""

from __future__ import annotations

import bisect
import time
from collections.abc import Iterable

REQUEST_TYPES = {1: "INITIAL", 2: "UPDATE", 3: "TERMINATION", 4: "EVENT"}
BUCKETS: tuple[float, ...] = (
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
)


class _Histogram:
    __slots__ = ("count", "counts", "total")

    def __init__(self) -> None:
        self.counts = [0] * (len(BUCKETS) + 1)  # last slot: +Inf
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(BUCKETS, value)] += 1
        self.count += 1
        self.total += value


class Registry:
    def __init__(self) -> None:
        self.ccr: dict[tuple[str, int], int] = {}
        self.latency: dict[str, _Histogram] = {}
        self.live_sessions = 0
        self.peers = 0
        self.started = time.time()

    def observe_ccr(self, request_type: int, result_code: int, seconds: float) -> None:
        name = REQUEST_TYPES.get(request_type, str(request_type))
        key = (name, result_code)
        self.ccr[key] = self.ccr.get(key, 0) + 1
        hist = self.latency.get(name)
        if hist is None:
            hist = self.latency[name] = _Histogram()
        hist.observe(seconds)

    def render(self) -> str:
        return "".join(line + "\n" for line in self._lines())

    def _lines(self) -> Iterable[str]:
        yield "# HELP ocs_ccr_total Credit-Control-Requests answered, by type and Result-Code."
        yield "# TYPE ocs_ccr_total counter"
        for (name, code), count in sorted(self.ccr.items()):
            yield f'ocs_ccr_total{{type="{name}",result_code="{code}"}} {count}'
        yield "# HELP ocs_ccr_duration_seconds Time to answer a CCR."
        yield "# TYPE ocs_ccr_duration_seconds histogram"
        for name, hist in sorted(self.latency.items()):
            cumulative = 0
            for bound, count in zip(BUCKETS, hist.counts, strict=False):
                cumulative += count
                yield f'ocs_ccr_duration_seconds_bucket{{type="{name}",le="{bound}"}} {cumulative}'
            yield f'ocs_ccr_duration_seconds_bucket{{type="{name}",le="+Inf"}} {hist.count}'
            yield f'ocs_ccr_duration_seconds_sum{{type="{name}"}} {hist.total!r}'
            yield f'ocs_ccr_duration_seconds_count{{type="{name}"}} {hist.count}'
        yield "# HELP ocs_live_sessions Open credit-control sessions."
        yield "# TYPE ocs_live_sessions gauge"
        yield f"ocs_live_sessions {self.live_sessions}"
        yield "# HELP ocs_diameter_peers Diameter peers connected (state Open)."
        yield "# TYPE ocs_diameter_peers gauge"
        yield f"ocs_diameter_peers {self.peers}"
        yield "# HELP ocs_process_start_time_seconds Start time of the process (unix time)."
        yield "# TYPE ocs_process_start_time_seconds gauge"
        yield f"ocs_process_start_time_seconds {self.started!r}"


REGISTRY = Registry()
CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


def observe_ccr(request_type: int, result_code: int, seconds: float) -> None:
    """Count one answered CCR (CC-Request-Type 1..4) and its answer time."""
    REGISTRY.observe_ccr(request_type, result_code, seconds)


def set_live_sessions(n: int) -> None:
    REGISTRY.live_sessions = n


def set_peers(n: int) -> None:
    REGISTRY.peers = n


def render() -> str:
    return REGISTRY.render()
