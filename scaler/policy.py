"""vLLM-aware replica recommendations for one pool: per-signal figures, stable and panic windows.

Each signal turns the pool's load into "replicas needed": load over a per-pod target, or observed
latency over its SLO times the pods now serving. The recommendation is the max over signals (as the
HPA does with several metrics), computed over a stable window and a short panic window:

- panic starts when panic-window demand reaches `panicThreshold` x the pods reporting; while it lasts
  (until one stable window without it) the answer is the max of both windows and never goes down;
- otherwise the stable window decides, and a scale-down to N only happens when the window's *peak*
  load still fits under every target on N pods;
- growth is capped at `maxScaleUpRate` x the pods reporting (at least one more), except from zero;
- pods that have not reported yet are not capacity, and the answer is absolute demand over per-pod
  capacity, so a slow model load cannot feed on itself into runaway scale-up;
- a pod whose engines all sleep (`engine_sleep_state`) is neither capacity nor evidence of idleness:
  vLLM stops stepping while asleep, so its load gauges hold whatever the last step left, and whoever
  put it to sleep means to wake it. Demand is sized on the awake pods and the sleeping ones are held
  on top, so their zero load never scales them (or, if the HPA picks them, awake pods) away;
- a queue is the one that wants capacity: with `num_requests_waiting_by_reason`, `reason="capacity"`
  (requests deferred for a LoRA budget or a KV transfer would not run sooner on more pods);
- requests refused at admission (`admission_rejections`) are prefill demand the queue could not show:
  their rate times the mean prompt in prompt tokens, and times the TTFT target (1 s without one) in
  waiting requests, as Little's law counts arrivals that were let wait that long.

Everything is a pure function of its inputs and `now`; state between evaluations is a PolicyState value.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from scaler.policy_spec import PolicySpec
from scaler.signals import (
    ADMISSION_REJECTIONS,
    GENERATION_TOKENS,
    ITL,
    KV,
    PREEMPTIONS,
    PROMPT_TOKENS,
    RUNNING,
    SLEEP_STATE,
    TTFT,
    WAITING,
    WAITING_BY_REASON,
    PodSignals,
    PoolWindow,
)

_LEARN_RATE = 0.3  # weight of a new observation in the learned per-pod capacity
_REFUSED_WAIT = 1.0  # seconds a refused request counts as waiting when the trigger has no TTFT target


@dataclass(frozen=True, slots=True)
class PolicyState:
    last_panic: float | None = None
    panic_floor: int = 0
    prefill_capacity: float | None = None  # learned prompt tokens/s per saturated pod
    decode_capacity: float | None = None  # learned generated tokens/s per saturated pod
    last_replicas: int | None = None
    seen_replicas: int | None = None  # the last recommendation made while pods were reporting


@dataclass(frozen=True, slots=True)
class Signal:
    name: str
    replicas: float  # the figure from window means
    peak: float  # the same figure from window peaks, for scale-down
    detail: str


@dataclass(frozen=True, slots=True)
class WindowFigures:
    window: float
    signals: tuple[Signal, ...]

    @property
    def demand(self) -> float:
        return max((s.replicas for s in self.signals), default=0.0)

    @property
    def peak(self) -> float:
        return max((s.peak for s in self.signals), default=0.0)

    @property
    def top(self) -> Signal | None:
        return max(self.signals, key=lambda s: s.replicas, default=None)


@dataclass(frozen=True, slots=True)
class Decision:
    replicas: int
    active: bool
    reason: str
    reporting_pods: int
    stable: WindowFigures
    panic: WindowFigures
    in_panic: bool
    pods: tuple[PodSignals, ...]
    notes: tuple[str, ...] = ()
    asleep_pods: int = 0  # held on top of the demand: neither capacity nor idle
    ttft: float | None = None  # observed quantile over the stable window
    itl: float | None = None
    activation_value: float | None = None
    pool_replicas: int | None = None  # for an overflow pool: what the whole pool needs


def pool_metrics(spec: PolicySpec) -> tuple[str, ...]:
    """The vLLM metrics this spec's signals read (learning capacity needs the queue and the rates)."""
    names: list[str] = []
    if spec.phase in ("decode", "unified"):
        names += [RUNNING, KV, PREEMPTIONS, GENERATION_TOKENS, WAITING, WAITING_BY_REASON]
        if spec.itl is not None:
            names.append(ITL)
    if spec.phase in ("prefill", "unified"):
        names += [WAITING, WAITING_BY_REASON, PROMPT_TOKENS, ADMISSION_REJECTIONS]
        if spec.ttft is not None:
            names.append(TTFT)
    return tuple(dict.fromkeys([*names, SLEEP_STATE]))


