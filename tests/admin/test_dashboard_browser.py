"""The dashboard in headless Chromium: it loads, shows a route going into cooldown while the fake
upstream fails, shows it recover, and shows what the traffic cost: spend over time, what a replayed
stream wasted and what a looping session spent. Screenshots go to ``test-output/dashboard-*.png``.

Chromium is Debian's ``chromium`` package (``/usr/bin/chromium``), driven by Playwright without
``playwright install``; the test is skipped only when that binary is absent.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from playwright.async_api import Page, async_playwright, expect

from spillgate.fake import FakeUpstream, Fault
from spillgate.gateway.auth import hash_key

from ..harness import PRIMARY, SECONDARY, Scenario, scenario_config, start_scenario
from .conftest import ADMIN_TOKEN

CHROMIUM = os.environ.get("SPILLGATE_CHROMIUM", "/usr/bin/chromium")
OUTPUT = Path(__file__).resolve().parents[2] / "test-output"
ARGS = [
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-extensions",
    "--no-first-run",
]
TEST_BUDGET = 50.0
"""Seconds the whole test may take (it normally takes about 15)."""
CLIENT_KEY = "sk-sg-dashboard-client"
PRICE = {"input": 1.0, "output": 2.0}
"""USD per million tokens of the fake's upstream models: every cost is known (and tiny)."""
LOOP_SESSION = "dashboard-loop"

pytestmark = pytest.mark.skipif(
    not os.path.exists(CHROMIUM), reason=f"no Chromium at {CHROMIUM} (Debian: apt-get install chromium)"
)


def dashboard_config(fake: FakeUpstream, db: Path) -> dict[str, Any]:
    config = scenario_config(fake, admin_token=ADMIN_TOKEN)
    config["usage"] = {"dsn": f"sqlite:{db}"}
    config["client_keys"] = [{"name": "dashboard-team", "hash": hash_key(CLIENT_KEY)}]
    config["pricing"] = {"models": {PRIMARY: PRICE, SECONDARY: PRICE}}
    return config


@contextlib.asynccontextmanager
async def traffic(sc: Scenario, every: float = 0.15) -> AsyncIterator[list[int]]:
    """Chat requests to ``coder`` in the background; yields the statuses seen so far."""
    statuses: list[int] = []

    async def loop() -> None:
        while True:
            statuses.append((await sc.ask("chat")).status)
            await asyncio.sleep(every)  # background traffic's pace (what the page shows), not synchronisation

    task = asyncio.create_task(loop())
    try:
        yield statuses
    finally:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task


async def _describe(page: Page) -> str:
    """What the page showed, for a failure message."""
    try:
        conn = await page.get_by_test_id("conn-status").text_content(timeout=1000)
        health = await page.get_by_test_id("health").inner_text(timeout=1000)
        message = await page.get_by_test_id("message").inner_text(timeout=1000)
    except Exception as exc:
        return f"(could not read the page: {exc})"
    return f"connection: {conn!r}; message: {message!r}; health panel:\n{health[:1500]}"


async def test_dashboard_shows_cooldown_and_recovery(fake: FakeUpstream, tmp_path: Path) -> None:
    OUTPUT.mkdir(exist_ok=True)
    (OUTPUT / "dashboard-failure.png").unlink(missing_ok=True)
    sc = await start_scenario(fake, dashboard_config(fake, tmp_path / "usage.db"))
    sc.http.headers["authorization"] = f"Bearer {CLIENT_KEY}"
    console: list[str] = []
    page: Page | None = None
    try:
        async with asyncio.timeout(TEST_BUDGET), async_playwright() as pw:
            browser = await pw.chromium.launch(
                executable_path=CHROMIUM, args=ARGS, headless=True, timeout=20_000
            )
            try:
                page = await browser.new_page(viewport={"width": 1400, "height": 1100})
                await _token_form(page, sc)
                await page.context.close()
                page = await browser.new_page(viewport={"width": 1400, "height": 1100})
                page.set_default_timeout(15_000)
                page.on("console", lambda m: console.append(f"{m.type}: {m.text}"))
                page.on("pageerror", lambda e: console.append(f"pageerror: {e}"))
                await _run(page, sc)
            except (Exception, asyncio.CancelledError) as exc:
                if page is None:
                    raise
                with contextlib.suppress(Exception):
                    await page.screenshot(path=str(OUTPUT / "dashboard-failure.png"), full_page=True)
                why = "ran out of time" if isinstance(exc, asyncio.CancelledError) else f"{exc}"
                raise AssertionError(
                    f"dashboard test failed ({why}); screenshot: test-output/dashboard-failure.png\n"
                    f"{await _describe(page)}\nbrowser console: {console[-20:]}"
                ) from None
            finally:
                await browser.close()
    finally:
        await sc.http.close()
        await sc.app.stop(grace=1)
    assert not [line for line in console if line.startswith("pageerror")], console


async def _token_form(page: Page, sc: Scenario) -> None:
    """Without a token the page says it needs one; typed into the form, it connects."""
    await page.goto(f"{sc.app.url}/dashboard")
    await expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "unauthorized")
    await expect(page.get_by_test_id("message")).to_contain_text("admin token")
    await page.get_by_test_id("token-input").fill(ADMIN_TOKEN)
    await page.get_by_test_id("token-input").press("Enter")
    await expect(page.get_by_test_id("conn-status")).to_have_attribute("data-state", "live")
    await expect(page.get_by_test_id("message")).to_have_text("")


