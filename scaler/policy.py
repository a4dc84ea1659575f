"""vLLM-aware replica recommendations for one pool: per-signal figures, stable and panic windows.

Each signal turns the pool's load into "replicas needed". *Rate* signals measure load against
per-pod capacity (KV usage, running requests, token rates, the arrival rate), *queue* signals a
backlog (waiting requests, prompts to drain within the TTFT target, a gateway's queue), *latency*
signals correct by observed latency over its SLO times the pods serving. Rate and queue signals are
absolute demand, divided by `headroom`; the recommendation is the max over signals (as the HPA does
with several metrics), computed over a stable window and a short panic window:

- panic starts when panic-window demand reaches `panicThreshold` x the pods reporting; while it lasts
  (until one stable window without it) the panic window decides and the answer never goes below the
  last one;
- otherwise the stable window decides, and a scale-down to N only happens when the window's *peak*
  load still fits under every target on N pods; the stable window can hold replicas but not add
  them: a rise beyond the last answer needs the panic window to ask for it too, so a window still
  full of a burst that has ended does not scale up the pods that arrive after it;
- absolute signals may ask for the whole demand at once, however few pods report; latency
  corrections and capacities learned less than a stable window ago are at most `maxScaleUpRate` x
  the pods reporting (at least one more), except from zero;
- pods asked for and not reporting yet (scaler.inflight) are capacity on its way: while any is
  awaited, and for a cold start after the last began to report, queue and latency signals, which
  grow because that capacity is missing, may not ask beyond the pods asked for, nor beyond twice
  the pods the arrival rate needs past those reporting (the second half drains what built up);
- arrivals are what the pods serve plus what piles up (Little's law): a queue's growth, and a gateway
  queue's growth between evaluations, count in the arrival rate the in-flight bound allows for; a
  gateway's request rate without `demandPerReplica` is sized by what the pods serve per replica;
- a decode pool's gateway queue is requests that will each want a batch slot once prefill serves them:
  they add to its running and waiting requests, and count as arrivals (they do not pile up because
  decode pods are missing), so decode meets a prefill backlog when it is queued, not when it is released;
- a unified pod runs both phases on one GPU: its prompt and generation figures add up (`gpu_time`);
- a latency SLO missed on settled pods near full load teaches a factor on absolute demand (at most
  2x, decaying over SLO_DECAY), so the pool keeps the pod the SLO needed instead of cycling;
- with `forecast`, the panic window's arrivals above the stable window's are extrapolated over the cold
  start (at most 2x today's), and held by the in-flight bound like a queue;
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
from collections.abc import Sequence
from dataclasses import dataclass, field, replace

from scaler import inflight
from scaler.inflight import ColdStart, Flight
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
FORECAST_BOUND = 2.0  # a forecast asks for at most this many times today's demand
SLO_BOUND = 2.0  # a correction learned from latency misses at most doubles absolute demand
SLO_DECAY = 1800.0  # seconds for a learned correction's excess over 1 to fall by 1/e
SLO_STEP = 0.1  # a learned correction makes the load an SLO was missed at ask for this much over the pods

RATE, QUEUE, LATENCY, FORECAST = "rate", "queue", "latency", "forecast"


@dataclass(frozen=True, slots=True)
class Learned:
    """A per-pod capacity learned from pods that had a queue; confirmed once re-learned a window later."""

    value: float
    first: float  # when it was first learned
    last: float  # when it was last re-learned

    def confirmed(self, window: float) -> bool:
        return self.last - self.first >= window


@dataclass(frozen=True, slots=True)
class PolicyState:
    last_panic: float | None = None
    prefill: Learned | None = None  # prompt tokens/s per saturated pod
    decode: Learned | None = None  # generated tokens/s per saturated pod
    seen_replicas: int | None = None  # the last recommendation made while pods were reporting
    demand: int | None = None  # the last pool figure the windows decided, before asleep pods and clamps
    flight: Flight = field(default_factory=Flight)
    queue_seen: tuple[float, float] | None = None  # (when, value) of the gateway's queue, for its growth
    slo: tuple[float, float] | None = None  # (when, correction) learned from a latency SLO missed at full load


@dataclass(frozen=True, slots=True)
class Signal:
    name: str
    replicas: float  # the figure from window means
    peak: float  # the same figure from window peaks, for scale-down
    detail: str
    kind: str = RATE
    keep_up: float | None = None  # a queue signal's replicas for the arrival rate alone
    bounded: bool = False  # relative or unconfirmed: at most maxScaleUpRate x the pods reporting

    @property
    def arrivals(self) -> float | None:
        """Replicas the arrival rate needs, by this signal; None when it cannot tell."""
        return self.replicas if self.kind == RATE else self.keep_up


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
    pods: Sequence[PodSignals]  # by name; from a pool view, built when first read
    notes: tuple[str, ...] = ()
    asleep_pods: int = 0  # held on top of the demand: neither capacity nor idle
    ttft: float | None = None  # observed quantile over the stable window
    itl: float | None = None
    activation_value: float | None = None
    pool_replicas: int | None = None  # for an overflow pool: what the whole pool needs
    in_flight: int = 0  # pods asked for within the last cold start, not reporting yet
    late: int = 0  # pods asked for longer ago than the cold start, not reporting yet
    cold_start: ColdStart = ColdStart(inflight.DEFAULT_COLD_START, "default")
    demand_value: float | None = None  # demandQuery's value over the stable window


@dataclass(frozen=True, slots=True)
class GatewayDemand:
    """demandQuery's value over each window, and how fast a queue grew since an earlier evaluation."""

    stable: float
    panic: float
    growth: float = 0.0  # requests/s (set by `recommend` for a queue)


