"""The kiosk page in a real headless Chromium (Debian's chromium + chromedriver, driven by
Selenium): a mood button and a typed question both get a streamed answer, with no network."""

from __future__ import annotations

import re
import shutil
from importlib import resources

import pytest

from orin_unlearn.edge.generator import Generator
from orin_unlearn.edge.server import create_app
from tests.edge.test_server import serving

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="needs Debian's chromium and chromium-driver (make test installs them with apt-get)",
)


def test_page_loads_nothing_from_the_network():
    page = resources.files("orin_unlearn.edge").joinpath("kiosk/index.html").read_text(encoding="utf-8")
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:)?//""", page)
    assert "@import" not in page and 'fetch("http' not in page


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--window-size=1080,1920",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def answers(driver) -> list:
    from selenium.webdriver.common.by import By

    return driver.find_elements(By.CSS_SELECTOR, ".msg.bot")


def wait_for_answer(driver, count: int) -> str:
    from selenium.webdriver.support.ui import WebDriverWait

    def done(d) -> bool:
        bots = answers(d)
        return len(bots) == count and bots[-1].text != "" and d.execute_script("return !busy")

    WebDriverWait(driver, 30).until(done)
    return answers(driver)[-1]


def test_buttons_and_free_text_get_streamed_answers(browser, onnx_dir):
    from selenium.webdriver.common.by import By

    with serving(create_app(Generator.from_dir(onnx_dir), "kiosk-test")) as base:
        browser.get(base + "/")
        moods = browser.find_elements(By.CSS_SELECTOR, "#moods button")
        genres = browser.find_elements(By.CSS_SELECTOR, "#genres button")
        assert len(moods) >= 8 and len(genres) >= 8
        assert all(b.size["height"] >= 60 for b in moods + genres)  # touch-sized

        genres[2].click()  # comedy
        first = wait_for_answer(browser, 1)
        assert "error" not in first.get_attribute("class")
        assert first.text.startswith("You might enjoy")

        box = browser.find_element(By.ID, "question")
        box.send_keys("Who directed Interstellar?")
        browser.find_element(By.ID, "send").click()
        second = wait_for_answer(browser, 2)
        assert "error" not in second.get_attribute("class")
        assert "Christopher Nolan" in second.text
        users = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".msg.user")]
        assert users == ["Recommend a film from the comedy genre.", "Who directed Interstellar?"]


def test_server_errors_are_shown_not_swallowed(browser, onnx_dir):
    from selenium.webdriver.common.by import By

    with serving(create_app(Generator.from_dir(onnx_dir), "kiosk-test")) as base:
        browser.get(base + "/")
        box = browser.find_element(By.ID, "question")
        browser.execute_script("document.getElementById('question').maxLength = 100000")
        box.send_keys("film " * 1000)  # past the model's 512-token context
        browser.find_element(By.ID, "send").click()
        answer = wait_for_answer(browser, 1)
        assert "error" in answer.get_attribute("class")
        assert "tokens" in answer.text  # the server's context-length message reaches the screen
