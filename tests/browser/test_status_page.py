"""The editors' status page in headless Chromium, with the monitor running for real.

Each test puts real services into a state (the stand-in validation service
fails, real messages pile up in a real RabbitMQ queue, the monitor process
stops) and checks what the page shows: the headline, the components, the
incidents, and that the words are the editor message's, never the page's own.
"""

from __future__ import annotations

import re
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from recovery_webhook import editor

from .conftest import SCREENSHOTS_SCRIPT
from .pagecheck import Tab, assert_contrast, assert_no_horizontal_scroll, wait_until

pytestmark = pytest.mark.browser

DISPLAY_NAMES = [
    "Network",
    "Article checks",
    "Article database",
    "Image and file storage",
    "Publishing queue",
]
CLOCK = re.compile(r"^\d\d:\d\d:\d\d UTC$")


def component_row(tab: Tab, display_name: str) -> Any:
    return tab.page.locator("#components .row").filter(
        has=tab.page.locator(".name", has_text=display_name)
    )


def incident_row(tab: Tab, display_name: str) -> Any:
    return tab.page.locator("#incidents .row").filter(
        has=tab.page.locator(".name", has_text=display_name)
    )


def expect_answer(tab: Tab, state: str) -> None:
    expect(tab.page.locator("#hero")).to_have_class(re.compile(rf"\bstate-{state}\b"))
    expect(tab.page.locator("#answer-short")).to_have_text(editor.SHORT[state])
    expect(tab.page.locator("#answer-headline")).to_have_text(editor.HEADLINE_TEXT[state])


def test_operational_page_answers_yes_in_the_editor_message_words(stack: Any, open_page: Any):
    data = stack.wait_state("operational")
    tab = open_page(stack)
    page = tab.page

    expect_answer(tab, "operational")
    assert page.locator("#answer-current").is_visible()
    expect(page.locator("#answer-details li")).to_have_text(data["details"])
    expect(page.locator("#answer-advice-box")).to_be_hidden()
    expect(page.locator("#components .row .name")).to_have_text(DISPLAY_NAMES)
    expect(page.locator("#components .row .words")).to_have_text(["Working normally"] * 5)
    expect(page.locator("#components .row .since")).to_have_text(
        [c["since_text"] for c in data["components"]]
    )
    expect(page.locator("#components .status-healthy")).to_have_count(5)
    expect(page.locator("#incidents-empty")).to_be_visible()
    expect(page.locator("#incidents .row")).to_have_count(0)
    for window in ("24h", "7d", "30d"):
        expect(page.locator(f'#uptime dd[data-window="{window}"] .value')).to_have_text(
            re.compile(r"^(100|\d{1,2}(\.\d{1,2})?) %$")
        )
    expect(page.locator("#updated-time")).to_have_text(CLOCK)
    assert "OPERATIONAL" in page.title()

    # Landmarks and a live headline.
    assert page.locator("body > header").count() == 1
    assert page.locator("body > main").count() == 1
    assert page.locator("body > footer").count() == 1
    expect(page.locator("h1")).to_have_text("Can I publish?")
    assert page.locator("#live").get_attribute("aria-live") == "polite"
    assert page.locator("#hero").get_attribute("aria-labelledby") == "question"
    assert page.locator("#answer-icon").get_attribute("href") == "#i-ok"
    assert assert_contrast(tab) > 20


def test_page_loads_only_its_own_files_and_refreshes_in_place(stack: Any, open_page: Any):
    stack.wait_state("operational")
    tab = open_page(stack)
    response = tab.page.request.get(stack.url + "/")
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "unsafe-inline" not in policy
    expect_answer(tab, "operational")
    tab.page.evaluate("window.__sameDocument = true")

    wait_until(
        tab,
        lambda: tab.requests.count(stack.url + "/api/pipeline/editor-message") >= 3,
        "three refreshes (refresh_seconds is 1)",
    )
    assert tab.page.evaluate("window.__sameDocument") is True
    assert tab.navigations == 1
    paths = {url[len(stack.url) :].split("?")[0] for url in tab.requests}
    assert paths == {
        "/",
        "/static/style.css",
        "/static/app.js",
        "/static/favicon.svg",
        "/api/pipeline/editor-message",
    }
    assert tab.foreign_requests() == []
    assert tab.console_errors == []


