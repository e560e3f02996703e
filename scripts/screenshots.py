"""Screenshots of the operator's views from a running ``dagster dev`` (after ``make demo``).

    pip install -e '.[screenshots]'   # Playwright; the browser is the system's Chromium
    make demo && make dev             # in another shell; then:
    python scripts/screenshots.py --url http://127.0.0.1:3111

Writes docs/screenshots/{skills_overview,skills_overview_plots,promotion_launchpad}.png. No browser
is downloaded: ``--chromium`` (default /usr/bin/chromium, e.g. Debian's ``chromium`` package).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "docs" / "screenshots"
LOCATION = "skill_pipeline"

# (file name, path under the UI, text that must be on the page before the shot is taken, button to
# click first or None). Dagster 1.13 has no Plots tab: the Metadata section has a Table/Plots toggle.
VIEWS = [
    ("skills_overview", "/assets/skills_overview?view=overview", "real_world_pct/overall", None),
    ("skills_overview_plots", "/assets/skills_overview?view=overview", "real_world_pct/overall", "Plots"),
    ("promotion_launchpad", f"/locations/{LOCATION}/jobs/promotion/playground", "max_promotions", None),
]


def _dismiss_community_dialog(page) -> None:
    """A fresh UI greets with a "Join the Dagster community" dialog: skip it once per browser."""
    skip = page.get_by_role("button", name="Skip")
    try:
        skip.wait_for(timeout=5_000)
        skip.click()
    except Exception:  # not shown (already dismissed in this browser)
        pass


def shoot(url: str, chromium: str, out: Path, timeout_ms: int) -> list[Path]:
    from playwright.sync_api import TimeoutError as PlaywrightTimeout
    from playwright.sync_api import sync_playwright

    out.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"], headless=True)
        page = browser.new_page(viewport={"width": 1600, "height": 1000})
        for name, path, wait_for, click in VIEWS:
            page.goto(url.rstrip("/") + path, wait_until="domcontentloaded", timeout=timeout_ms)
            _dismiss_community_dialog(page)
            try:
                page.get_by_text(wait_for).first.wait_for(timeout=timeout_ms)
                page.wait_for_load_state("networkidle", timeout=timeout_ms)
            except PlaywrightTimeout:
                print(f"{name}: {wait_for!r} not seen within {timeout_ms} ms; shooting what is there", file=sys.stderr)
            if click:
                page.get_by_text(click, exact=True).first.click(timeout=timeout_ms)
            page.wait_for_timeout(2500)  # charts and tables render after the data arrives
            target = out / f"{name}.png"
            page.screenshot(path=str(target), full_page=True)
            written.append(target)
            print(target)
        browser.close()
    return written


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", default="http://127.0.0.1:3000", help="the running dagster dev UI")
    parser.add_argument("--chromium", default="/usr/bin/chromium", help="Chromium executable to drive")
    parser.add_argument("--out", type=Path, default=OUT, help="folder for the PNG files")
    parser.add_argument("--timeout-ms", type=int, default=60_000)
    args = parser.parse_args(argv)
    shoot(args.url, args.chromium, args.out, args.timeout_ms)
    return 0


if __name__ == "__main__":
    sys.exit(main())
