"""The console in a real headless browser (Debian's chromium, driven by Selenium through chromedriver; never a
downloaded browser): sign in, create a key and use it through the API, see the request in the request log and the
usage chart, revoke the key and see it refused, stream an answer in the playground, disable a deployment, switch
to Chinese. A screenshot of each page is saved (in the test's temporary directory, or in $MODELWAY_SCREENSHOTS)."""

from __future__ import annotations

import os
import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from gw import MASTER_KEY, RunningGateway  # (tests/server, put on the path by conftest)

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.remote.webelement import WebElement  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CALLER_SECRET = "sk-proj-consolesecret12345678"
DRIVER = shutil.which("chromedriver")

pytestmark = pytest.mark.skipif(
    CHROMIUM is None or DRIVER is None,
    reason="needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver; .ci/run does)",
)


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    where = Path(os.environ.get("MODELWAY_SCREENSHOTS") or tmp_path_factory.mktemp("screenshots"))
    where.mkdir(parents=True, exist_ok=True)
    return where


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--window-size=1400,1000", "--lang=en-US"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=options)
    driver.set_page_load_timeout(20)
    try:
        yield driver
    finally:
        driver.quit()


class Console:
    def __init__(self, driver: Any, gw: RunningGateway, shots: Path) -> None:
        self.d, self.gw, self.shots = driver, gw, shots

    def wait(self, what: Callable[[], Any], seconds: float = 10, message: str = "") -> Any:
        # (a page re-renders as its data arrives: an element found a moment ago may be gone)
        waiting = WebDriverWait(
            self.d, seconds, poll_frequency=0.1, ignored_exceptions=(StaleElementReferenceException,)
        )
        return waiting.until(lambda _: what(), message)

    def find(self, testid: str, seconds: float = 10) -> WebElement:
        return self.wait(lambda: self.d.find_element(By.CSS_SELECTOR, f"[data-testid={testid!r}]"), seconds, testid)

    def all(self, css: str) -> list[WebElement]:
        return list(self.d.find_elements(By.CSS_SELECTOR, css))

    def go(self, page: str) -> None:
        self.d.get(f"{self.gw.url}/ui#/{page}")
        self.wait(
            lambda: (
                self.d.execute_script("return document.querySelector('section[data-page]')?.dataset.page")
                == page.split("?")[0]
            )
        )

    def shot(self, name: str) -> None:
        time.sleep(0.2)  # (the last paint)
        self.d.save_screenshot(str(self.shots / f"console-{name}.png"))

    def errors(self) -> list[str]:
        return [e.text for e in self.all("[data-testid=error]")]

    def js_errors(self) -> list[str]:
        return [e["message"] for e in self.d.get_log("browser") if e["level"] == "SEVERE"]


@pytest.fixture(scope="module")
def console(browser: Any, gateway: RunningGateway, shots: Path) -> Console:
    c = Console(browser, gateway, shots)
    browser.get(gateway.url + "/ui")
    c.find("signin-key").send_keys("not-the-key")
    c.find("signin-submit").click()
    c.wait(lambda: "Invalid key" in c.find("signin-error").text, message="a wrong key is refused")
    c.shot("signin")
    key = c.find("signin-key")
    key.clear()
    key.send_keys(MASTER_KEY)
    c.find("signin-submit").click()
    c.find("nav-overview")
    return c


def _client(gw: RunningGateway, key: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gw.base_url, api_key=key, max_retries=0)