def test_delayed_queue_then_recovered_by_itself(stack: Any, open_page: Any):
    stack.wait_state("operational")
    tab = open_page(stack)
    page = tab.page
    expect_answer(tab, "operational")
    page.evaluate("window.__sameDocument = true")

    stack.fill_queue()
    data = stack.wait_state("delayed")
    expect_answer(tab, "delayed")
    expect(page.locator("#answer-details li")).to_have_text(data["details"])
    expect(page.locator("#answer-details")).to_contain_text("there is no need to resubmit")
    queue = component_row(tab, "Publishing queue")
    expect(queue.locator(".words")).to_have_text("Slow or partly working")
    expect(queue).to_have_class(re.compile(r"\bstatus-degraded\b"))
    expect(queue.locator(".tech-text")).to_contain_text("messages waiting")
    expect(component_row(tab, "Article checks").locator(".words")).to_have_text("Working normally")
    incident = incident_row(tab, "Publishing queue")
    expect(incident.locator(".what")).to_have_text("Slow or partly working")
    expect(incident.locator(".chip")).to_have_text("Ongoing")
    expect(incident.locator(".duration")).to_contain_text("so far")
    assert_contrast(tab)

    stack.drain_queue()
    stack.wait_state("operational")
    expect_answer(tab, "operational")
    expect(incident.locator(".chip")).to_have_text("Recovered by itself")
    expect(incident.locator(".duration")).to_have_text(re.compile(r"^took "))
    expect(incident.locator(".when")).to_have_text(re.compile(r"^Started at \d\d:\d\d UTC$"))
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"


def test_down_handed_to_engineers_then_fixed(stack: Any, open_page: Any):
    stack.wait_state("operational")
    tab = open_page(stack)
    page = tab.page
    expect_answer(tab, "operational")

    stack.standin.mode = "broken"
    stack.wait_state("down")
    expect_answer(tab, "down")
    expect(page.locator("#answer-details")).to_contain_text(
        re.compile(r"Article checks: not working since \d\d:\d\d UTC\.")
    )
    expect(page.locator("#answer-advice-box")).to_be_visible()
    expect(page.locator("#answer-advice li").first).to_have_text(
        "Keep your article as a draft: nothing you have saved is lost."
    )
    assert page.locator("#answer-icon").get_attribute("href") == "#i-down"

    # Alertmanager's notification arrives; the validation service has no
    # automatic repair, so the engine hands it to engineers at once.
    stack.send_alert("validation_service")
    data = stack.wait_for(
        lambda d: d["notified_at"] is not None and "working on it" in " ".join(d["details"]),
        "the notification and the hand-over to engineers",
    )
    notified = [line for line in data["details"] if line.startswith("Engineers were notified")]
    assert re.fullmatch(
        r"Engineers were notified at \d\d:\d\d UTC and are working on it\.", notified[0]
    )
    expect(page.locator("#answer-details li")).to_have_text(data["details"])
    checks = component_row(tab, "Article checks")
    expect(checks.locator(".words")).to_have_text("Not working: engineers are working on it")
    expect(checks).to_have_class(re.compile(r"\bmanual\b"))
    assert checks.locator("use").get_attribute("href") == "#i-people"
    expect(checks.locator(".tech-text")).to_contain_text("answered HTTP 503")
    incident = incident_row(tab, "Article checks")
    expect(incident.locator(".chip")).to_have_text("Ongoing: engineers are working on it")
    expect(incident.locator(".what")).to_have_text("Not working")
    assert_contrast(tab)

    phone = open_page(stack, width=360, height=740)
    expect_answer(phone, "down")
    expect(component_row(phone, "Article checks").locator(".tech-text")).to_be_visible()
    assert_no_horizontal_scroll(phone)

    stack.standin.mode = "ok"
    stack.wait_state("operational")
    expect_answer(tab, "operational")
    expect(incident.locator(".chip")).to_have_text("Fixed by engineers")
    expect(checks.locator(".words")).to_have_text("Working normally")


def test_repair_in_progress_then_repaired_automatically(make_stack: Any, open_page: Any):
    stack = make_stack(repairable_validation=True)
    stack.wait_state("operational")
    tab = open_page(stack)
    page = tab.page

    stack.standin.mode = "broken"
    stack.wait_state("down")
    stack.send_alert("validation_service")
    # The repair calls the stand-in's restart hook, which holds until released.
    stack.wait_for(
        lambda d: any(c["repair_in_progress"] for c in d["components"]), "the repair starting"
    )
    checks = component_row(tab, "Article checks")
    expect(checks.locator(".words")).to_have_text("Not working: an automatic repair is under way")
    expect(checks).to_have_class(re.compile(r"\brepairing\b"))
    assert checks.locator("use").get_attribute("href") == "#i-repair"
    expect(page.locator("#answer-details")).to_contain_text("An automatic repair is under way.")
    expect(incident_row(tab, "Article checks").locator(".chip")).to_have_text(
        "Ongoing: an automatic repair is under way"
    )

    stack.standin.release_restart()
    stack.wait_state("operational")
    # Its own incident, whichever is newest (on a loaded machine a stalled probe
    # cycle can make other parts blip meanwhile).
    stack.wait_for(
        lambda d: any(
            i["component"] == "validation_service" and i["outcome"] == "repaired_automatically"
            for i in d["incidents"]
        ),
        "the repair's outcome in history",
    )
    expect_answer(tab, "operational")
    incident = incident_row(tab, "Article checks")
    expect(incident.locator(".chip")).to_have_text("Repaired automatically")
    assert incident.locator("use").get_attribute("href") == "#i-repair"
    assert stack.standin.restarts == 1


