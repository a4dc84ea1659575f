"""The continuous-batching engine: timing from the profile, queueing, KV pressure, event-driven jumps."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from scaler.sim.engine import Engine, Finished, RequestRejected, RequestSpec
from scaler.sim.profiles import DEMO, PROFILES, HardwareProfile

TINY = replace(DEMO, name="tiny", max_num_seqs=4, kv_capacity_tokens=1000, max_model_len=600)


def run(profile: HardwareProfile, arrivals: list[tuple[float, RequestSpec]], until: float = 1e6) -> list[Finished]:
    engine = Engine(profile)
    done: list[Finished] = []
    for t, spec in arrivals:
        done += engine.advance(t)
        engine.submit(spec, t)
    return done + engine.advance(until)


def test_one_request_takes_a_prefill_step_then_one_decode_step_per_token() -> None:
    [done] = run(DEMO, [(0.0, RequestSpec("a", 100, 10))])
    prefill = DEMO.decode_step_base + DEMO.decode_step_per_seq * 1 + DEMO.prefill_per_token * 100
    decode = DEMO.decode_step_base + DEMO.decode_step_per_seq * 1
    assert done.first_token == pytest.approx(prefill)
    assert done.finish == pytest.approx(prefill + 9 * decode)
    assert (done.output_tokens, done.finish_reason, done.preemptions) == (10, "length", 0)


def test_more_load_means_a_longer_queue_and_a_higher_ttft() -> None:
    def burst(n: int) -> tuple[float, float, int]:
        engine = Engine(DEMO)
        for i in range(n):
            engine.submit(RequestSpec(f"r{i}", 200, 100), 0.0)
        engine.advance(0.5)
        waiting = engine.waiting
        done = engine.advance(1e6)
        ttfts = [f.ttft for f in done if f.ttft is not None]
        return sum(ttfts) / len(ttfts), max(f.finish for f in done), waiting

    light, heavy = burst(4), burst(32)
    assert light[2] == 0 and heavy[2] == 32 - DEMO.max_num_seqs
    assert heavy[0] > 3 * light[0]
    assert heavy[1] > light[1]


def test_running_is_capped_by_max_num_seqs_and_the_rest_wait() -> None:
    engine = Engine(DEMO)
    for i in range(20):
        engine.submit(RequestSpec(f"r{i}", 10, 1000), 0.0)
    engine.advance(1.0)
    assert (engine.running, engine.waiting) == (DEMO.max_num_seqs, 20 - DEMO.max_num_seqs)


def test_decode_steps_slow_down_as_the_batch_grows() -> None:
    one = run(DEMO, [(0.0, RequestSpec("a", 10, 200))])[0]
    eight = run(DEMO, [(0.0, RequestSpec(f"r{i}", 10, 200)) for i in range(8)])
    assert min(f.e2e for f in eight) > 1.5 * one.e2e


def test_a_full_kv_cache_preempts_the_newest_and_everything_still_finishes() -> None:
    done = run(TINY, [(0.0, RequestSpec(f"r{i}", 100, 400)) for i in range(4)])
    assert len(done) == 4 and all(f.output_tokens == 400 for f in done)
    assert sum(f.preemptions for f in done) > 0
    assert max(done, key=lambda f: f.preemptions).request_id == "r3"  # the last admitted goes first


def test_kv_usage_stays_within_capacity_under_pressure() -> None:
    engine = Engine(TINY)
    rng = random.Random(3)
    t, peak = 0.0, 0.0
    for i in range(200):
        t += rng.expovariate(20)
        engine.advance(t)
        peak = max(peak, engine.kv_used() / TINY.kv_capacity_tokens)
        engine.submit(RequestSpec(f"r{i}", rng.randint(1, 300), rng.randint(1, 290)), t)
    engine.advance(1e6)
    assert peak <= 1.0
    assert engine.stats.preemptions > 0
    assert sum(engine.stats.finished.values()) == 200
    assert engine.kv_used() == 0 and engine.running == engine.waiting == 0


@settings(max_examples=30, deadline=None)
@given(
    st.lists(
        st.tuples(st.floats(0, 3), st.integers(1, 300), st.integers(1, 150), st.booleans()), min_size=1, max_size=12
    ),
    st.floats(0.01, 0.5),
)
def test_jumping_ahead_equals_looking_often(requests: list[tuple[float, int, int, bool]], tick: float) -> None:
    """Decode-only stretches are taken in one jump; a driver looking every `tick` sees the same history."""
    arrivals = sorted(requests)

    def history(step: float | None) -> list[Finished]:
        engine = Engine(TINY)
        done: list[Finished] = []
        for i, (t, prompt, output, remote) in enumerate(arrivals):
            if step is not None:
                now = 0.0
                while now + step < t:
                    now += step
                    done += engine.advance(now)
            done += engine.advance(t)
            engine.submit(RequestSpec(f"r{i}", prompt, output, "stop", 0.01 if remote else None), t)
        if step is not None:
            now = arrivals[-1][0]
            while engine.outstanding:
                now += step
                done += engine.advance(now)
        return sorted(done + engine.advance(1e9), key=lambda f: f.request_id)

    jumped, looked = history(None), history(tick)
    assert [f.request_id for f in jumped] == [f.request_id for f in looked]
    for a, b in zip(jumped, looked, strict=True):
        assert a.finish == pytest.approx(b.finish) and a.first_token == pytest.approx(b.first_token)
        assert a.output_tokens == b.output_tokens


def test_remote_kv_waits_for_the_transfer_and_skips_the_prefill() -> None:
    [done] = run(DEMO, [(0.0, RequestSpec("d", 1000, 5, "stop", kv_transfer_seconds=0.5))])
    step = DEMO.decode_step_base + DEMO.decode_step_per_seq
    assert done.first_scheduled == pytest.approx(0.5)
    assert done.first_token == pytest.approx(0.5 + step)  # no prefill: straight to decoding
    assert done.finish == pytest.approx(0.5 + 4 * step)  # the prefill pod made token 1
    engine = Engine(DEMO)
    engine.submit(RequestSpec("d", 1000, 5, "stop", kv_transfer_seconds=0.5), 0.0)
    engine.advance(10)
    assert engine.stats.prompt_tokens == 0  # computed on the prefill pod


def test_an_aborted_request_frees_its_slot() -> None:
    engine = Engine(DEMO)
    for i in range(DEMO.max_num_seqs + 1):
        engine.submit(RequestSpec(f"r{i}", 10, 1000), 0.0)
    engine.advance(1.0)
    assert engine.waiting == 1
    engine.abort("r0", 1.0)
    done = engine.advance(2.0)
    assert [(f.request_id, f.finish_reason) for f in done] == [("r0", "abort")]
    assert engine.waiting == 0 and engine.running == DEMO.max_num_seqs
    assert engine.stats.finished["abort"] == 1


def test_requests_beyond_max_model_len_are_rejected() -> None:
    engine = Engine(DEMO)
    with pytest.raises(RequestRejected, match="max_model_len"):
        engine.submit(RequestSpec("big", DEMO.max_model_len, 1), 0.0)


def test_the_histograms_count_what_happened() -> None:
    engine = Engine(DEMO)
    for i in range(3):
        engine.submit(RequestSpec(f"r{i}", 50, 20), 0.0)
    engine.advance(1e6)
    stats = engine.stats
    assert stats.ttft.count == stats.e2e.count == stats.queue_time.count == 3
    assert stats.itl.count == 3 * 19  # every token after the first
    assert stats.generation_tokens == 60 and stats.prompt_tokens == 150


def test_bundled_profiles_are_consistent() -> None:
    assert {"A100-80G-llama3-8b", "demo", "cpu-qwen2.5-0.5b"} <= set(PROFILES)
    a100 = PROFILES["A100-80G-llama3-8b"]
    assert a100.max_num_seqs == 256 and 400_000 <= a100.kv_capacity_tokens <= 450_000
    with pytest.raises(ValueError, match="KV cache"):
        replace(DEMO, max_model_len=DEMO.kv_capacity_tokens + 1)