def pool_metrics(spec: PolicySpec) -> tuple[str, ...]:
    """The vLLM metrics this spec's signals read (learning capacity needs the queue and the rates;
    prefill reads first tokens for the mean prompt, which turns queue growth into tokens)."""
    served = [TTFT] if spec.demand is not None and spec.demand.per_replica is None else []  # requests/s served
    decode = [RUNNING, KV, PREEMPTIONS, GENERATION_TOKENS, WAITING, WAITING_BY_REASON, *([ITL] if spec.itl else [])]
    decode += served
    prefill = [WAITING, WAITING_BY_REASON, PROMPT_TOKENS, ADMISSION_REJECTIONS, TTFT]
    names = {"decode": decode, "prefill": prefill, "unified": decode + prefill}[spec.phase]
    return tuple(dict.fromkeys([*names, SLEEP_STATE]))


def replicas_for(figure: float) -> int:
    """Whole replicas for a demand figure; a hair over an integer is float noise, not another pod."""
    return max(0, math.ceil(figure - 1e-9))


def window_figures(
    spec: PolicySpec, pool: PoolWindow, state: PolicyState, demand: tuple[float, float] | None
) -> WindowFigures:
    """Each signal's raw figure over one window (before the growth bounds `recommend` applies);
    `demand` is the gateway's (value over this window, a queue's growth in requests/s)."""
    decode = _decode_signals(spec, pool, state) if spec.phase != "prefill" else []
    prefill = _prefill_signals(spec, pool, state) if spec.phase != "decode" else []
    both = _gpu_time_signal(decode, prefill)  # unified only: the only phase with both token signals
    pods = [*decode, *prefill, *both]
    gateway = _gateway_signal(spec, *demand, pods, pool) if demand is not None else []
    return WindowFigures(pool.window, (*pods, *gateway))


def _gpu_time_signal(decode: list[Signal], prefill: list[Signal]) -> list[Signal]:
    """A unified pod spends one GPU on both phases (a step lasts its decode time plus its prefill
    tokens' time), so its load is the sum of the two token signals, not their max."""
    tokens = {s.name: s for s in (*decode, *prefill) if s.name in ("decode_tokens", "prefill_tokens")}
    if len(tokens) < 2:
        return []
    gen, prompt = tokens["decode_tokens"], tokens["prefill_tokens"]
    arrivals = prompt.arrivals  # the prompts' arrivals: their backlog is drained by the queue signal
    if arrivals is None:
        return []
    figure = arrivals + gen.replicas
    detail = f"gpu time: prompt {arrivals:.2f} + generation {gen.replicas:.2f} pods (one GPU serves both phases)"
    return [Signal("gpu_time", figure, figure, detail, bounded=gen.bounded or prompt.bounded)]


