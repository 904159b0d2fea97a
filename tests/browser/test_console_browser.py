"""IG officers and ops staff using the console in Chromium, with axe-core on every page."""

from __future__ import annotations

import csv
import io
import re
from pathlib import Path

from playwright.sync_api import Page, expect

from broker.demo.run import PERPETRATOR_REF
from tests.browser.conftest import Console, assert_accessible, screenshot, sign_in
from tests.integration.console_support import POISON


def nav(page: Page, name: str) -> None:
    page.get_by_role("navigation", name="Main").get_by_role("link", name=name, exact=True).click()


def _pdf_is_well_formed(data: bytes) -> bool:
    """Header, end-of-file marker, and a startxref offset that lands on the xref table."""
    if not data.startswith(b"%PDF-1.") or not data.rstrip().endswith(b"%%EOF"):
        return False
    found = re.search(rb"startxref\s+(\d+)\s+%%EOF\s*$", data)
    return bool(found) and data[int(found[1]):].startswith(b"xref") and b"/Type /Page" in data


def test_sign_in_page_and_keyboard(page: Page, console: Console) -> None:
    page.goto("/ui/ig/search")
    expect(page).to_have_url(re.compile(r"/ui/sign-in$"))  # no session: sent to sign in
    assert_accessible(page)
    screenshot(page, "sign-in")
    page.keyboard.press("Tab")  # the first stop is the skip link, visible when focused
    skip = page.get_by_role("link", name="Skip to main content")
    expect(skip).to_be_focused()
    assert skip.bounding_box() is not None and skip.bounding_box()["x"] >= 0  # type: ignore[index]
    assert skip.evaluate("e => getComputedStyle(e).outlineStyle") != "none"  # focus is visible
    page.keyboard.press("Enter")
    expect(page.locator("main")).to_be_focused()
    page.keyboard.press("Tab")  # from the skip target straight into the form, by keyboard only
    expect(page.get_by_label("Role token")).to_be_focused()
    page.keyboard.type("not-a-token")
    page.keyboard.press("Tab")
    expect(page.get_by_role("button", name="Sign in")).to_be_focused()
    page.keyboard.press("Enter")
    expect(page.get_by_role("alert")).to_contain_text("Sign-in refused")
    assert_accessible(page)


def test_ig_officer_finds_the_case_and_checks_a_proof(page: Page, console: Console) -> None:
    sign_in(page, console, "ig_officer", "ig-officer-1")
    assert_accessible(page)
    nav(page, "Disclosures")
    page.get_by_label("Person's identifier").fill(PERPETRATOR_REF)
    page.get_by_label("Entry kind").select_option("disclosed")
    page.keyboard.press("Enter")  # submits the search form from the keyboard
    results = page.get_by_role("table")
    expect(results.locator("caption")).to_have_text("18 entries")
    expect(page.get_by_label("Person's identifier")).to_have_value("")  # not echoed back
    assert PERPETRATOR_REF not in page.content()
    assert_accessible(page)
    screenshot(page, "ig-search")

    first = results.get_by_role("link").first
    seq = first.inner_text()
    first.click()
    expect(page.get_by_role("heading", level=1)).to_have_text(f"Audit entry {seq}")
    expect(page.get_by_test_id("proof-state")).to_have_text("verified")
    expect(page.get_by_test_id("fields-disclosed")).to_be_visible()
    assert_accessible(page)
    screenshot(page, "ig-entry")

    nav(page, "Refusals")
    expect(page.locator("td .tag-deny").first).to_be_visible()
    assert_accessible(page)
    nav(page, "DSA register")
    expect(page.get_by_role("heading", level=2).first).to_be_visible()
    assert_accessible(page)
    screenshot(page, "ig-dsa")


