"""`python -m drills NAME [--subscribers N]`: run one fault drill; with no name, list them."""

from __future__ import annotations

import argparse
import json
import sys

from drills.scenarios import DRILLS, report, run


def main(argv: list[str]) -> None:
    if not argv or argv[0] not in DRILLS:
        print("usage: python -m drills NAME [--subscribers N] [--json]\n\ndrills:")
        for name, drill in DRILLS.items():
            print(f"  {name:18} {drill.what}")
        sys.exit(0 if not argv else 2)
    parser = argparse.ArgumentParser(prog=f"python -m drills {argv[0]}")
    parser.add_argument("--subscribers", type=int, default=20_000)
    parser.add_argument(
        "--smtp-delay", type=float, default=0.0, help="seconds the SMTP server takes per message"
    )
    parser.add_argument("--timeout", type=float, default=0, help="give up after this long")
    parser.add_argument("--json", action="store_true", help="print the result as one JSON line")
    args = parser.parse_args(argv[1:])
    result = run(
        DRILLS[argv[0]], args.subscribers, smtp_delay=args.smtp_delay, timeout=args.timeout
    )
    if args.json:
        print(json.dumps(report(result)))
    else:
        print(
            f"{result.drill}: {result.subscribers:,} subscribers, state {result.state}, "
            f"{result.seconds:.1f} s\n"
            f"  delivered {result.delivered:,}  lost {result.lost}  duplicated "
            f"{result.duplicated} (at most {result.kills * result.claim_group}: kills x claim "
            f"group {result.claim_group})  wrongly mailed {result.wrongly_mailed}  kills "
            f"{result.kills}"
            f"  restarts {result.restarts}\n  deliveries by status: {result.counts}"
        )
        if result.by_worker:
            print(f"  sent by each worker: {result.by_worker}")
        if result.recovery_seconds is not None:
            print(f"  last reader delivered {result.recovery_seconds:.1f} s after the harm")
        for note in result.notes:
            print(f"  {note}")
        print("  OK" if result.ok else "  NOT OK")
    sys.exit(0 if result.ok else 1)


main(sys.argv[1:])
