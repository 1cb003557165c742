"""The service's web page in a real browser (Debian's chromium, headless, driven by selenium)
against the real server: start a small digits sweep from the form, watch its progress, see it
finish, download its best model, then start a longer one and cancel it from the page.

Screenshots go to the folder in CVSWEEP_SCREENSHOTS when it is set (look at them)."""

from __future__ import annotations

import json
import os
import time
import zipfile
from pathlib import Path

import pytest
import requests
from conftest import TINY_OVERRIDES, ServiceProcess, require

pytestmark = pytest.mark.slow

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
SWEEP_TIMEOUT_S = 600  # two tiny trials take well under a minute; the machine may be busy


@pytest.fixture
def service(tmp_path):
    server = ServiceProcess(tmp_path / "outputs")
    yield server.base_url
    server.kill_sweeps()
    server.close()


@pytest.fixture
def downloads(tmp_path) -> Path:
    folder = tmp_path / "downloads"
    folder.mkdir()
    return folder


@pytest.fixture
def browser(tmp_path, downloads):
    require(CHROMIUM.exists() and CHROMEDRIVER.exists(), "Debian's chromium and chromedriver")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                "--disable-background-networking", "--disable-component-update", "--disable-sync",
                f"--user-data-dir={tmp_path / 'profile'}", "--window-size=1400,1300"):
        options.add_argument(arg)
    options.add_experimental_option("prefs", {"download.default_directory": str(downloads),
                                              "download.prompt_for_download": False})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(downloads)})
    try:
        yield driver
    finally:
        driver.quit()


class Page:
    """The page's elements by their stable ids, and waits on them."""

    def __init__(self, driver):
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support.ui import Select, WebDriverWait

        self.driver, self.by, self.select_class, self.wait_class = driver, By, Select, WebDriverWait
        folder = os.environ.get("CVSWEEP_SCREENSHOTS")
        self.screenshots = Path(folder) if folder else None
        if self.screenshots:
            self.screenshots.mkdir(parents=True, exist_ok=True)

    def find(self, element_id: str):
        return self.driver.find_element(self.by.ID, element_id)

    def text(self, element_id: str) -> str:
        return self.stable(lambda: self.find(element_id).text)

    def stable(self, read):
        """``read()`` of elements the page may redraw meanwhile (every poll): tried again then."""
        from selenium.common.exceptions import StaleElementReferenceException

        for _ in range(20):
            try:
                return read()
            except StaleElementReferenceException:
                time.sleep(0.05)
        return read()

    def wait(self, condition, timeout: float = 60, message: str = ""):
        from selenium.common.exceptions import StaleElementReferenceException

        return self.wait_class(self.driver, timeout, poll_frequency=0.2,
                               ignored_exceptions=(StaleElementReferenceException,)).until(
            lambda _: condition(), message)

    def select(self, element_id: str, value: str) -> None:
        self.select_class(self.find(element_id)).select_by_value(value)

    def type(self, element_id: str, text: str) -> None:
        field = self.find(element_id)
        field.clear()
        field.send_keys(text)

    def sweep_rows(self):
        return self.driver.find_elements(self.by.CSS_SELECTOR, "#sweep-list tr[data-sweep-id]")

    def shot(self, name: str) -> None:
        if self.screenshots:
            self.driver.save_screenshot(str(self.screenshots / f"{name}.png"))

    def fill_form(self, n_trials: int, overrides: list[str]) -> None:
        self.select("dataset", "digits")
        self.type("n-trials", str(n_trials))
        self.type("extra-overrides", "\n".join(overrides))

    def start_sweep(self) -> str:
        """Submit the form; returns the id of the sweep view it opens."""
        before = self.find("sweep-id").text if self.find("sweep-view").is_displayed() else None
        self.find("start").click()
        self.wait(lambda: self.find("sweep-view").is_displayed() and self.text("sweep-id") not in ("", before),
                  message=f"no sweep view opened; form errors: {self.text('form-errors')!r}")
        return self.text("sweep-id")

    def wait_status(self, *statuses: str, timeout: float = SWEEP_TIMEOUT_S) -> str:
        self.wait(lambda: self.text("sweep-status") in statuses, timeout,
                  f"status stayed {self.text('sweep-status')!r}, wanted one of {statuses}")
        return self.text("sweep-status")


def _keras_overrides(epochs: int) -> list[str]:
    """The tiny model of the end-to-end tests, with this many epochs."""
    return [o for o in TINY_OVERRIDES if not o.startswith("training.epochs=")] + [f"training.epochs={epochs}"]


