"""The web page in a real headless browser (Debian's chromium), served by `pgsync-dossier serve`."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the optional 'api' extra is not installed")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER), reason="Debian's chromium and chromium-driver are not installed"
)

from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests.harness import (  # noqa: E402
    TOKEN,
    Site,
    add_dossiers,
    attach,
    make_api_token,
    make_list,
    serving,
    write_config,
)


@pytest.fixture
def served(sites: dict[str, Site], tmp_path: Path) -> Iterator[str]:
    sub = sites["subscriber_a"]
    with serving(write_config(tmp_path / "web.yaml", sub.node, "subscriber", web_ui=True)) as url:
        yield url


@pytest.fixture
def browser() -> Iterator[object]:
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--no-first-run",
        "--disable-sync",
        "--disable-quic",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=CHROMEDRIVER), options=options)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def test_operator_attaches_and_detaches_from_the_page(
    sites: dict[str, Site], served: str, browser: object
) -> None:
    driver: object = browser
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "Wanted"), make_list(sub.node, "Replica")
    add_dossiers(leader.node, remote, 5)
    wait = WebDriverWait(driver, 30)
    driver.get(served + "/")  # type: ignore[attr-defined]
    find = driver.find_element  # type: ignore[attr-defined]

    assert "API token" in find(By.TAG_NAME, "fieldset").text
    find(By.ID, "token").send_keys("wrong token")
    find(By.ID, "connect").click()
    wait.until(
        expected_conditions.text_to_be_present_in_element((By.ID, "message"), "unknown or revoked API token")
    )
    # The sync token is refused, with what to do instead.
    find(By.ID, "token").clear()
    find(By.ID, "token").send_keys(TOKEN)
    find(By.ID, "connect").click()
    wait.until(
        expected_conditions.text_to_be_present_in_element(
            (By.ID, "message"), "pgsync-dossier api-token create NAME"
        )
    )

    find(By.ID, "token").clear()
    find(By.ID, "token").send_keys(make_api_token(sub))
    find(By.ID, "connect").click()
    wait.until(
        expected_conditions.text_to_be_present_in_element((By.ID, "message"), "No replicated lists yet")
    )

    find(By.NAME, "remote_dossier_list").send_keys(str(remote))
    find(By.NAME, "remote_url").send_keys(leader.leader_url)
    find(By.NAME, "slave_dossier_list").send_keys(str(local))
    find(By.CSS_SELECTOR, "#attach button[type=submit]").click()
    wait.until(
        expected_conditions.text_to_be_present_in_element((By.ID, "message"), f"List {local} now replicates")
    )
    row = wait.until(
        expected_conditions.presence_of_element_located((By.CSS_SELECTOR, f"tr[data-list='{local}']"))
    )
    assert "Replica" in row.text
    assert len(sub.node.execute("SELECT * FROM pgsync.link")) == 1
    # Each row says what its stream does (the copy, then streaming).
    assert any(word in row.text for word in ("streaming", "paused: copying", "no subscription"))

    # A refusal shows the server's message.
    busy = make_list(sub.node, "Busy")
    add_dossiers(sub.node, busy, 1)
    slave = find(By.NAME, "slave_dossier_list")
    slave.clear()
    slave.send_keys(str(busy))
    find(By.CSS_SELECTOR, "#attach button[type=submit]").click()
    wait.until(
        expected_conditions.text_to_be_present_in_element((By.ID, "message"), "synchronization canceled")
    )

    def click_detach(d: object) -> bool:
        d.find_element(By.CSS_SELECTOR, f"tr[data-list='{local}'] button.detach").click()  # type: ignore[attr-defined]
        return True

    # The table is re-rendered after each call: retry a click that hit a replaced row.
    WebDriverWait(driver, 10, ignored_exceptions=(StaleElementReferenceException,)).until(click_detach)
    driver.switch_to.alert.accept()  # type: ignore[attr-defined]
    wait.until(
        expected_conditions.text_to_be_present_in_element((By.ID, "message"), f"List {local} detached")
    )
    assert not sub.node.execute("SELECT * FROM pgsync.link")
    assert not driver.find_elements(By.CSS_SELECTOR, f"tr[data-list='{local}']")  # type: ignore[attr-defined]


def test_each_row_charts_its_last_30_days(sites: dict[str, Site], served: str, browser: object) -> None:
    driver: object = browser
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "Charted"), make_list(sub.node, "Charted <replica>")
    add_dossiers(leader.node, remote, 2)
    attach(sub, leader, remote, local)
    sub.ok("sync", str(local))
    sub.ok("tick")  # a lag sample
    driver.get(served + "/")  # type: ignore[attr-defined]
    driver.find_element(By.ID, "token").send_keys(make_api_token(sub, read_only=True))  # type: ignore[attr-defined]
    driver.find_element(By.ID, "connect").click()  # type: ignore[attr-defined]

    row = f"tr[data-list='{local}']"
    days = WebDriverWait(driver, 30).until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f"{row} svg.syncs-chart rect.day")  # type: ignore[attr-defined]
    )
    assert len(days) == 30
    today = days[-1]
    ok = int(today.get_attribute("data-ok"))
    assert ok >= 2 and today.get_attribute("data-failed") == "0"  # the attach's first sync, then ours
    title = today.find_element(By.TAG_NAME, "title").get_attribute("textContent")
    assert title == f"{datetime.now(UTC).date().isoformat()}: {ok} ok, 0 failed"
    assert all(day.get_attribute("data-ok") == "0" for day in days[:-1])

    lag = driver.find_element(By.CSS_SELECTOR, f"{row} svg.lag-chart")  # type: ignore[attr-defined]
    assert float(lag.get_attribute("data-max-lag-seconds")) >= 0
    assert lag.find_element(By.TAG_NAME, "polyline").get_attribute("points")
    assert "Greatest lag" in lag.find_element(By.TAG_NAME, "title").get_attribute("textContent")
    # Each chart sits under its own heading.
    headings = [th.text for th in driver.find_elements(By.CSS_SELECTOR, "#links th")]  # type: ignore[attr-defined]
    cells = driver.find_elements(By.CSS_SELECTOR, f"{row} td")  # type: ignore[attr-defined]
    assert cells[headings.index("Syncs (30 days)")].find_elements(By.CSS_SELECTOR, "svg.syncs-chart")
    assert cells[headings.index("Lag (30 days)")].find_elements(By.CSS_SELECTOR, "svg.lag-chart")