def replicas_for(figure: float) -> int:
    """Whole replicas for a demand figure; a hair over an integer is float noise, not another pod."""
    return max(0, math.ceil(figure - 1e-9))


def window_figures(spec: PolicySpec, pool: PoolWindow, state: PolicyState) -> WindowFigures:
    signals: list[Signal] = []
    if spec.phase in ("decode", "unified"):
        signals += _decode_signals(spec, pool, state)
    if spec.phase in ("prefill", "unified"):
        signals += _prefill_signals(spec, pool, state)
    return WindowFigures(pool.window, tuple(signals))


def _decode_signals(spec: PolicySpec, pool: PoolWindow, state: PolicyState) -> list[Signal]:
    out: list[Signal] = []
    if spec.target_running is not None and pool.reporting("running"):
        # A request queued at a decode pod wants a batch slot as much as one running: a batch that
        # is full at max_num_seqs would otherwise hide the demand behind it.
        total = pool.total("running") + pool.total("waiting")
        peak = pool.total("running_peak") + pool.total("waiting_peak")
        detail = f"running+waiting{_waiting_source(pool)} {total:.1f} at {spec.target_running:g}/pod"
        out.append(Signal("running", total / spec.target_running, peak / spec.target_running, detail))
    kv_pods = pool.reporting("kv")
    if kv_pods:
        preempting = [p for p in kv_pods if (p.preemption_rate or 0.0) > 0]
        usage = [1.0 if p in preempting else p.kv or 0.0 for p in kv_pods]
        peaks = [1.0 if p in preempting else p.kv_peak or 0.0 for p in kv_pods]
        mean = math.fsum(usage) / len(usage)
        relation = ">" if mean > spec.target_kv else "<="
        detail = f"kv {mean:.2f} {relation} {spec.target_kv:.2f} on {len(kv_pods)} pods"
        if preempting:
            detail += f" ({len(preempting)} preempting)"
        out.append(Signal("kv", math.fsum(usage) / spec.target_kv, math.fsum(peaks) / spec.target_kv, detail))
    capacity, learned = _capacity(spec.decode_capacity, state.decode_capacity)
    if capacity and pool.reporting("generation_rate"):
        demand = pool.total("generation_rate")
        detail = f"generation {demand:.0f} tok/s at {capacity:.0f}/pod{' (learned)' if learned else ''}"
        out.append(Signal("decode_tokens", demand / capacity, demand / capacity, detail))
    if spec.itl is not None:
        observed = pool.itl.quantile(spec.itl_quantile)
        out += _latency_correction("itl", observed, spec.itl, spec.itl_quantile, len(pool.serving), spec)
    return out


def _prefill_signals(spec: PolicySpec, pool: PoolWindow, state: PolicyState) -> list[Signal]:
    out: list[Signal] = []
    refused = pool.total("rejection_rate")  # requests/s refused at admission: demand the queue never held
    if pool.reporting("waiting"):
        total, peak = pool.total("waiting"), pool.total("waiting_peak")
        wait = spec.ttft if spec.ttft is not None else _REFUSED_WAIT
        extra = refused * wait
        detail = f"waiting{_waiting_source(pool)} {total:.1f}"
        if extra:
            detail += f" + {extra:.1f} refused ({refused:.2f}/s x {wait:g}s)"
        detail += f" at {spec.target_waiting:g}/pod"
        target = spec.target_waiting
        out.append(Signal("waiting", (total + extra) / target, (peak + extra) / target, detail))
    capacity, learned = _capacity(spec.prefill_capacity, state.prefill_capacity)
    if capacity and pool.reporting("prompt_rate"):
        rate = pool.total("prompt_rate")
        backlog = backlog_peak = refused_tokens = 0.0
        requests = pool.total("requests_rate")
        if requests > 0:
            per_request = rate / requests  # mean prompt length over the window
            refused_tokens = refused * per_request
            if spec.ttft is not None:
                backlog = pool.total("waiting") * per_request / spec.ttft
                backlog_peak = pool.total("waiting_peak") * per_request / spec.ttft
        demand = rate + backlog + refused_tokens
        detail = f"prompt {demand:.0f} tok/s at {capacity:.0f}/pod{' (learned)' if learned else ''}"
        if backlog:
            detail += f", incl. backlog {backlog:.0f} tok/s to drain in {spec.ttft:g}s"
        if refused_tokens:
            detail += f", incl. refused {refused_tokens:.0f} tok/s"
        peak_demand = rate + backlog_peak + refused_tokens
        out.append(Signal("prefill_tokens", demand / capacity, peak_demand / capacity, detail))
    if spec.ttft is not None:
        observed = pool.ttft.quantile(spec.ttft_quantile)
        out += _latency_correction("ttft", observed, spec.ttft, spec.ttft_quantile, len(pool.serving), spec)
    return out