def test_ig_officer_approves_an_override(page: Page, console: Console) -> None:
    sign_in(page, console, "ig_officer", "ig-officer-2")
    nav(page, "Override review")
    reason = page.get_by_label(re.compile(r"^Reason for override \d+$"))
    expect(reason).to_have_count(1)
    assert_accessible(page)
    screenshot(page, "ig-overrides")
    seq = (reason.get_attribute("id") or "").removeprefix("reason-")
    reason.select_option("risk_evidenced")
    page.get_by_role("button", name="Approve").click()
    expect(page.get_by_role("status")).to_contain_text(f"Override {seq} approved")
    page.get_by_role("link", name="approved", exact=True).click()
    row = page.get_by_role("row").filter(has=page.get_by_role("link", name=seq, exact=True))
    expect(row).to_contain_text("ig-officer-2: risk_evidenced")
    assert_accessible(page)


def test_subject_access_report_downloads(page: Page, console: Console, tmp_path: Path) -> None:
    sign_in(page, console, "ig_officer", "ig-officer-3")
    nav(page, "Subject access")
    page.get_by_label("Person's identifier").fill(PERPETRATOR_REF)
    page.get_by_role("button", name="Show report").click()
    expect(page.get_by_role("table").locator("caption")).to_have_text("18 disclosures")
    assert_accessible(page)
    screenshot(page, "ig-subject-access")

    with page.expect_download() as got:
        page.get_by_role("button", name="Download CSV").click()
    assert got.value.suggested_filename == "subject-access-report.csv"
    rows = list(csv.DictReader(io.StringIO(Path(got.value.path()).read_text())))
    assert len(rows) == 18
    assert {r["originating_agency"] for r in rows} >= {"police", "probation", "nhs"}
    assert all(r["fields_disclosed"] for r in rows)

    with page.expect_download() as got:
        page.get_by_role("button", name="Download PDF").click()
    assert got.value.suggested_filename == "subject-access-report.pdf"
    assert _pdf_is_well_formed(Path(got.value.path()).read_bytes())


def test_ops_sees_queues_and_replays_a_dead_letter(page: Page, console: Console) -> None:
    sign_in(page, console, "ops", "operator-1")
    nav(page, "Queues")
    expect(page.get_by_test_id("queues")).to_contain_text("inbox.nhs")
    expect(page.get_by_role("img", name="Queue depth (messages waiting) over time")).to_be_visible()
    expect(page.get_by_role("img", name=re.compile("Deliveries per minute"))).to_be_visible()
    assert_accessible(page)
    screenshot(page, "ops-queues")

    nav(page, "Deliveries")
    page.get_by_label("State").select_option("acknowledged")
    page.get_by_role("button", name="Show").click()
    expect(page.get_by_role("table").locator("caption")).to_contain_text("in state acknowledged")
    assert_accessible(page)
    screenshot(page, "ops-deliveries")

    nav(page, "Dead letters")
    table = page.get_by_test_id("dead-letters")
    expect(table.locator("caption")).to_contain_text("1 pending dead letter")
    assert POISON.decode() not in page.content() and "Hutton" not in page.content()
    assert_accessible(page)
    screenshot(page, "ops-dead-letters")
    page.get_by_role("button", name=re.compile("^Replay dead letter")).click()
    expect(page.get_by_role("status")).to_contain_text("Dead letter replayed")
    page.get_by_role("link", name="replayed", exact=True).click()
    expect(page.get_by_test_id("dead-letters")).to_contain_text("by operator-1")


def test_roles_keep_to_their_pages(page: Page, console: Console) -> None:
    sign_in(page, console, "ops", "operator-2")
    for url in ("/ui/ig/search", "/ui/ig/overrides", "/ui/ig/subject", "/ui/ig/entries/1"):
        response = page.goto(url)
        assert response is not None and response.status == 403, url
        expect(page.get_by_role("alert")).to_contain_text("requires role ig_officer")
    assert_accessible(page)
    screenshot(page, "forbidden")

    page.get_by_role("button", name="Sign out").click()
    sign_in(page, console, "ig_officer", "ig-officer-4")
    response = page.goto("/ui/ops/dead-letters")
    assert response is not None and response.status == 403
    # even a well-formed replay POST (own session, valid CSRF token) is refused
    csrf = page.locator("input[name=csrf]").first.get_attribute("value") or ""
    replay = page.request.post("/ui/ops/dead-letters/anything/replay", form={"csrf": csrf})
    assert replay.status == 403 and "requires role ops" in replay.text()
