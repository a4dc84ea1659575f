"""Write a seeded request trace as CSV (t_seconds, prompt_tokens, output_tokens); see scaler/sim/trace.py.

python load/tracegen.py --hours 2 --seed 1 --out load/traces/day.csv
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from dataclasses import fields
from pathlib import Path

from scaler.sim.trace import TraceShape, generate, write_csv


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, required=True)
    defaults = TraceShape()
    for spec in fields(TraceShape):
        kind = int if spec.name == "max_total_tokens" else float
        parser.add_argument("--" + spec.name.replace("_", "-"), type=kind, default=getattr(defaults, spec.name))
    args = parser.parse_args(argv)
    try:
        shape = TraceShape(**{f.name: getattr(args, f.name) for f in fields(TraceShape)})
    except ValueError as exc:
        parser.error(str(exc))
    count = write_csv(generate(shape, args.seed), args.out)
    print(f"wrote {count} requests over {shape.hours:g} h to {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
