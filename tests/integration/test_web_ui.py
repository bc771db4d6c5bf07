"""The web page in a real headless browser (Debian's chromium), served by `pgsync-dossier serve`."""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable, Iterator
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
from selenium.webdriver.support.ui import Select, WebDriverWait  # noqa: E402

from pgsync_dossier import faults  # noqa: E402
from pgsync_dossier.clusters import free_port  # noqa: E402
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
    driver.set_window_size(1600, 720)
    driver.implicitly_wait(0)
    try:
        yield driver
    finally:
        driver.quit()


def _connect(driver: object, token: str) -> None:
    driver.find_element(By.ID, "token").send_keys(token)  # type: ignore[attr-defined]
    driver.find_element(By.ID, "connect").click()  # type: ignore[attr-defined]


def _options(driver: object, name: str) -> dict[str, str]:
    """A select's offers: its label -> its value (the list id the form sends)."""
    select = driver.find_element(By.NAME, name)  # type: ignore[attr-defined]
    return {option.text: option.get_attribute("value") for option in Select(select).options}


def _offered(name: str, label: str) -> Callable[[object], bool]:
    def offered(driver: object) -> bool:
        try:
            return label in _options(driver, name)
        except StaleElementReferenceException:
            return False

    return offered


def test_operator_attaches_and_detaches_from_the_page(
    sites: dict[str, Site], served: str, browser: object, tmp_path: Path
) -> None:
    driver: object = browser
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "Wanted 'quoted'"), make_list(sub.node, "Replica")
    other_remote = make_list(leader.node, "Also wanted")
    add_dossiers(leader.node, remote, 5)
    busy = make_list(sub.node, "Busy")
    add_dossiers(sub.node, busy, 1)
    spare = make_list(sub.node, "Spare")
    wait = WebDriverWait(driver, 30)
    driver.get(served + "/")  # type: ignore[attr-defined]
    find = driver.find_element  # type: ignore[attr-defined]

    assert "API token" in find(By.TAG_NAME, "fieldset").text
    _connect(driver, "wrong token")
    wait.until(
        expected_conditions.text_to_be_present_in_element((By.ID, "message"), "unknown or revoked API token")
    )
    # The sync token is refused, with what to do instead.
    find(By.ID, "token").clear()
    _connect(driver, TOKEN)
    wait.until(
        expected_conditions.text_to_be_present_in_element(
            (By.ID, "message"), "pgsync-dossier api-token create NAME"
        )
    )

    find(By.ID, "token").clear()
    _connect(driver, make_api_token(sub))
    wait.until(
        expected_conditions.text_to_be_present_in_element((By.ID, "message"), "No replicated lists yet")
    )
    # Only the empty lists are offered: the one with a dossier is not.
    wait.until(_offered("slave_dossier_list", f"Replica ({local})"))
    assert f"Spare ({spare})" in _options(driver, "slave_dossier_list")
    assert not any(label.startswith("Busy") for label in _options(driver, "slave_dossier_list"))

    # An address where nothing answers says so, as the API's {code, message}.
    address = find(By.NAME, "remote_url")
    address.send_keys(f"http://127.0.0.1:{free_port()}")
    wait.until(expected_conditions.text_to_be_present_in_element((By.ID, "message"), "does not answer"))

    # The Leader's web address: its lists appear by name.
    with serving(leader.config_path) as leader_web:
        address.clear()
        address.send_keys(leader_web)
        wait.until(_offered("remote_dossier_list", f"Wanted 'quoted' ({remote})"))
        assert f"Also wanted ({other_remote})" in _options(driver, "remote_dossier_list")

        Select(find(By.NAME, "remote_dossier_list")).select_by_visible_text(f"Wanted 'quoted' ({remote})")
        Select(find(By.NAME, "slave_dossier_list")).select_by_visible_text(f"Replica ({local})")
        find(By.CSS_SELECTOR, "#attach button[type=submit]").click()
        wait.until(
            expected_conditions.text_to_be_present_in_element(
                (By.ID, "message"), f"List {local} now replicates Leader list {remote}"
            )
        )
        row = wait.until(
            expected_conditions.presence_of_element_located((By.CSS_SELECTOR, f"tr[data-list='{local}']"))
        )
        assert "Replica" in row.text
        links = sub.node.execute("SELECT local_list_id, remote_list_id FROM pgsync.link")
        assert links == [{"local_list_id": local, "remote_list_id": remote}]
        # The list attached is no longer offered; the spare one still is.
        wait.until(lambda d: f"Replica ({local})" not in _options(d, "slave_dossier_list"))
        assert f"Spare ({spare})" in _options(driver, "slave_dossier_list")

        # A refusal shows the server's message: a Leader list has one replica per Subscriber.
        Select(find(By.NAME, "slave_dossier_list")).select_by_visible_text(f"Spare ({spare})")
        find(By.CSS_SELECTOR, "#attach button[type=submit]").click()
        wait.until(
            expected_conditions.text_to_be_present_in_element((By.ID, "message"), "is already replicated")
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


@pytest.fixture
def served_slowly(sites: dict[str, Site], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """The page, from a server whose copies hold for faults.PAUSE_S once the stream is paused:
    a list stays 'attaching' or 'copying' long enough to be seen so."""
    monkeypatch.setenv(faults.FAULT_ENV, "copy.paused:pause")
    sub = sites["subscriber_a"]
    with serving(write_config(tmp_path / "web.yaml", sub.node, "subscriber", web_ui=True)) as url:
        yield url


def test_the_page_follows_a_copy_until_ready(
    sites: dict[str, Site], served_slowly: str, browser: object
) -> None:
    driver: object = browser
    leader, sub = sites["leader"], sites["subscriber_a"]
    remote, local = make_list(leader.node, "Followed"), make_list(sub.node, "Follower")
    add_dossiers(leader.node, remote, 3)
    driver.get(served_slowly + "/")  # type: ignore[attr-defined]
    _connect(driver, make_api_token(sub, read_only=False))
    wait = WebDriverWait(driver, 30, ignored_exceptions=(StaleElementReferenceException,))
    wait.until(_offered("slave_dossier_list", f"Follower ({local})"))
    address = driver.find_element(By.NAME, "remote_url")  # type: ignore[attr-defined]
    address.send_keys(leader.leader_url)  # its PostgreSQL URL, this time
    wait.until(_offered("remote_dossier_list", f"Followed ({remote})"))
    Select(driver.find_element(By.NAME, "remote_dossier_list")).select_by_value(str(remote))  # type: ignore[attr-defined]
    Select(driver.find_element(By.NAME, "slave_dossier_list")).select_by_value(str(local))  # type: ignore[attr-defined]
    driver.find_element(By.CSS_SELECTOR, "#attach button[type=submit]").click()  # type: ignore[attr-defined]

    row = f"tr[data-list='{local}']"

    def state(d: object) -> str | None:
        rows = d.find_elements(By.CSS_SELECTOR, row)  # type: ignore[attr-defined]
        return rows[0].get_attribute("data-state") if rows else None

    assert wait.until(state) in ("attaching", "copying")
    assert driver.find_element(By.TAG_NAME, "body").get_attribute("data-poll") == "busy"  # type: ignore[attr-defined]
    # Nothing is pressed from here on: the page asks again by itself until the copy is done.
    WebDriverWait(driver, 60, ignored_exceptions=(StaleElementReferenceException,)).until(
        lambda d: state(d) == "ready"
    )
    wait.until(
        lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-poll") == "idle"  # type: ignore[attr-defined]
    )
    # Times read as "... ago", the exact time on hover.
    last_sync = wait.until(
        lambda d: d.find_elements(By.CSS_SELECTOR, f"{row} td.last-sync time")  # type: ignore[attr-defined]
    )[0]
    assert last_sync.text == "just now" or last_sync.text.endswith(" ago")
    exact = last_sync.get_attribute("title")
    assert exact == last_sync.get_attribute("datetime")
    assert abs((datetime.fromisoformat(exact) - datetime.now(UTC)).total_seconds()) < 120
    # The page as the docs show it (docs/http-api.md): PGSYNC_DOSSIER_SCREENSHOT=docs/images/web-page.png
    screenshot = os.environ.get("PGSYNC_DOSSIER_SCREENSHOT")
    if screenshot:
        wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, f"{row} svg.syncs-chart"))  # type: ignore[attr-defined]
        driver.save_screenshot(screenshot)  # type: ignore[attr-defined]


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
