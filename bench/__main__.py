"""`python -m bench NAME [options]`: run one benchmark; with no name, list them."""

from __future__ import annotations

import importlib
import sys

BENCHMARKS = {
    "import": ("bench.import_subscribers", "CSV subscriber import on PostgreSQL"),
    "render": ("bench.render", "digest composition and rendering, µs per message"),
    "send": ("bench.send", "a digest end to end through real workers, against the raw SMTP limit"),
    "scale": ("bench.scale", "one digest to a million subscribers: times, memory, database size"),
    "markdown": ("bench.markdown", "Markdown import of crafted lines: seconds by size (linear?)"),
    "signup": (
        "bench.signup",
        "POST /subscribe under load (wrk), against a minimal one-row endpoint",
    ),
    "redirect": (
        "bench.redirect",
        "a digest's counted story link (/r/) under load (wrk), against a minimal redirect",
    ),
    "topics": (
        "bench.public_topics",
        "the topics the reader's pages offer: read afresh per page view, and kept",
    ),
    "signup-timing": (
        "bench.signup_timing",
        "POST /subscribe's time for new, pending, subscribed and suppressed addresses",
    ),
}


def main() -> None:
    if len(sys.argv) < 2 or sys.argv[1] not in BENCHMARKS:
        print("usage: python -m bench NAME [options]\n\nbenchmarks:")
        for name, (_, what) in BENCHMARKS.items():
            print(f"  {name:10} {what}")
        sys.exit(0 if len(sys.argv) < 2 else 2)
    module, _ = BENCHMARKS[sys.argv[1]]
    importlib.import_module(module).main(sys.argv[2:])


main()
