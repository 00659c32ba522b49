"""``reloc serve`` end to end in a real headless Chromium (Debian's ``chromium`` + ``chromium-driver``).

Starts ``reloc serve`` as a process on a free loopback port with tiny random-weight
networks, uploads a synthetic spliced JPEG through the page, waits for the heat map, moves
the opacity and threshold sliders with the keyboard, downloads the case report and checks
it names the file's SHA-256, then stops the server and checks its work folder is gone.

The screenshot goes to the test's folder; ``RELOC_SCREENSHOT=docs/figures/serve.png`` also
copies it there, and ``RELOC_SERVE_ARGS="--model auto"`` (say) serves other models for it.
"""

from __future__ import annotations

import hashlib
import os
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from conftest import build_cached

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    if os.environ.get("CI"):
        raise RuntimeError("CI needs Debian's chromium and chromium-driver (the Makefile's test target installs them)")
    pytest.skip(
        "chromium / chromedriver not installed (apt-get install chromium chromium-driver)", allow_module_level=True
    )
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from reloc.models.weights import save_network

SRC = Path(__file__).resolve().parents[1] / "src"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def spliced_jpeg(path: Path) -> bytes:
    """A photo with a patch of another photo pasted in, saved as a JPEG of quality 85."""
    from skimage import data

    host = np.asarray(Image.fromarray(data.astronaut()).resize((384, 384)))
    donor = np.asarray(Image.fromarray(data.chelsea()).resize((300, 225)))
    forged = host.copy()
    forged[200:320, 40:180] = donor[60:180, 100:240]
    Image.fromarray(forged).save(path, format="JPEG", quality=85)
    return path.read_bytes()


@pytest.fixture
def server(tmp_path):
    """``reloc serve`` on a free port; yields (url, its TMPDIR); stopped with SIGINT after."""
    localizer, restorer = tmp_path / "dfcn.safetensors", tmp_path / "scunet.safetensors"
    save_network(build_cached("localizer", "dfcn", width=0.25, faithful=False), localizer)
    save_network(build_cached("restorer", "scunet", preset="tiny", residual=True), restorer)  # untrained: identity
    port = free_port()
    temporary = tmp_path / "server-tmp"
    temporary.mkdir()
    models = shlex.split(os.environ.get("RELOC_SERVE_ARGS", "")) or [
        "--localizer", str(localizer), "--restorer", str(restorer), "--window", "128", "--stride", "128"
    ]  # fmt: skip
    env = dict(os.environ, TMPDIR=str(temporary), PYTHONPATH=f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}")
    process = subprocess.Popen(
        [sys.executable, "-m", "reloc", "serve", *models, "--port", str(port), "--device", "cpu"],
        env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )  # fmt: skip
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_for(url, process)
        yield url, temporary
    finally:
        process.send_signal(signal.SIGINT)
        try:
            output = process.communicate(timeout=300)[0]
        except subprocess.TimeoutExpired:
            process.kill()
            output = process.communicate()[0]
        print(output)
    assert process.returncode == 0, output
    assert not any(temporary.iterdir()), f"the server left files behind: {list(temporary.rglob('*'))}"


def _wait_for(url: str, process: subprocess.Popen, seconds: float = 900) -> None:
    import urllib.request

    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"reloc serve exited: {process.stdout.read()}")
        try:
            with urllib.request.urlopen(f"{url}/api/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"reloc serve did not answer at {url} within {seconds} s")


@pytest.fixture
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1440,1200",
                     "--force-device-scale-factor=1", "--disable-gpu"):  # fmt: skip
        options.add_argument(argument)
    downloads = tmp_path / "downloads"
    downloads.mkdir()
    options.add_experimental_option(
        "prefs", {"download.default_directory": str(downloads), "download.prompt_for_download": False}
    )
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    driver.downloads = downloads
    try:
        yield driver
    finally:
        driver.quit()


def test_upload_view_adjust_and_download_a_case_report(server, browser, tmp_path):
    url, _ = server
    image = tmp_path / "suspect-photo.jpg"
    sha256 = hashlib.sha256(spliced_jpeg(image)).hexdigest()
    browser.get(url)
    wait = WebDriverWait(browser, 300)
    wait.until(lambda d: d.find_element(By.CSS_SELECTOR, "#model-select option"))
    browser.find_element(By.ID, "file-input").send_keys(str(image))

    card = wait.until(lambda d: d.find_element(By.CSS_SELECTOR, '.card[data-state="done"]'))
    heat = card.find_element(By.CSS_SELECTOR, '.pane[data-view="heatmap"] img')
    wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalWidth", heat) == 384)
    assert card.get_attribute("data-sha256") == sha256
    facts = card.find_element(By.CSS_SELECTOR, ".facts-list").text
    assert sha256 in facts and "about 85 (standard libjpeg tables)" in facts

    layer = card.find_element(By.CSS_SELECTOR, ".overlay-layer")
    assert layer.value_of_css_property("opacity") == "0.6"
    opacity = card.find_element(By.CSS_SELECTOR, "input.opacity")
    opacity.send_keys(Keys.END)
    assert layer.value_of_css_property("opacity") == "1"
    for _ in range(4):
        opacity.send_keys(Keys.ARROW_LEFT)
    assert layer.value_of_css_property("opacity") == "0.8"

    fraction = card.find_element(By.CSS_SELECTOR, ".fraction")
    mask = card.find_element(By.CSS_SELECTOR, '.pane[data-view="mask"] img')
    threshold = card.find_element(By.CSS_SELECTOR, "input.threshold")
    at_default, mask_at_default = fraction.text, mask.get_attribute("src")
    threshold.send_keys(Keys.HOME)  # threshold 0: every pixel's probability is above it
    assert fraction.text == "100.00%"
    threshold.send_keys(Keys.END)  # threshold 1: none is
    assert fraction.text == "0.00%"
    assert card.find_element(By.CSS_SELECTOR, ".threshold-value").text == "1.00"
    wait.until(lambda d: mask.get_attribute("src") != mask_at_default)
    threshold.send_keys(Keys.HOME + Keys.ARROW_RIGHT * 50)  # back to 0.50, one step at a time
    assert card.find_element(By.CSS_SELECTOR, ".threshold-value").text == "0.50"
    assert fraction.text == at_default

    card.find_element(By.CSS_SELECTOR, ".download-report").click()
    deadline = time.monotonic() + 60
    reports: list[Path] = []
    while time.monotonic() < deadline and not reports:
        reports = [p for p in browser.downloads.glob("reloc-*-report.html")]
        time.sleep(0.2)
    assert reports, f"no report downloaded: {list(browser.downloads.iterdir())}"
    report = reports[0].read_text()
    assert sha256 in report and "suspect-photo.jpg" in report and "Threshold</th><td>" in report

    browser.execute_script("window.scrollTo(0, 0)")
    shot = tmp_path / "serve.png"
    page_height, chrome = browser.execute_script(
        "return [document.documentElement.scrollHeight, window.outerHeight - window.innerHeight]"
    )
    browser.set_window_size(1440, min(page_height + chrome + 24, 2000))  # the whole card in one shot
    time.sleep(0.5)
    browser.save_screenshot(str(shot))
    assert Image.open(shot).size[0] == 1440
    if os.environ.get("RELOC_SCREENSHOT"):
        shutil.copy(shot, os.environ["RELOC_SCREENSHOT"])