def _gateway_signal(
    spec: PolicySpec, demand: float, growth: float, pods: list[Signal], pool: PoolWindow
) -> list[Signal]:
    assert spec.demand is not None  # only called with a demandQuery's figures
    per, operation = spec.demand.per_replica, spec.demand.operation
    source = f"({spec.demand.query} [{operation}])"
    # Little's law: the pods need `load` replicas for the `served` requests/s they take (headroom is in
    # `load` already), so a request/s arriving at the gateway needs load / served of a replica
    served = pool.total("requests_rate")
    load = max((a for s in pods if (a := s.arrivals) is not None), default=0.0)
    known = served > 0 and load > 0
    if per is not None and operation != "rate" and spec.phase == "decode":
        return [_queued_for_decode(spec, demand, per, pods, source)]
    if per is not None:
        figure = demand / per / spec.headroom
        detail = f"gateway demand {demand:g} at {per:g}/replica {source}"
        if operation == "rate":
            return [Signal("demand", figure, figure, detail)]
        # a queue's arrivals are what the pods take plus what piles up: the rate the pods alone cannot show
        keep_up = (served + max(0.0, growth)) * load / served if known else None
        if growth > 0 and keep_up is not None:
            detail += f", growing {growth:.2f}/s: arrivals need {keep_up:.1f}"
        return [Signal("demand", figure, figure, detail, QUEUE, keep_up=keep_up)]
    if not known:
        if demand > 0 and not pool.count("serving"):  # arrivals for a pool at zero: one pod, to learn what one takes
            return [Signal("demand", 1.0, 1.0, f"gateway arrivals {demand:.2f}/s, no pod up to size by {source}")]
        return []  # pods that serve nothing yet: their own signals hold them
    figure = demand * load / served
    per_pod = f"{served / load:.2f}/s per replica (pods serve {served:.2f}/s)"
    detail = f"gateway arrivals {demand:.2f}/s at {per_pod} {source}"
    return [Signal("demand", figure, figure, detail)]  # no demandPerReplica: a rate (policy_spec)


def _queued_for_decode(spec: PolicySpec, queued: float, per: float, pods: list[Signal], source: str) -> Signal:
    """A request queued in front of prefill will want a decode batch slot once prefill serves it, so the
    queue adds to the pods' running and waiting requests. It does not pile up because decode pods are
    missing: it is arrivals to decode (in the in-flight bound's K), where decode's own waiting is not."""
    ahead = queued / per / spec.headroom
    detail = f"gateway queue {queued:g} at {per:g}/replica {source}, each to want a batch slot"
    running = next((s for s in pods if s.name == "running"), None)
    if running is None:
        return Signal("demand", ahead, ahead, detail, QUEUE, keep_up=ahead)
    assert running.keep_up is not None  # the running signal always has its arrivals part
    detail = f"{running.detail} + {detail}"
    return Signal("demand", running.replicas + ahead, running.peak + ahead, detail, QUEUE, running.keep_up + ahead)


