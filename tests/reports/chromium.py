"""Which headless Chromium the HTML report tests drive, or why there is none.

``make browser`` runs this module (``python -m tests.reports.chromium``: the path on stdout,
exit 0; the reason on stderr, exit 1) to decide whether to install a browser, and the browser
tests import it to decide whether to skip: one search, so the two cannot disagree.
"""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

# Debian's package, Ubuntu's and Fedora's name for it, and Google's builds.
NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")

MISSING = (
    f"no Chromium: none of {', '.join(NAMES)} is on PATH and Playwright has no browser of its "
    "own installed. `make browser` installs Debian's chromium only where apt-get exists and "
    "runs as root or through passwordless sudo; elsewhere install one of them, or run "
    "`.venv/bin/playwright install chromium`"
)


def find_chromium() -> Path | None:
    """A Chromium on PATH, else the one Playwright manages (``playwright install``), else None."""
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return Path(found)
    return _playwright_chromium()


def _playwright_chromium() -> Path | None:
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return None
    # Playwright names the path where its own download would be, whether or not it is there.
    with sync_playwright() as playwright:
        path = Path(playwright.chromium.executable_path)
    return path if path.is_file() else None


if __name__ == "__main__":
    chromium = find_chromium()
    if chromium is None:
        print(MISSING, file=sys.stderr)
        sys.exit(1)
    print(chromium)
