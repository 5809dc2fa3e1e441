"""The pool's Prometheus text: families, labels, a cumulative histogram ending in +Inf."""

from __future__ import annotations

from shoal.functions.metrics import Counters, prometheus_text


def test_no_pool_no_text() -> None:
    assert prometheus_text([]) == ""


def test_every_family_once_with_one_sample_per_function() -> None:
    a, b = Counters(), Counters()
    a.count("ok", 3.0, cold=True)
    a.count("timeout", 1000.0, cold=False)
    a.count("throttled", 0.0, cold=False)
    b.count("ok", 0.2, cold=False)
    text = prometheus_text(
        [
            b.snapshot("b", in_flight=0, queued=0, instances=1, busy=0, idle=1),
            a.snapshot("a", in_flight=1, queued=2, instances=3, busy=1, idle=2),
        ]
    )
    lines = text.splitlines()
    types = [line for line in lines if line.startswith("# TYPE")]
    assert len(types) == len(set(types)) == 15
    samples = dict(line.rsplit(" ", 1) for line in lines if not line.startswith("#"))
    assert samples['shoal_function_invocations_total{function="a"}'] == "2"
    assert samples['shoal_function_throttles_total{function="a"}'] == "1"
    assert samples['shoal_function_timeouts_total{function="a"}'] == "1"
    assert samples['shoal_function_cold_starts_total{function="a"}'] == "1"
    assert samples['shoal_function_queued{function="a"}'] == "2"
    assert samples['shoal_function_idle_instances{function="b"}'] == "1"
    assert samples['shoal_function_duration_seconds_bucket{function="a",le="0.005"}'] == "1"
    assert samples['shoal_function_duration_seconds_bucket{function="a",le="1.0"}'] == "2"
    assert samples['shoal_function_duration_seconds_bucket{function="b",le="+Inf"}'] == "1"
    assert float(samples['shoal_function_duration_seconds_sum{function="a"}']) == 1.003
    first_a = lines.index('shoal_function_invocations_total{function="a"} 2')
    assert lines[first_a + 1].startswith('shoal_function_invocations_total{function="b"}')
