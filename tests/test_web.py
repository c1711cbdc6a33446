"""`gptface serve`: the editing page driven in a real headless Chromium (Debian's chromium + chromium-driver)."""
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.request

import cv2
import pytest

from tests import crawl_fixtures as cf

pytest.importorskip("fastapi", reason="the [serve] extra is not installed: pip install -e '.[serve]'")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed (the [test] extra)")
CHROMIUM, DRIVER = shutil.which("chromium"), shutil.which("chromedriver")
needs_browser = pytest.mark.skipif(not (CHROMIUM and DRIVER),
                                   reason="no browser: apt-get install chromium chromium-driver (.ci/run does)")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from gptface_jax.serving import web  # noqa: E402


def test_numbers_are_parsed_or_refused_by_name():
    assert web.numbers("0, 2 3.5") == [0.0, 2.0, 3.5]
    with pytest.raises(ValueError, match="seeds: 'a' is not a list of numbers"):
        web.numbers("a", int, "seeds")
    with pytest.raises(ValueError, match=r"lambda: every value must lie in \[0, 20\]"):
        web.numbers("-1", float, "lambda", 0, 20)


def test_the_studio_compiles_each_decoding_config_once(trained_workdir):
    studio = web.Studio(trained_workdir, detector="haar", held_out=2)
    photo = studio.photo(None, 1)
    first = studio.edit(photo, ["mouth"], None, "a smiling woman", [0], [0.0, 2.0], 0.0, 4)
    compiled = dict(studio.cache)
    second = studio.edit(photo, ["eyes"], None, "a man", [1], [0.0, 2.0], 0.0, 4)
    assert studio.cache == compiled and len(compiled) == 3  # two guidance strengths + the match score
    assert len(first["pasted"]) == len(second["pasted"]) == 2
    # a negative caption only moves the guided decode: at lambda 0 and w 0 it changes nothing
    steered = studio.edit(photo, ["mouth"], None, "a smiling woman", [0], [0.0, 2.0], 0.0, 4,
                          negative="a person wearing a face mask")
    assert steered["pasted"][0] == first["pasted"][0] and steered["pasted"][0]["guidance"] == 0.0
    assert steered["pasted"][1]["image"] != first["pasted"][1]["image"]
    faces = studio.generate("a man", [0], [2.0], 0.0, 4, negative="a woman")
    assert len(faces["faces"]) == 1
    with pytest.raises(ValueError, match="held-out face 7 does not exist"):
        studio.photo(None, 7)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server(trained_workdir):
    port = _free_port()
    env = {**os.environ, "JAX_PLATFORMS": "cpu", "JAX_NUM_CPU_DEVICES": "1"}
    process = subprocess.Popen([sys.executable, "-m", "gptface_jax.cli", "serve", "--workdir", trained_workdir,
                                "--port", str(port)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        for _ in range(240):
            try:
                urllib.request.urlopen(url + "api/info", timeout=1)
                break
            except OSError:
                if process.poll() is not None:
                    raise AssertionError("gptface serve exited:\n" + process.stdout.read().decode()) from None
                time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


@pytest.fixture
def browser():
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1200,1400"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(DRIVER), options=options)
    yield driver
    driver.quit()


@needs_browser
def test_the_page_edits_an_uploaded_photo_and_reports_bad_input(server, browser, tmp_path):
    photo, not_an_image = tmp_path / "astronaut.png", tmp_path / "notes.txt"
    cv2.imwrite(str(photo), cv2.cvtColor(cf.astronaut(), cv2.COLOR_RGB2BGR))
    not_an_image.write_text("not a photo")
    browser.get(server)
    wait = WebDriverWait(browser, 240)
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    browser.find_element(By.ID, "photo").send_keys(str(photo))
    browser.find_element(By.ID, "region-mouth").click()
    text = browser.find_element(By.ID, "text")
    text.clear()
    text.send_keys("a smiling woman")
    browser.find_element(By.ID, "seeds").clear()
    browser.find_element(By.ID, "seeds").send_keys("0")
    browser.find_element(By.ID, "run-edit").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results img.result")) >= 3)  # grid + 2 pasted
    images = browser.find_elements(By.CSS_SELECTOR, "#results img.result")
    assert all(browser.execute_script("return arguments[0].naturalWidth", i) > 0 for i in images)
    pasted = images[1]
    assert browser.execute_script("return arguments[0].naturalWidth", pasted) == 512  # the photo's own size
    assert browser.find_element(By.ID, "error").text == ""
    browser.save_screenshot(str(tmp_path / "page.png"))

    browser.find_element(By.ID, "photo").send_keys(str(not_an_image))
    wait.until(lambda d: d.find_element(By.ID, "error").text != "")
    message = browser.find_element(By.ID, "error").text
    assert "the upload" in message and "Traceback" not in message