def _waiting_source(pool: PoolWindow) -> str:
    """' (capacity)' when pods count only their capacity queue (num_requests_waiting_by_reason)."""
    reporting = pool.reporting("waiting")
    split = sum(p.waiting_by_reason for p in reporting)
    if not split:
        return ""
    return " (capacity)" if split == len(reporting) else f" (capacity on {split}/{len(reporting)} pods)"


def waiting_note(pool: PoolWindow) -> str | None:
    """Which waiting figure each pod gave: the capacity queue, or the whole num_requests_waiting."""
    reporting = pool.reporting("waiting")
    if not reporting:
        return None
    split = [p for p in reporting if p.waiting_by_reason]
    if not split:
        return f"waiting: num_requests_waiting on {len(reporting)} pods (none reports num_requests_waiting_by_reason)"
    deferred = math.fsum(p.waiting_deferred or 0.0 for p in split)
    note = (
        f'waiting: num_requests_waiting_by_reason{{reason="capacity"}} on {len(split)} of {len(reporting)} pods, '
        f"leaving out {deferred:.1f} deferred (LoRA budget, KV transfer)"
    )
    if len(split) < len(reporting):
        note += f"; num_requests_waiting on the other {len(reporting) - len(split)}"
    return note


def _capacity(configured: float | None, learned: float | None) -> tuple[float | None, bool]:
    return (configured, False) if configured is not None else (learned, learned is not None)


def _latency_correction(
    name: str, observed: float | None, slo: float, q: float, pods: int, spec: PolicySpec
) -> list[Signal]:
    if observed is None or pods == 0 or observed <= slo:
        return []
    factor = min(observed / slo, spec.max_scale_up_rate)
    detail = f"{name} p{q * 100:g} {observed * 1000:.0f}ms > {slo * 1000:.0f}ms on {pods} pods"
    return [Signal(name, pods * factor, pods * factor, detail)]


def learn_capacity(state: PolicyState, pool: PoolWindow) -> tuple[PolicyState, list[str]]:
    """Learn per-pod token throughput from pods that had a queue (they were running flat out)."""
    saturated = [p for p in pool.serving if (p.waiting or 0.0) >= 1.0]
    prefill, prefill_note = _learn(state.prefill_capacity, [p.prompt_rate for p in saturated], "prefill")
    decode, decode_note = _learn(state.decode_capacity, [p.generation_rate for p in saturated], "decode")
    notes = [n for n in (prefill_note, decode_note) if n]
    return replace(state, prefill_capacity=prefill, decode_capacity=decode), notes


def _learn(old: float | None, rates: list[float | None], what: str) -> tuple[float | None, str]:
    observed = [r for r in rates if r is not None and r > 0]
    if not observed:
        return old, ""
    mean = math.fsum(observed) / len(observed)
    new = mean if old is None else old + _LEARN_RATE * (mean - old)
    return new, f"{what} capacity learned: {new:.0f} tok/s/pod from {len(observed)} queued pods"