def _decode_signals(spec: PolicySpec, pool: PoolWindow, state: PolicyState) -> list[Signal]:
    out: list[Signal] = []
    headroom = spec.headroom
    if spec.target_running is not None and pool.count("running"):
        # A request queued at a decode pod wants a batch slot as much as one running: a batch that
        # is full at max_num_seqs would otherwise hide the demand behind it.
        running = pool.total("running")
        total = running + pool.total("waiting")
        peak = pool.total("running_peak") + pool.total("waiting_peak")
        detail = f"running+waiting{_waiting_source(pool)} {total:.1f} at {spec.target_running:g}/pod"
        per = spec.target_running * headroom
        keep_up = running / per
        served = pool.total("requests_rate")
        if served > 0:  # arrivals are what the pods serve plus what piles up (Little's law)
            keep_up *= 1 + max(0.0, pool.total("waiting_growth")) / served
        out.append(Signal("running", total / per, peak / per, detail, QUEUE, keep_up=keep_up))
    kv_pods = pool.count("kv")
    if kv_pods:  # a pod that preempts counts as full (signals.POOL_FIGURES: kv_load)
        preempting = pool.count("kv_preempting")
        usage = pool.total("kv_load")
        mean = usage / kv_pods
        relation = ">" if mean > spec.target_kv else "<="
        detail = f"kv {mean:.2f} {relation} {spec.target_kv:.2f} on {kv_pods} pods"
        if preempting:
            detail += f" ({preempting} preempting)"
        per = spec.target_kv * headroom
        out.append(Signal("kv", usage / per, pool.total("kv_peak_load") / per, detail))
    known = _capacity(spec.decode_capacity, state.decode, spec.stable_window)
    if known is not None and pool.count("generation_rate"):
        capacity, label, bounded = known
        demand = pool.total("generation_rate")
        figure = demand / capacity / headroom
        detail = f"generation {demand:.0f} tok/s at {capacity:.0f}/pod{label}"
        out.append(Signal("decode_tokens", figure, figure, detail, bounded=bounded))
    if spec.itl is not None:
        observed = pool.itl.quantile(spec.itl_quantile)
        out += _latency_correction("itl", observed, spec.itl, spec.itl_quantile, pool.count("serving"))
    return out


def _prefill_signals(spec: PolicySpec, pool: PoolWindow, state: PolicyState) -> list[Signal]:
    out: list[Signal] = []
    headroom = spec.headroom
    refused = pool.total("rejection_rate")  # requests/s refused at admission: demand the queue never held
    if pool.count("waiting"):
        total, peak = pool.total("waiting"), pool.total("waiting_peak")
        wait = spec.ttft if spec.ttft is not None else _REFUSED_WAIT
        extra = refused * wait
        detail = f"waiting{_waiting_source(pool)} {total:.1f}"
        if extra:
            detail += f" + {extra:.1f} refused ({refused:.2f}/s x {wait:g}s)"
        detail += f" at {spec.target_waiting:g}/pod"
        per = spec.target_waiting * headroom
        out.append(Signal("waiting", (total + extra) / per, (peak + extra) / per, detail, QUEUE))
    known = _capacity(spec.prefill_capacity, state.prefill, spec.stable_window)
    if known is not None and pool.count("prompt_rate"):
        capacity, label, bounded = known
        rate = pool.total("prompt_rate")
        backlog = backlog_peak = refused_tokens = growth = 0.0
        requests = pool.total("requests_rate")
        if requests > 0:
            per_request = rate / requests  # mean prompt length over the window
            refused_tokens = refused * per_request
            growth = pool.total("waiting_growth") * per_request  # arrivals the pods did not take up yet
            if spec.ttft is not None:
                backlog = pool.total("waiting") * per_request / spec.ttft
                backlog_peak = pool.total("waiting_peak") * per_request / spec.ttft
        arrivals = max(0.0, rate + growth + refused_tokens)
        demand = arrivals + backlog
        detail = f"prompt {demand:.0f} tok/s at {capacity:.0f}/pod{label}"
        if growth:
            detail += f", incl. queue growth {growth:.0f} tok/s"
        if backlog:
            detail += f", incl. backlog {backlog:.0f} tok/s to drain in {spec.ttft:g}s"
        if refused_tokens:
            detail += f", incl. refused {refused_tokens:.0f} tok/s"
        per = capacity * headroom
        peak_demand = rate + refused_tokens + backlog_peak
        out.append(Signal("prefill_tokens", demand / per, peak_demand / per, detail, QUEUE, arrivals / per, bounded))
    if spec.ttft is not None:
        observed = pool.ttft.quantile(spec.ttft_quantile)
        out += _latency_correction("ttft", observed, spec.ttft, spec.ttft_quantile, pool.count("serving"))
    return out


