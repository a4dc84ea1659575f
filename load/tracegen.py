"""Write seeded request traces as CSV (t_seconds, prompt_tokens, output_tokens); see scaler/sim/trace.py.

python load/tracegen.py --all load/traces                              # every shipped stress trace
python load/tracegen.py --scenario flash-crowd --out load/traces/flash-crowd.csv
python load/tracegen.py --hours 2 --seed 1 --out load/traces/day.csv   # a shape of your own

Scenarios (scaler/sim/scenarios.py):
{scenarios}
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path

from scaler.sim.scenarios import SCENARIOS, Scenario, scenario_rows
from scaler.sim.trace import TraceShape, generate, write_csv

USAGE = __doc__.format(scenarios="\n".join(f"  {s.name:<22} {s.summary}" for s in SCENARIOS.values()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--out", type=Path, help="write one trace here")
    what.add_argument("--all", type=Path, metavar="DIR", help="write every scenario to DIR/<name>.csv")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), help="a named stress trace (with --out)")
    parser.add_argument("--seed", type=int, help="[1, or the scenario's own]")
    defaults = TraceShape()
    for spec in fields(TraceShape):
        kind = int if spec.name == "max_total_tokens" else float
        parser.add_argument("--" + spec.name.replace("_", "-"), type=kind, default=getattr(defaults, spec.name))
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.all is not None:
        for scenario in SCENARIOS.values():
            _write(_seeded(scenario, args.seed), args.all / f"{scenario.name}.csv")
        return 0
    if args.scenario is not None:
        _write(_seeded(SCENARIOS[args.scenario], args.seed), args.out)
        return 0
    try:
        shape = TraceShape(**{f.name: getattr(args, f.name) for f in fields(TraceShape)})
    except ValueError as exc:
        parser.error(str(exc))
    count = write_csv(generate(shape, 1 if args.seed is None else args.seed), args.out)
    print(f"wrote {count} requests over {shape.hours:g} h to {args.out}", file=sys.stderr)
    return 0


def _seeded(scenario: Scenario, seed: int | None) -> Scenario:
    if seed is None:
        return scenario
    return replace(scenario, seed=seed)


def _write(scenario: Scenario, path: Path) -> None:
    count = write_csv(scenario_rows(scenario), path)
    print(f"wrote {count} requests ({scenario.name}, seed {scenario.seed}) to {path}", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