def test_a_key_made_in_the_console_works_shows_in_the_log_and_the_usage_and_is_refused_once_revoked(
    console: Console, gateway: RunningGateway
) -> None:
    c = console
    c.go("keys")
    c.find("key-new").click()
    c.find("key-name").send_keys("team-a")
    c.find("key-budget").send_keys("0.5")  # (a fraction: the number field must take it)
    c.find("key-save").click()
    secret = c.find("secret").text
    assert secret.startswith("mw-")
    c.find("secret-copy").click()
    c.wait(lambda: c.find("secret-copy").text == "Copied")
    c.shot("key-secret")
    c.find("secret-close").click()
    c.wait(lambda: "team-a" in c.find("keys-table").text)

    with _client(gateway, secret) as api:
        message = f"hello, my key is {CALLER_SECRET}"
        answer = api.chat.completions.create(model="gpt", messages=[{"role": "user", "content": message}])
    assert answer.choices[0].message.content

    def logged() -> bool:
        c.go("requests")
        return "team-a" in c.find("requests-table").text

    c.wait(logged, 15, "the request appears in the request log")
    row = next(r for r in c.all("[data-testid=requests-table] tbody tr") if "team-a" in r.text)
    assert "200" in row.text and "gpt" in row.text
    c.shot("requests")
    row.click()
    record = c.find("record")
    assert answer.id.removeprefix("chatcmpl-") in record.text or "request_id" in record.text
    # the bodies (request_log.bodies), laid out as JSON, the caller's secret masked
    request_body = c.find("record-request-body").text
    assert '"content": "hello, my key is [redacted]"' in request_body and "\n  " in request_body
    assert CALLER_SECRET not in record.text
    # (the simulator echoes the message: the answer's copy of the secret is masked too)
    assert answer.choices[0].message.content == f"You said: {message}"
    assert '"content": "You said: hello, my key is [redacted]"' in c.find("record-response-body").text
    c.shot("request-record")
    c.find("record-close").click()

    c.go("usage?group_by=key&range=86400")
    c.wait(lambda: "team-a" in c.find("usage-table").text, message="the key's usage")
    assert int(c.find("usage-chart").find_element(By.CSS_SELECTOR, "[data-points]").get_attribute("data-points")) >= 1
    assert c.all("[data-testid=usage-chart] rect")
    c.shot("usage")

    c.go("keys")
    c.wait(lambda: c.all("[data-testid=spend-team-a]"), message="spend against budget is shown")
    fetched = c.d.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
    assert not [u for u in fetched if "/admin/keys/" in u], "the keys' spend comes with the list, not a call per key"
    c.shot("keys")
    c.find("revoke-team-a").click()
    c.d.switch_to.alert.accept()
    c.wait(lambda: any("team-a" in r.text and "revoked" in r.text for r in c.all("[data-testid=keys-table] tbody tr")))
    deadline = time.monotonic() + 5
    with _client(gateway, secret) as api:
        while True:
            try:
                api.chat.completions.create(model="gpt", messages=[{"role": "user", "content": "again"}])
            except openai.AuthenticationError:
                break
            assert time.monotonic() < deadline, "the revoked key still works"
            time.sleep(0.2)
    assert not c.errors()


def test_the_playground_streams_an_answer_with_its_usage_and_latency(console: Console) -> None:
    c = console
    c.go("playground")
    c.find("play-model")
    c.find("play-send").click()
    c.wait(lambda: c.find("play-answer").text.strip(), message="streamed text")
    c.find("play-ttft")
    assert c.find("play-completion").text.split()[-1] != "—"
    c.shot("playground")
    assert not c.errors()

    def newest_is_the_stream() -> bool:  # (the master key's: no key name)
        c.go("requests")
        cells = c.all("[data-testid=requests-table] tbody tr:first-child td")
        return len(cells) > 2 and cells[2].text == "—"

    c.wait(newest_is_the_stream, 15, "the stream appears in the request log")
    c.all("[data-testid=requests-table] tbody tr")[0].click()
    assert "Say hello" in c.find("record-request-body").text
    assert "streamed answer" in c.find("record-response-body-none").text
    c.find("record-close").click()


def test_a_deployment_disabled_in_the_console_leaves_rotation(console: Console, gateway: RunningGateway) -> None:
    c = console
    c.go("models")
    c.find("disable-openai/gpt-4o").click()
    c.wait(lambda: c.all("[data-testid='enable-openai/gpt-4o']"), message="the deployment shows as disabled")
    c.shot("models")
    with _client(gateway, MASTER_KEY) as api:
        served = {
            api.chat.completions.with_raw_response.create(
                model="gpt", messages=[{"role": "user", "content": "x"}]
            ).headers["x-modelway-deployment"]
            for _ in range(8)
        }
    assert served == {"openai/gpt-4o-mini"}
    c.find("enable-openai/gpt-4o").click()
    c.wait(lambda: c.all("[data-testid='disable-openai/gpt-4o']"))


def test_the_overview_and_chinese(console: Console) -> None:
    c = console
    c.go("overview?range=86400")
    assert int(c.find("card-requests").text.split()[-1].replace(",", "")) >= 1
    c.find("overview-models")
    c.shot("overview")
    lang = c.d.find_element(By.ID, "lang")
    lang.find_element(By.CSS_SELECTOR, "option[value=zh]").click()
    c.wait(lambda: c.find("nav-overview").text == "概览")
    c.shot("overview-zh")
    c.d.find_element(By.ID, "lang").find_element(By.CSS_SELECTOR, "option[value=en]").click()
    c.wait(lambda: c.find("nav-overview").text == "Overview")
    assert not [e for e in c.js_errors() if "favicon" not in e and "401" not in e], c.js_errors()