def _waiting_source(pool: PoolWindow) -> str:
    """' (capacity)' when pods count only their capacity queue (num_requests_waiting_by_reason)."""
    reporting, split = pool.count("waiting"), pool.count("waiting_split")
    if not split:
        return ""
    return " (capacity)" if split == reporting else f" (capacity on {split}/{reporting} pods)"


def waiting_note(pool: PoolWindow) -> str | None:
    """Which waiting figure each pod gave: the capacity queue, or the whole num_requests_waiting."""
    reporting, split = pool.count("waiting"), pool.count("waiting_split")
    if not reporting:
        return None
    if not split:
        return f"waiting: num_requests_waiting on {reporting} pods (none reports num_requests_waiting_by_reason)"
    deferred = pool.total("waiting_split_deferred")
    note = (
        f'waiting: num_requests_waiting_by_reason{{reason="capacity"}} on {split} of {reporting} pods, '
        f"leaving out {deferred:.1f} deferred (LoRA budget, KV transfer)"
    )
    if split < reporting:
        note += f"; num_requests_waiting on the other {reporting - split}"
    return note


def _capacity(configured: float | None, learned: Learned | None, window: float) -> tuple[float, str, bool] | None:
    """(capacity, label, bounded): a capacity learned less than a window ago is not trusted to grow far."""
    if configured is not None:
        return configured, "", False
    if learned is None:
        return None
    return learned.value, " (learned)", not learned.confirmed(window)


def _latency_correction(name: str, observed: float | None, slo: float, q: float, pods: int) -> list[Signal]:
    if observed is None or pods == 0 or observed <= slo:
        return []
    figure = pods * observed / slo  # relative: bounded by maxScaleUpRate x pods in `recommend`
    detail = f"{name} p{q * 100:g} {observed * 1000:.0f}ms > {slo * 1000:.0f}ms on {pods} pods"
    return [Signal(name, figure, figure, detail, LATENCY, bounded=True)]


def learn_capacity(state: PolicyState, pool: PoolWindow, now: float) -> tuple[PolicyState, list[str]]:
    """Learn per-pod token throughput from pods that had a queue (they were running flat out)."""
    prefill, prefill_note = _learn(state.prefill, pool, "saturated_prompt_rate", "prefill", now)
    decode, decode_note = _learn(state.decode, pool, "saturated_generation_rate", "decode", now)
    notes = [n for n in (prefill_note, decode_note) if n]
    if prefill is state.prefill and decode is state.decode:  # nothing learned: the same state
        return state, notes
    return replace(state, prefill=prefill, decode=decode), notes


def _learn(old: Learned | None, pool: PoolWindow, figure: str, what: str, now: float) -> tuple[Learned | None, str]:
    """`figure`: a token rate > 0 of a serving pod with a queue of at least one (signals.POOL_FIGURES)."""
    observed = pool.count(figure)
    if not observed:
        return old, ""
    mean = pool.total(figure) / observed
    if old is None:
        new = Learned(mean, now, now)
    else:
        new = Learned(old.value + _LEARN_RATE * (mean - old.value), old.first, now)
    return new, f"{what} capacity learned: {new.value:.0f} tok/s/pod from {observed} queued pods"


@dataclass(frozen=True, slots=True)
class _Limits:
    """What limits each signal in this evaluation: the rate cap, and the capacity awaited."""

    pods: int
    cap: int  # maxScaleUpRate x pods, at least one more (from zero no bounded signal exists)
    rate: float
    awaited: int  # pods asked for, not reporting yet
    holding: bool  # queues are judged against the capacity asked for