async def _run(page: Page, sc: Scenario) -> None:
    await page.goto(f"{sc.app.url}/dashboard#token={ADMIN_TOKEN}")
    conn = page.get_by_test_id("conn-status")
    await expect(conn).to_have_attribute("data-state", "live")
    assert ADMIN_TOKEN not in page.url  # the token left the address bar (kept in sessionStorage)
    await page.get_by_test_id("window-5m").click()

    state = page.locator('[data-testid="route-state-coder[0]"]')
    reason = page.locator('[data-testid="route-reason-coder[0]"]')
    cooldown = page.locator('[data-testid="route-cooldown-coder[0]"]')
    await expect(state).to_have_attribute("data-state", "closed")

    # Healthy traffic first, then the primary route's model goes to capacity.
    for _ in range(5):
        assert (await sc.ask("chat")).status == 200
    sc.fake.set(PRIMARY, Fault.capacity())
    async with traffic(sc) as statuses:
        await expect(state).to_have_attribute("data-state", "open")
        await expect(reason).to_contain_text("capacity")
        await expect(reason).to_contain_text("at capacity")
        await expect(cooldown).to_have_text(re.compile(r"^\d+\.\d s$|^probing"))
        await expect(page.locator('[data-testid="member-state-coder[0]-oa-p"]')).not_to_have_attribute(
            "data-state", "closed"
        )
        await expect(page.locator('[data-testid="scopes-table"]')).to_contain_text(f"account:oa-p|{PRIMARY}")
        await expect(page.locator('[data-testid="failed-attempts-table"]')).to_contain_text("capacity")
        # the charts have drawn the failed attempts and the failovers
        await expect(
            page.locator('[data-testid="availability-chart-coder"] rect.bar-upstream')
        ).not_to_have_count(0)
        failed_bars = page.locator(
            '[data-testid="availability-chart-coder"] rect.bar-upstream:not([data-failed="0"])'
        )
        await expect(failed_bars).not_to_have_count(0)
        await expect(page.locator('[data-testid="bars-retries"] rect')).not_to_have_count(0)
        await expect(state).to_have_attribute("data-state", "open")
        await page.screenshot(path=str(OUTPUT / "dashboard-cooldown.png"), full_page=True)
        assert statuses and all(s == 200 for s in statuses), statuses  # the clients never noticed

        # The upstream recovers: the next probe closes the route again.
        sc.fake.clear(PRIMARY)
        await expect(state).to_have_attribute("data-state", "closed", timeout=20_000)
        await expect(reason).to_have_text("")
        await expect(cooldown).to_have_text("—")
        await expect(page.locator('[data-testid="scopes-table"]')).to_have_text("none")

    # Charts hold data: availability bars per bucket, the failure-rate lines, usage bars.
    served = page.locator('[data-testid="availability-chart-coder"] rect.bar-served:not([data-requests="0"])')
    await expect(served).not_to_have_count(0)
    attempt_line = page.get_by_test_id("line-attempt-failures")
    await expect(attempt_line).not_to_have_attribute("data-points", "0")
    await expect(page.get_by_test_id("line-request-failures")).not_to_have_attribute("data-points", "0")
    await expect(page.get_by_test_id("availability-pct-coder")).to_have_text("100 %")
    await _spend(page, sc)
    # usage is polled every 10 s: by now the recorder has written the rows
    await expect(page.locator('svg[data-testid="usage-clients"] rect')).not_to_have_count(0, timeout=15_000)
    await expect(page.locator('svg[data-testid="usage-clients"]')).to_contain_text("dashboard-team")
    await expect(page.locator('svg[data-testid="usage-models"]')).to_contain_text("coder")
    await page.screenshot(path=str(OUTPUT / "dashboard-recovered.png"), full_page=True)


async def _spend(page: Page, sc: Scenario) -> None:
    """The spend panel: the priced traffic above as bars and a total, a replayed stream's waste,
    then a session that sends the same turn again and again, with what it spent."""
    spent = page.get_by_test_id("spend-total")
    await expect(page.locator('[data-testid="bars-spend"] rect')).not_to_have_count(0)
    await expect(spent).to_have_text(re.compile(r"^\$0\.0*[1-9]\d*$"))
    assert float(await spent.get_attribute("data-usd") or 0) > 0
    await expect(page.get_by_test_id("spend-unpriced")).to_have_count(0)  # every price is known
    await expect(page.get_by_test_id("wasted-total")).to_have_text("$0")  # failovers cost nothing

    # A stream cut mid-answer and replayed: the cut attempt's cost bought nothing.
    sc.fake.set(PRIMARY, Fault(cut_after_events=5, times=1))
    assert (await sc.ask("chat", True)).status == 200
    await expect(page.locator('[data-testid="bars-wasted"] rect[data-cause="recovery"]')).not_to_have_count(0)
    await expect(page.get_by_test_id("wasted-total")).to_have_text(re.compile(r"^\$0\.0*[1-9]\d*$"))
    await expect(page.get_by_test_id("wasted-in-band")).to_have_text("$0")

    # An agent stuck on one turn: the loop detector reports it, and the panel what it spent.
    await expect(page.get_by_test_id("loops-table")).to_have_text("none")
    for _ in range(5):
        assert (await sc.ask("responses", prompt_cache_key=LOOP_SESSION)).status == 200
    row = page.locator(f'[data-testid="loop-{LOOP_SESSION}"]')
    await expect(row).to_have_attribute("data-reason", "repeating")
    await expect(row).to_contain_text("5 \N{MULTIPLICATION SIGN} the same")
    cost = page.get_by_test_id(f"loop-cost-{LOOP_SESSION}")
    await expect(cost).to_have_text(re.compile(r"^\$0\.0*[1-9]\d*$"))
    assert float(await cost.get_attribute("data-usd") or 0) > 0
    await expect(page.get_by_test_id("loops-cost")).to_have_text((await cost.text_content()) or "")
    await page.screenshot(path=str(OUTPUT / "dashboard-spend.png"), full_page=True)