def recommend(
    spec: PolicySpec,
    state: PolicyState,
    stable: PoolWindow,
    panic: PoolWindow,
    now: float,
    activation_value: float | None = None,
) -> tuple[Decision, PolicyState]:
    """The replica recommendation for a pool, and the state to carry to the next evaluation."""
    state, learned = learn_capacity(state, stable)
    configured = {"prefill": spec.prefill_capacity, "decode": spec.decode_capacity}
    notes = [n for n in learned if configured[n.split()[0]] is None]  # a configured capacity wins
    if spec.prefill_capacity is None and state.prefill_capacity is None and spec.phase != "decode":
        notes.append("prefill capacity not learned yet (no pod has had a queue)")
    if spec.decode_capacity is None and state.decode_capacity is None and spec.phase != "prefill":
        notes.append("decode capacity not learned yet (no pod has had a queue)")
    waiting = waiting_note(stable)
    if waiting:
        notes.append(waiting)
    pods = len(stable.serving)
    asleep = len(stable.asleep)
    if asleep:
        notes.append(f"{asleep} pods asleep (engine_sleep_state): not capacity, not idle; held on top of the demand")
    stable_figures = window_figures(spec, stable, state)
    panic_figures = window_figures(spec, panic, state)
    want_stable = replicas_for(stable_figures.demand)
    want_panic = replicas_for(panic_figures.demand)

    if want_panic >= spec.panic_threshold * max(pods, 1) and want_panic > pods:
        state = replace(state, last_panic=now)
    in_panic = state.last_panic is not None and now - state.last_panic < spec.stable_window
    qualifiers: list[str] = []
    if in_panic:
        replicas = max(want_stable, want_panic, state.panic_floor, pods)
        state = replace(state, panic_floor=replicas)
        qualifiers.append("panic")
        top = panic_figures.top if want_panic >= want_stable else stable_figures.top
    else:
        state = replace(state, panic_floor=0, last_panic=None)
        replicas = want_stable
        if want_stable < pods:  # scale down only as far as the window's peak still fits
            replicas = min(pods, max(want_stable, replicas_for(stable_figures.peak)))
            if replicas > want_stable:
                qualifiers.append(f"peak holds {replicas}")
        top = stable_figures.top
    if pods > 0:
        cap = max(math.ceil(spec.max_scale_up_rate * pods - 1e-9), pods + 1)
        if replicas > cap:
            replicas = cap
            qualifiers.append(f"capped at {spec.max_scale_up_rate:g}x {pods} pods")
    if asleep:
        replicas += asleep
        qualifiers.append(f"holds {asleep} asleep")

    pool_replicas = None
    if spec.primary_max_replicas is not None:
        pool_replicas = replicas
        replicas = max(0, replicas - spec.primary_max_replicas)
        qualifiers.append(f"pool needs {pool_replicas}, primary holds {spec.primary_max_replicas}")

    woken = False
    if spec.activation is not None and activation_value is not None and activation_value > spec.activation.threshold:
        woken = True
        floor = max(spec.min_replicas or 0, 1)
        if replicas < floor:
            replicas = floor
            qualifiers.append(f"woken by activation {activation_value:g} > {spec.activation.threshold:g}")
    if spec.min_replicas is not None and replicas < spec.min_replicas:
        replicas = spec.min_replicas
        qualifiers.append(f"minReplicas {spec.min_replicas}")
    if spec.max_replicas is not None and replicas > spec.max_replicas:
        replicas = spec.max_replicas
        qualifiers.append(f"maxReplicas {spec.max_replicas}")

    state = replace(state, last_replicas=replicas)
    if pods:
        state = replace(state, seen_replicas=replicas)
    idle = "no pod awake" if asleep and not pods else "no load signals"
    reason = f"{spec.phase}: {top.detail if top else idle} -> {replicas}"
    if qualifiers:
        reason += f" ({'; '.join(qualifiers)})"
    decision = Decision(
        replicas=replicas,
        active=replicas > spec.activation_replicas or woken,
        reason=reason,
        reporting_pods=pods,
        stable=stable_figures,
        panic=panic_figures,
        in_panic=in_panic,
        pods=tuple(sorted(stable.pods.values(), key=lambda p: p.pod)),
        notes=tuple(notes),
        asleep_pods=asleep,
        ttft=stable.ttft.quantile(spec.ttft_quantile),
        itl=stable.itl.quantile(spec.itl_quantile),
        activation_value=activation_value,
        pool_replicas=pool_replicas,
    )
    return decision, state
