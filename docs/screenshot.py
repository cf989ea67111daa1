"""Take docs/journey-page.png from a running worker: `make demo`, wait a minute or two, then
`.venv/bin/python docs/screenshot.py [URL]` (Debian's chromium, as in the tests)."""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
from pathlib import Path

from playwright.async_api import async_playwright

_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync"]  # fmt: skip


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("url", nargs="?", default="http://127.0.0.1:6066/")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "journey-page.png")
    args = parser.parse_args()
    chromium = shutil.which("chromium")
    if chromium is None:
        sys.stderr.write("screenshot: error: chromium is not installed (run `make tools`)\n")
        return 1
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=chromium, args=_ARGS)
        page = await browser.new_page(viewport={"width": 1280, "height": 1180})
        await page.goto(args.url)
        await page.wait_for_function("() => document.getElementById('live').dataset.state === 'live'")
        await page.screenshot(path=args.out)
        await browser.close()
    sys.stdout.write(f"wrote {args.out}\n")
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
