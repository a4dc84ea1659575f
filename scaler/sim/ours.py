"""What the simulator's own policy triggers carry beyond their per-pod targets, in one place to toggle.

`demo` and `evaluate` both build `policy: vllm` metadata and add `ours_extras(...)` to it:
- `demandQuery`: the gateway's flow-control queue (`gateway.queue_query`), demand held before any
  pod: the prefill (or unified) pool's queue, and requests each to want a decode batch slot next; a
  fleet replayed or run with it also gets the gateway's flow control (`fleet_flow_control`);
- `headroom`: how full a pod is meant to run (the per-pod targets are then the profile's ceilings);
- `coldStart`: the fleet's model-load time, as a user who knows it would write it;
- `forecast`: left to the policy's default unless FORECAST says otherwise.
Each key is sent only once the policy knows it (`scaler.policy_spec.POLICY_KEYS`): a key it does not
know would make every answer INVALID_ARGUMENT, and the emulated HPA would silently hold.
"""

from __future__ import annotations

from dataclasses import fields

from scaler.policy_spec import POLICY_KEYS, PolicySpec
from scaler.sim.gateway import FlowControl, queue_query

DEMAND_KEY, HEADROOM_KEY, COLD_START_KEY, FORECAST_KEY = "demandQuery", "headroom", "coldStart", "forecast"
GATEWAY_DEMAND = DEMAND_KEY in POLICY_KEYS  # switch the gateway's demand off here (or with --no-gateway-demand)
POLICY_HEADROOM = HEADROOM_KEY in POLICY_KEYS
TELL_COLD_START = COLD_START_KEY in POLICY_KEYS  # False: let the policy learn it from the pool's scale-ups
FORECAST: bool | None = None  # None: the policy's default
PROFILE_HEADROOM = 0.75  # without the policy's key: per-pod targets at 3/4 of what the profile can do


def default_headroom() -> float:
    """The policy's own default for `headroom`, or the share of the profile's ceilings used without it."""
    if POLICY_HEADROOM:
        for f in fields(PolicySpec):
            if f.name == HEADROOM_KEY and isinstance(f.default, float):
                return f.default
    return PROFILE_HEADROOM


def target_share(headroom: float) -> float:
    """The share of the profile's ceilings written into per-pod targets: all of them when the policy
    applies `headroom` itself, else the headroom."""
    return 1.0 if POLICY_HEADROOM else headroom


def ours_extras(
    namespace: str,
    inference_pool: str,
    headroom: float | None = None,
    gateway_demand: bool = True,
    cold_start: float | None = None,
) -> dict[str, str]:
    """The metadata keys our triggers add: demandQuery (the gateway's queue, for every phase), headroom, coldStart."""
    out: dict[str, str] = {}
    if gateway_demand and GATEWAY_DEMAND:  # decode too: each queued request wants a batch slot next
        out[DEMAND_KEY] = queue_query(namespace, inference_pool)
    if headroom is not None and POLICY_HEADROOM:
        out[HEADROOM_KEY] = f"{headroom:g}"
    if cold_start is not None and TELL_COLD_START:
        out[COLD_START_KEY] = f"{cold_start:g}s"
    if FORECAST is not None and FORECAST_KEY in POLICY_KEYS:
        out[FORECAST_KEY] = "true" if FORECAST else "false"
    return out


def fleet_flow_control(gateway_demand: bool = True) -> FlowControl | None:
    """The gateway's flow control goes with the demand query: the queue it holds is what the query reads."""
    return FlowControl() if gateway_demand and GATEWAY_DEMAND else None
