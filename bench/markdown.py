"""Benchmark of the Markdown reader on crafted input: is it linear in the size of a line?

    python -m bench markdown [--sizes 65536,262144,2097152] [--pattern '**a ']

Times parse_markdown on one paragraph made of the pattern repeated to each size (64 KB
of `**a ` took the hand-written reader 8.5 to 19 seconds; markdown-it-py reads it in a
fraction of one), and prints seconds and microseconds per KB: a linear reader keeps the
second column flat as the size grows.
"""

from __future__ import annotations

import argparse
import time

from newsletter.articles.store import parse_markdown


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench markdown")
    parser.add_argument("--sizes", default="65536,262144,2097152")
    parser.add_argument("--pattern", default="**a ")
    args = parser.parse_args(argv)
    print(f"pattern {args.pattern!r}")
    print(f"{'bytes':>10} {'seconds':>9} {'µs/KB':>8}")
    for size in (int(s) for s in args.sizes.split(",")):
        text = "# Crafted\n\n" + args.pattern * (size // len(args.pattern))
        started = time.perf_counter()
        parse_markdown(text, source="crafted.md")
        seconds = time.perf_counter() - started
        print(f"{size:>10} {seconds:>9.2f} {seconds * 1e6 / (size / 1024):>8.0f}")
