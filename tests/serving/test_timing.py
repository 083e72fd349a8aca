"""Latency percentiles with exact intervals, adaptive stopping, throughput; load measurement."""

from __future__ import annotations

import os
import time

import numpy as np
from sklearn.linear_model import LogisticRegression

from mlaudit.serving.resources import load_memory, measure_load
from mlaudit.serving.timing import (
    FIRST_ROUND,
    batch_throughput,
    quantile_interval,
    single_row_latency,
)
from mlaudit.subject.model_info import LoadCost, LoadedModel, Task


def test_quantile_interval_covers_the_true_quantile() -> None:
    rng = np.random.default_rng(0)
    true_p99 = -np.log(0.01)  # exponential(1)
    covered = 0
    for _ in range(300):
        sample = np.sort(rng.exponential(size=2000))
        interval = quantile_interval(sample, 0.99)
        assert interval.low <= interval.estimate <= interval.high
        covered += interval.low <= true_p99 <= interval.high
    # At least 95% by construction; 300 trials leave room for chance (binomial sd ~1.3%).
    assert covered / 300 >= 0.91


def test_quantile_interval_of_a_tiny_sample_uses_the_extremes() -> None:
    interval = quantile_interval(np.array([1.0, 2.0, 3.0]), 0.99)
    assert interval.high == 3.0
    assert interval.low <= interval.estimate


def test_latency_stops_once_the_p99_is_precise() -> None:
    data = np.arange(64, dtype=float)
    profile = single_row_latency(
        lambda i: float(np.sum(data[: i + 1])), list(range(64)), tolerance=0.5, budget_s=30.0
    )
    assert profile.converged
    assert profile.calls == FIRST_ROUND  # a loose tolerance is met by the first round
    assert profile.p99_relative_half_width <= 0.5
    p50, p99 = profile.at(50), profile.at(99)
    assert 0 < p50.estimate <= p99.estimate


def test_latency_stops_when_its_budget_is_spent() -> None:
    profile = single_row_latency(
        lambda _: time.sleep(0.002), [0], tolerance=1e-9, budget_s=0.3
    )
    assert not profile.converged
    assert profile.seconds < 3
    assert profile.calls < FIRST_ROUND
    assert profile.at(50).estimate >= 2.0  # milliseconds


def test_throughput_scales_with_the_batch() -> None:
    features = np.random.default_rng(0).normal(size=(1024, 4))
    model = LogisticRegression().fit(features, features[:, 0] > 0)
    single = batch_throughput(lambda: model.predict(features[:1]), 1, budget_s=0.2)
    batch = batch_throughput(lambda: model.predict(features), 1024, budget_s=0.2)
    assert single.repetitions >= 5
    assert batch.rows_per_s.estimate > 5 * single.rows_per_s.estimate
    assert batch.rows_per_s.low <= batch.rows_per_s.estimate <= batch.rows_per_s.high


def _allocating_load() -> LoadedModel:
    weights = np.ones(25_000_000)  # 200 MB, touched
    return LoadedModel("test", Task.REGRESSION, weights, lambda frame: np.zeros(len(frame)))


def test_a_load_in_a_fresh_fork_is_measured_by_its_peak() -> None:
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the worker's situation: a fork, then the load
        try:
            cost = measure_load(_allocating_load).load_cost
            memory = load_memory(cost) if cost is not None else None
            message = f"{memory.method} {memory.bytes}" if memory else "none"
            os.write(write, message.encode())
        finally:
            os._exit(0)
    os.close(write)
    method, size = os.read(read, 100).decode().split()
    os.waitpid(pid, 0)
    assert method == "peak"
    assert 190e6 < int(size) < 260e6


def test_a_stale_peak_falls_back_to_the_net_growth() -> None:
    mb = 1 << 20
    # isolation none: the process peaked earlier, so only the resident set's growth tells.
    stale = load_memory(LoadCost(0.5, 100 * mb, 150 * mb, 900 * mb, 900 * mb))
    assert stale is not None
    assert (stale.method, stale.bytes) == ("net", 50 * mb)
    # The confined worker: no /proc, the fork-fresh peak alone.
    confined = load_memory(LoadCost(0.5, None, None, 100 * mb, 180 * mb))
    assert confined is not None
    assert (confined.method, confined.bytes) == ("peak", 80 * mb)
    assert load_memory(LoadCost(0.5, None, None, None, None)) is None


def test_budget_checks_are_called() -> None:
    calls = []
    single_row_latency(lambda _: None, [0], tolerance=1e-9, budget_s=0.05,
                       check_budget=lambda: calls.append(1))
    assert calls