def _limited(figures: WindowFigures, limits: _Limits) -> WindowFigures:
    """The window's signals with the rate cap on bounded ones, then the in-flight bound on queues and latency."""
    capped = [_capped(s, limits) for s in figures.signals]
    if not limits.holding:
        return WindowFigures(figures.window, tuple(capped))
    bound, why = _in_flight_bound(capped, limits)
    held = [_held(s, bound, why) if s.kind in (QUEUE, LATENCY) and s.replicas > bound else s for s in capped]
    return WindowFigures(figures.window, tuple(held))


def _in_flight_bound(signals: Sequence[Signal], limits: _Limits) -> tuple[float, str]:
    """What the arrival rate needs, plus as many again as are awaited, at most what it needs beyond those
    reporting; and why, for the signals it holds."""
    arrivals = max([float(limits.pods), *(a for s in signals if (a := s.arrivals) is not None)])
    extra = min(float(limits.awaited), arrivals - limits.pods)
    bound = float(max(limits.pods + limits.awaited, replicas_for(arrivals + extra)))
    if limits.awaited:
        return bound, f"at {bound:g}: {limits.awaited} pods asked for are not serving yet"
    return bound, f"at {bound:g}: pods that began serving within a cold start drain what built up while they loaded"


def _capped(signal: Signal, limits: _Limits) -> Signal:
    if not signal.bounded or signal.replicas <= limits.cap:
        return signal
    keep_up = None if signal.keep_up is None else min(signal.keep_up, limits.cap)
    why = f"capped at {limits.rate:g}x {limits.pods} pods"
    return _held(signal, limits.cap, why, "; ", keep_up)


def _held(signal: Signal, limit: float, why: str, sep: str = "; held ", keep_up: float | None = None) -> Signal:
    """`signal` at `limit`, saying why; `keep_up` replaces its own when given. Built directly: through
    dataclasses.replace, these copies were a fifth of a policy evaluation (docs/performance.md)."""
    detail = f"{signal.detail} ({signal.replicas:.1f}){sep}{why}"
    keep = signal.keep_up if keep_up is None else keep_up
    # the peak only ever holds pods: leave it
    return Signal(signal.name, limit, signal.peak, detail, signal.kind, keep, signal.bounded)


def _forecast(stable: WindowFigures, panic: WindowFigures, cold: ColdStart, limits: _Limits) -> Signal | None:
    """The panic window's arrivals above the stable window's, extrapolated over the cold start (at most 2x),
    and held like a queue while pods are awaited: it asks for pods, it does not bring arrivals of its own."""
    now_demand, then = _arrival_rate(panic), _arrival_rate(stable)
    apart = (stable.window - panic.window) / 2  # seconds between the windows' centres (equal windows agree)
    if now_demand <= then:
        return None
    slope = (now_demand - then) / apart
    ahead = min(now_demand + slope * cold.seconds, FORECAST_BOUND * now_demand)
    detail = (
        f"forecast: arrivals {now_demand:.1f} rising {slope:.3f}/s, over a {cold.seconds:g}s cold start"
        f" -> {ahead:.1f} (at most {FORECAST_BOUND:g}x)"
    )
    signal = Signal("forecast", ahead, ahead, detail, FORECAST)
    if not limits.holding:
        return signal
    bound, why = _in_flight_bound(panic.signals, limits)
    return _held(signal, bound, why) if ahead > bound else signal


def _arrival_rate(figures: WindowFigures) -> float:
    """Replicas the arrivals need (rate signals, and the arrival parts of queue signals): a queue that grows
    while pods load is capacity missing, not demand rising, and extrapolating it would buy the pods twice."""
    return max([0.0, *(a for s in figures.signals if (a := s.arrivals) is not None)])


def _absolute(figures: WindowFigures) -> float:
    return max([0.0, *(s.replicas for s in figures.signals if s.kind in (RATE, QUEUE))])