def test_start_watch_download_and_cancel_from_the_page(service, browser, downloads):
    page = Page(browser)
    browser.get(service)
    page.wait(lambda: len(page.find("dataset").find_elements(page.by.TAG_NAME, "option")) > 1,
              message="the form never got its options")
    browser.execute_script("performance.setResourceTimingBufferSize(100000)")  # the polls would fill 250
    options = requests.get(f"{service}/options", timeout=10).json()
    assert page.find("n-trials").get_attribute("value") == str(options["defaults"]["n_trials"])
    assert page.find("sweep-list-empty").is_displayed() and not page.sweep_rows()
    page.shot("01-empty-list")

    # A key the schema does not have: refused with its name beside the form, nothing started.
    page.fill_form(2, [*_keras_overrides(3), "training.no_such_key=1"])
    page.find("start").click()
    page.wait(lambda: "no_such_key" in page.text("form-errors"), message="the 422 never showed")
    page.shot("02-form-error")
    assert not page.sweep_rows() and not page.find("sweep-view").is_displayed()

    page.fill_form(2, _keras_overrides(3))
    assert "hydra.sweeper.n_trials=2" in page.text("overrides-preview")
    page.shot("03-form-filled")
    first = page.start_sweep()
    assert page.text("form-errors") == ""

    # Watch the progress text change until the sweep is over.
    seen, running_shot = [], False
    deadline = time.monotonic() + SWEEP_TIMEOUT_S
    while page.text("sweep-status") not in ("finished", "failed", "cancelled"):
        assert time.monotonic() < deadline, f"sweep {first} still {page.text('sweep-status')} after {SWEEP_TIMEOUT_S} s"
        progress = page.text("progress-text")
        if progress and (not seen or seen[-1] != progress):
            seen.append(progress)
        running = page.text("running-trials") if page.text("sweep-status") == "running" else ""
        if running and not running_shot:  # the first trial under way; better: one with an epoch done
            page.shot("04-sweep-running")
            running_shot = "epoch" in running
        time.sleep(0.2)
    assert page.text("sweep-status") == "finished", requests.get(f"{service}/sweeps/{first}/log", timeout=10).text
    seen.append(page.text("progress-text"))
    assert seen[-1].startswith("2 / 2"), seen
    assert len(set(seen)) >= 2, f"the progress never changed on the page: {seen}"

    # The view listened to the sweep's event stream (it ends after sweep_finished), not only polled.
    fetched = browser.execute_script("return performance.getEntriesByType('resource').map(e => e.name)")
    assert f"{service}/sweeps/{first}/events" in fetched, fetched
    assert page.stable(lambda: len(browser.find_elements(page.by.CSS_SELECTOR, "#trials-table tbody tr"))) == 2
    page.wait(lambda: page.find("report-link").is_displayed(), 30, "no report link after the sweep finished")
    assert not page.find("cancel").is_displayed()
    for link_id in ("report-link", "log-link", "dashboard-link"):  # each link leads somewhere real
        href = page.find(link_id).get_attribute("href")
        assert requests.get(href, timeout=30).status_code == 200, (link_id, href)
    result_link = page.stable(lambda: browser.find_element(page.by.CSS_SELECTOR, "#trials-table tbody tr").find_element(
        page.by.LINK_TEXT, "result").get_attribute("href"))
    assert "config" in requests.get(result_link, timeout=10).json()
    assert page.find("best").is_displayed() and page.text("best-fingerprint")
    page.find("best-config").find_element(page.by.TAG_NAME, "summary").click()
    config = json.loads(page.text("best-config-json"))
    assert config["model"]["filters"] == 8 and config["training"]["epochs"] == 3
    page.shot("05-sweep-finished")

    # The best model, downloaded by the browser: a .keras file Keras loads.
    link = page.find("best-model-link")
    assert link.is_displayed()
    link.click()
    page.wait(lambda: [p for p in downloads.iterdir() if p.suffix == ".keras"], 60, "no .keras download")
    (model_file,) = [p for p in downloads.iterdir() if p.suffix == ".keras"]
    assert zipfile.is_zipfile(model_file)
    assert {"config.json", "model.weights.h5"} <= set(zipfile.ZipFile(model_file).namelist())
    import keras

    model = keras.saving.load_model(model_file)
    assert model.output_shape == (None, 10)

    # The page fits a narrow window: nothing wider than the viewport but the tables' own scrollers.
    browser.set_window_size(420, 1000)
    assert browser.execute_script("return document.documentElement.scrollWidth <= window.innerWidth")
    page.sweep_rows()[0].click()  # in one column the view is below the list: opening it brings it up
    page.wait(lambda: browser.execute_script(
        "return document.getElementById('sweep-view').getBoundingClientRect().top < window.innerHeight / 2"),
        10, "the view stayed out of sight in a narrow window")
    page.shot("06-narrow-window")
    browser.set_window_size(1400, 1300)

    # A longer sweep, cancelled from the page once its first trial is under way.
    page.fill_form(20, _keras_overrides(50))
    second = page.start_sweep()
    assert second != first
    page.wait(lambda: page.text("running-trials"), SWEEP_TIMEOUT_S, "the second sweep never started a trial")
    assert page.find("cancel").is_displayed()
    page.find("cancel").click()
    page.wait_status("cancelled", timeout=120)
    assert not page.find("cancel").is_displayed()
    listed = lambda: {row.get_attribute("data-sweep-id"): row.text for row in page.sweep_rows()}  # noqa: E731
    page.wait(lambda: "cancelled" in listed().get(second, ""), 10, "the list never showed the cancel")
    ids = page.stable(lambda: [row.get_attribute("data-sweep-id") for row in page.sweep_rows()])
    assert ids == [second, first]  # newest first
    page.shot("07-cancelled")


def test_the_page_asks_for_the_token_and_keeps_the_session(tmp_path, browser):
    token = "page-test-token-5b1e"
    server = ServiceProcess(tmp_path / "outputs", token=token)
    base_url = server.base_url
    try:
        page = Page(browser)
        browser.get(base_url)
        page.wait(lambda: page.find("login").is_displayed(), message="no token field")
        assert not page.find("content").is_displayed()
        page.type("token", "wrong")
        page.find("login-submit").click()
        page.wait(lambda: page.text("login-error"), message="a wrong token said nothing")
        assert not page.find("content").is_displayed()
        page.shot("00-token")
        page.type("token", token)
        page.find("login-submit").click()
        page.wait(lambda: page.find("content").is_displayed() and page.find("dataset").get_attribute("value"),
                  message="the right token did not open the page")
        assert not page.find("login").is_displayed()
        browser.refresh()  # the HttpOnly cookie carries the session; the token is asked once
        page.wait(lambda: page.find("content").is_displayed(), message="a reload asked for the token again")
        assert not page.find("login").is_displayed()
    finally:
        server.close()
