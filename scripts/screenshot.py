"""Render an HTML file (a digest preview, say) to a PNG with headless Chromium.

    newsletter digest preview --format html -o build/digest.html
    python scripts/screenshot.py build/digest.html build/digest.png [--width 680]
"""

from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def screenshot(html: Path, png: Path, *, width: int = 680, height: int = 1600) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        raise SystemExit("screenshot: chromium is not installed (apt-get install chromium)")
    png.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as profile:
        # The flags keep a headless Chromium from reaching for the network at start.
        subprocess.run(
            [
                browser,
                "--headless",
                "--no-sandbox",
                "--disable-gpu",
                "--disable-quic",
                "--no-first-run",
                "--disable-background-networking",
                "--disable-component-update",
                "--disable-sync",
                "--hide-scrollbars",
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                f"--screenshot={png.resolve()}",
                html.resolve().as_uri(),
            ],
            check=True,
            capture_output=True,
            timeout=60,
        )
    if not png.is_file():
        raise SystemExit(f"screenshot: chromium wrote no {png}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("html", type=Path)
    parser.add_argument("png", type=Path)
    parser.add_argument("--width", type=int, default=680)
    parser.add_argument("--height", type=int, default=1600)
    args = parser.parse_args()
    screenshot(args.html, args.png, width=args.width, height=args.height)
    print(f"wrote {args.png}", file=sys.stderr)


if __name__ == "__main__":
    main()