def recommend(
    spec: PolicySpec,
    state: PolicyState,
    stable: PoolWindow,
    panic: PoolWindow,
    now: float,
    activation_value: float | None = None,
    demand: GatewayDemand | None = None,
) -> tuple[Decision, PolicyState]:
    """The replica recommendation for a pool, and the state to carry to the next evaluation."""
    state, notes = _learning(spec, state, stable, now)
    pods = stable.count("serving")
    asleep = stable.asleep_count
    if asleep:
        notes.append(f"{asleep} pods asleep (engine_sleep_state): not capacity, not idle; held on top of the demand")
    flight = inflight.arrive(state.flight, pods, now)
    if flight.arrived_at == now:
        flight = replace(flight, backlog=panic.total("waiting"))
    cold = inflight.cold_start(spec.cold_start, flight)
    in_flight, late = inflight.awaited(flight, now, cold.seconds)
    if in_flight or late:
        notes.append(f"{in_flight} pods in flight, {late} late; {cold.describe(flight.arrivals)}")
    if spec.headroom < 1:
        notes.append(f"headroom {spec.headroom:g}: rate and queue signals are demand / {spec.headroom:g}")
    cap = max(math.ceil(spec.max_scale_up_rate * pods - 1e-9), pods + 1)
    # queues are judged against the capacity asked for while it is awaited, and for a cold start after
    # it began to serve while it drains what built up as it loaded (not once the queue outgrows that)
    draining = inflight.arrived_within(flight, now, cold.seconds) and panic.total("waiting") <= flight.backlog
    limits = _Limits(pods, cap, spec.max_scale_up_rate, in_flight + late, bool(in_flight + late) or draining)
    demand, state = _queue_growth(spec, state, demand, now)
    correction = slo_correction(state, now)
    sized = spec if correction == 1.0 else replace(spec, headroom=spec.headroom / correction)
    if correction > 1:
        notes.append(f"latency correction x{correction:.2f}: headroom {sized.headroom:.2f} (learned from an SLO miss)")
    gateway = (None, None) if demand is None else ((demand.stable, demand.growth), (demand.panic, demand.growth))
    stable_figures = _limited(window_figures(sized, stable, state, gateway[0]), limits)
    panic_figures = _limited(window_figures(sized, panic, state, gateway[1]), limits)
    settled = not in_flight + late and not inflight.arrived_within(flight, now, spec.stable_window)
    state, learned = _learn_slo(state, stable_figures, pods, correction, now) if settled else (state, None)
    if learned:
        notes.append(learned)
    want_stable = replicas_for(stable_figures.demand)
    want_panic = replicas_for(panic_figures.demand)
    ahead = _forecast(stable_figures, panic_figures, cold, limits) if spec.forecast else None
    if ahead is not None:
        panic_figures = WindowFigures(panic_figures.window, (*panic_figures.signals, ahead))
    want_ahead = replicas_for(panic_figures.demand)

    last_panic = state.last_panic
    if want_panic >= spec.panic_threshold * max(pods, 1) and want_panic > pods:
        last_panic = now
    in_panic = last_panic is not None and now - last_panic < spec.stable_window
    previous = state.demand if state.demand is not None else pods
    qualifiers: list[str] = []
    if in_panic:
        replicas = max(want_ahead, previous, pods)  # never down while in panic
        qualifiers.append("panic" if replicas == want_ahead else f"panic holds {replicas}")
        top = panic_figures.top
    else:
        replicas = want_stable
        top = stable_figures.top
        fits = min(pods, replicas_for(stable_figures.peak))  # scale down only as far as the peak still fits
        if fits > replicas:
            replicas = fits
            qualifiers.append(f"peak holds {replicas}")
        ceiling = max(previous, want_ahead)
        if replicas > ceiling:  # the stable window holds replicas; only the panic window adds them
            replicas = ceiling
            qualifiers.append(f"held at {ceiling}: the panic window asks {want_ahead}")
        if ahead is not None and replicas_for(ahead.replicas) > replicas:
            replicas, top = replicas_for(ahead.replicas), ahead
    demand_figure = replicas
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
        if replicas < 1:
            replicas = 1
            qualifiers.append(f"woken by activation {activation_value:g} > {spec.activation.threshold:g}")
    if spec.min_replicas is not None and replicas < spec.min_replicas:
        replicas = spec.min_replicas
        qualifiers.append(f"minReplicas {spec.min_replicas}")
    if spec.max_replicas is not None and replicas > spec.max_replicas:
        replicas = spec.max_replicas
        qualifiers.append(f"maxReplicas {spec.max_replicas}")

    serving = (pool_replicas if pool_replicas is not None else replicas) - asleep
    flight = inflight.ask(flight, max(0, serving), pods, now)
    state = PolicyState(
        last_panic=last_panic,
        prefill=state.prefill,
        decode=state.decode,
        seen_replicas=replicas if pods else state.seen_replicas,
        demand=demand_figure,
        flight=flight,
        queue_seen=state.queue_seen,
        slo=state.slo,
    )  # built directly, not by dataclasses.replace: a new field must be carried here too (test_policy_burst.py)
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
        pods=stable.by_name(),
        notes=tuple(notes),
        asleep_pods=asleep,
        ttft=stable.ttft.quantile(spec.ttft_quantile),
        itl=stable.itl.quantile(spec.itl_quantile),
        activation_value=activation_value,
        pool_replicas=pool_replicas,
        in_flight=in_flight,
        late=late,
        cold_start=cold,
        demand_value=demand.stable if demand is not None else None,
    )
    return decision, state