def test_monitor_unreachable_marks_the_page_out_of_date(stack: Any, open_page: Any):
    stack.wait_state("operational")
    tab = open_page(stack)
    page = tab.page
    expect_answer(tab, "operational")
    expect(page.locator("#components .row")).to_have_count(5)
    page.evaluate("window.__sameDocument = true")
    last_updated = page.locator("#updated-time").text_content()

    stack.stop_monitor()
    offline = page.locator("#answer-offline")
    expect(offline).to_be_visible()
    expect(offline).to_contain_text("We can't reach the monitor right now.")
    expect(page.locator("#offline-since")).to_have_text(CLOCK)
    expect(page.locator("#offline-last-time")).to_have_text(last_updated or "")
    # The last answer is not shown as current any more, anywhere.
    expect(page.locator("#answer-current")).to_be_hidden()
    expect(page.get_by_text(editor.SHORT["operational"])).to_be_hidden()
    expect(page.locator("#hero")).to_have_class(re.compile(r"\bstate-unknown\b"))
    expect(page.locator("body")).to_have_class(re.compile(r"\bis-stale\b"))
    expect(page.locator("#stale-note")).to_be_visible()
    expect(page.locator("#stale-note")).to_contain_text("Out of date")
    expect(page.locator("#updated-stale")).to_be_visible()
    expect(page.locator("#updated-fresh")).to_be_hidden()
    assert "OPERATIONAL" not in page.title()
    assert_contrast(tab)

    stack.start_monitor()  # same port
    stack.wait_state("operational")
    expect_answer(tab, "operational")
    expect(offline).to_be_hidden()
    expect(page.locator("#stale-note")).to_be_hidden()
    expect(page.locator("body")).not_to_have_class(re.compile(r"\bis-stale\b"))
    assert page.evaluate("window.__sameDocument") is True, "the page reloaded"


PAYLOAD = '<img src=x onerror="window.__pwned=1"><script>window.__pwned=2</script>'


def test_html_in_error_text_and_names_is_shown_as_text(make_stack: Any, open_page: Any):
    stack = make_stack(
        display_names={"validation_service": 'Checks <b id="injected">bold</b>'},
    )
    stack.wait_state("operational")
    tab = open_page(stack, width=360, height=740)
    page = tab.page
    expect(component_row(tab, "Checks").locator(".name")).to_have_text(
        'Checks <b id="injected">bold</b>'
    )

    # The service answers with HTML where its status should be; the probe's
    # error quotes it, and the page shows that error.
    stack.standin.odd_status = PAYLOAD
    stack.standin.mode = "odd"
    data = stack.wait_state("down")
    error = next(c["error"] for c in data["components"] if c["name"] == "validation_service")
    assert PAYLOAD in error
    checks = component_row(tab, "Checks")
    expect(checks.locator(".tech-text")).to_have_text(error)
    expect(checks.locator(".tech-text")).to_be_visible()
    assert PAYLOAD in checks.locator(".tech").inner_text()  # as seen, literally
    incident = incident_row(tab, "Checks")
    expect(incident.locator(".tech-text")).to_have_text(error)
    expect(page.locator("#answer-details")).to_contain_text('Checks <b id="injected">bold</b>')

    page.wait_for_timeout(1500)  # a refresh or two with the payload on the page
    assert page.evaluate("window.__pwned") is None
    assert page.locator("img").count() == 0
    assert page.locator("#injected").count() == 0
    assert page.locator("script").count() == 1  # app.js
    assert not [url for url in tab.requests if url.endswith("/x")], "the <img> was loaded"
    assert_no_horizontal_scroll(tab)


def _png_size(path: Path) -> tuple[int, int]:
    header = path.read_bytes()[:24]
    assert header[:8] == b"\x89PNG\r\n\x1a\n", f"{path} is not a PNG"
    width, height = struct.unpack(">II", header[16:24])
    return width, height


@pytest.mark.timeout(400)
def test_screenshots_script_makes_every_picture(tmp_path: Path, amqp_url: str, pg_dsn: str):
    out = tmp_path / "shots"
    result = subprocess.run(
        [sys.executable, str(SCREENSHOTS_SCRIPT), "--out", str(out)],
        capture_output=True,
        text=True,
        timeout=360,  # the demo's stack may start throwaway servers first
    )
    assert result.returncode == 0, result.stderr[-3000:]
    names = sorted(p.name for p in out.iterdir())
    assert names == sorted(
        [
            *(
                f"{state}-{size}.png"
                for state in ("operational", "delayed", "down")
                for size in ("desktop", "phone")
            ),
            *(f"demo-{name}.png" for name in ("operational", "broken", "repaired")),
        ]
    )
    for name in ("operational", "broken", "repaired"):
        assert _png_size(out / f"demo-{name}.png")[0] == 1280
    for state in ("operational", "delayed", "down"):
        width, height = _png_size(out / f"{state}-desktop.png")
        assert width == 1280 and height >= 800
        assert _png_size(out / f"{state}-phone.png") == (780, 1688)  # 390x844 at 2x
