"""Screenshot a page of a site `bench site` wrote, in headless Chromium (the README shows the committed one).

    .venv/bin/python scripts/screenshot.py report/site/index.html report/site/index.png [--width 1400]

Needs Chromium and its driver (`bash scripts/setup.sh --test` installs them). The whole page is captured:
the window is resized to the document's height first.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("page", type=Path)
    ap.add_argument("png", type=Path)
    ap.add_argument("--width", type=int, default=1400)
    a = ap.parse_args()
    browser, driver_path = shutil.which("chromium") or "/usr/bin/chromium", shutil.which("chromedriver") or "/usr/bin/chromedriver"
    if not (Path(browser).exists() and Path(driver_path).exists()):
        print("error: chromium and chromedriver are needed: bash scripts/setup.sh --test", file=sys.stderr)
        return 2
    if not a.page.is_file():
        print(f"error: {a.page} does not exist; write the site first: bench site --out DIR", file=sys.stderr)
        return 2
    from selenium import webdriver

    options = webdriver.ChromeOptions()
    options.binary_location = browser
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", f"--window-size={a.width},1000",
                "--hide-scrollbars"):
        options.add_argument(arg)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=driver_path))
    try:
        driver.get(a.page.resolve().as_uri())
        height = driver.execute_script("return document.documentElement.scrollHeight")
        driver.set_window_size(a.width, min(int(height) + 20, 6000))
        driver.save_screenshot(str(a.png))
    finally:
        driver.quit()
    print(f"wrote {a.png}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