def slo_correction(state: PolicyState, now: float) -> float:
    """The learned factor on absolute demand, decaying back towards 1 (SLO_DECAY)."""
    if state.slo is None:
        return 1.0
    when, factor = state.slo
    return 1.0 + (factor - 1.0) * math.exp(-max(0.0, now - when) / SLO_DECAY)


def _learn_slo(
    state: PolicyState, stable: WindowFigures, pods: int, correction: float, now: float
) -> tuple[PolicyState, str | None]:
    """A latency SLO missed on settled pods that absolute demand says are nearly all needed means the
    pods' real capacity within the SLO is below their targets: learn the least factor that asks one more
    pod at this load (Dynamo's planner corrects its capacity model from observed latency the same way)."""
    missed = [s for s in stable.signals if s.kind == LATENCY]
    load = _absolute(stable)
    if not missed or load <= pods - 1:  # a latency signal needs a pod serving: a load of 0 stops here too
        return state, None
    factor = min(SLO_BOUND, (pods + SLO_STEP) * correction / load)  # load x factor = pods + a step: one more pod
    if factor <= correction:
        return state, None
    note = f"latency correction learned: x{factor:.2f} ({missed[0].name} missed on {pods} pods at load {load:.2f})"
    return replace(state, slo=(now, factor)), note


def _queue_growth(
    spec: PolicySpec, state: PolicyState, demand: GatewayDemand | None, now: float
) -> tuple[GatewayDemand | None, PolicyState]:
    """A gateway queue's growth since a reading at least a panic window old (then this one is kept)."""
    if demand is None or spec.demand is None or spec.demand.operation == "rate":
        return demand, state
    seen = state.queue_seen
    if seen is not None and now > seen[0]:
        demand = replace(demand, growth=(demand.panic - seen[1]) / (now - seen[0]))
    if seen is None or now - seen[0] >= spec.panic_window:
        state = replace(state, queue_seen=(now, demand.panic))
    return demand, state


def _learning(spec: PolicySpec, state: PolicyState, stable: PoolWindow, now: float) -> tuple[PolicyState, list[str]]:
    """Learn capacities from the stable window; notes on what was learned, and on the queue read."""
    state, learned = learn_capacity(state, stable, now)
    configured = {"prefill": spec.prefill_capacity, "decode": spec.decode_capacity}
    notes = [n for n in learned if configured[n.split()[0]] is None]  # a configured capacity wins
    if spec.prefill_capacity is None and state.prefill is None and spec.phase != "decode":
        notes.append("prefill capacity not learned yet (no pod has had a queue)")
    if spec.decode_capacity is None and state.decode is None and spec.phase != "prefill":
        notes.append("decode capacity not learned yet (no pod has had a queue)")
    waiting = waiting_note(stable)
    if waiting:
        notes.append(waiting)
    return state, notes
