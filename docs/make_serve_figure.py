"""Screenshot of ``reloc serve`` on a camera-size photo: ``docs/figures/serve-large.png``.

    python docs/make_serve_figure.py [--photo ../shared/photos-large/plasma_Path.jpg] [--window 512]

Starts ``reloc serve`` with the shipped models (``--model auto``) on a free loopback port,
makes a copy-move edit of a 2560x1600 photograph (a block copied 600 px to the right,
saved as PNG), uploads it in headless Chromium (Debian's ``chromium`` + ``chromium-driver``)
and saves the page once the heat map is shown. ``--window 512`` serves the pre-release
tiling (512-px tiles, no overlap) instead, for comparison (``serve-large-512.png``).
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def copy_moved(photo: Path, out: Path) -> Path:
    """The photo at 2560x1600 with a 360x280 block copied 600 px to the right, as PNG."""
    pixels = np.asarray(Image.open(photo).convert("RGB").resize((2560, 1600), Image.LANCZOS)).copy()
    pixels[900:1180, 1500:1860] = pixels[900:1180, 900:1260]
    Image.fromarray(pixels).save(out)
    return out


def main(argv: list[str] | None = None) -> int:
    from selenium import webdriver
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--photo", type=Path, default=ROOT.parent / "shared" / "photos-large" / "plasma_Path.jpg")
    parser.add_argument("--window", type=int, help="serve with --window N --stride N (the pre-release tiling)")
    args = parser.parse_args(argv)
    name = "serve-large.png" if args.window is None else f"serve-large-{args.window}.png"
    with tempfile.TemporaryDirectory() as work:
        image = copy_moved(args.photo, Path(work) / "edited-photo.png")
        port = free_port()
        command = [sys.executable, "-m", "reloc", "serve", "--port", str(port), "--model", "auto"]
        if args.window is not None:
            command += ["--window", str(args.window), "--stride", str(args.window)]
        server = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        try:
            url = f"http://127.0.0.1:{port}"
            for _ in range(600):
                try:
                    with urllib.request.urlopen(f"{url}/api/health", timeout=2):
                        break
                except OSError:
                    time.sleep(0.5)
            options = webdriver.ChromeOptions()
            options.binary_location = shutil.which("chromium")
            for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,1400",
                             "--force-device-scale-factor=1", "--disable-gpu"):  # fmt: skip
                options.add_argument(argument)
            service = webdriver.ChromeService(executable_path=shutil.which("chromedriver"))
            browser = webdriver.Chrome(service=service, options=options)
            try:
                browser.get(url)
                wait = WebDriverWait(browser, 900)
                wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#model-select option"))
                browser.find_element(By.ID, "file-input").send_keys(str(image))
                card = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, '.card[data-state="done"]'))
                heat = card.find_element(By.CSS_SELECTOR, '.pane[data-view="heatmap"] img')
                wait.until(
                    lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", heat)
                )
                time.sleep(1)
                shot = ROOT / "docs" / "figures" / name
                browser.save_screenshot(str(shot))
                print(f"wrote {shot}")
            finally:
                browser.quit()
        finally:
            server.terminate()
            server.wait(timeout=60)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
