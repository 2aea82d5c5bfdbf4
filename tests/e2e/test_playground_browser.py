"""The playground in headless Chromium (Debian's, driven by Playwright): send, reload mid-reply, stop.

`make test` installs the `chromium` package when it is missing; Playwright never downloads a browser.
The last test takes the screenshot the README shows (docs/playground.png, with UPDATE_SCREENSHOTS=1).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from playwright.async_api import Browser, Page, async_playwright, expect

from tests.conftest import JWT_SECRET
from tests.support.fake_openai import Behaviour, FakeOpenAI
from tests.support.live_app import LiveApp
from threadline.http.auth import issue_token

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(120)]
CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = ROOT / "docs" / "playground.png"
EVENTSOURCE_EXAMPLE = ROOT / "examples" / "eventsource.html"
LONG_REPLY = (
    "Threadline keeps every reply in Postgres while it streams, so a reload in the middle of an answer "
    "loses nothing: the page asks for the rest of the run from the last event it saw, and the words "
    "simply carry on where they stopped, right to the very end of this sentence."
)


@pytest.fixture(scope="module")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(executable_path=CHROMIUM, args=ARGS, headless=True)
        try:
            yield launched
        finally:
            await launched.close()


@pytest.fixture
async def page(browser: Browser, live_threadline: LiveApp) -> AsyncIterator[Page]:
    context = await browser.new_context(viewport={"width": 1280, "height": 800}, base_url=live_threadline.url)
    opened = await context.new_page()
    opened.set_default_timeout(15_000)
    try:
        yield opened
    finally:
        await context.close()


async def sign_in(page: Page, user: str) -> None:
    await page.goto("/")
    await page.fill("#token-input", issue_token(JWT_SECRET, user))
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#app-view")).to_be_visible()


async def send(page: Page, text: str) -> None:
    await page.fill("#message-input", text)
    await page.press("#message-input", "Enter")


async def server_has(app: LiveApp, user: str, path: str) -> bool:
    """Whether a route the playground uses when present (threads, search) is on this server."""
    headers = {"Authorization": f"Bearer {issue_token(JWT_SECRET, user)}"}
    async with httpx.AsyncClient(base_url=app.url, timeout=10) as http:
        return (await http.get(path, headers=headers)).status_code != 404


async def test_a_bad_token_is_refused_with_a_clear_message(page: Page) -> None:
    await page.goto("/")
    await expect(page.locator("#login-view")).to_be_visible()
    await expect(page.locator(".command")).to_contain_text("threadline token")
    await page.fill("#token-input", "not-a-token")
    await page.click("#login-form button[type=submit]")
    await expect(page.locator("#login-error")).to_contain_text("refused")


async def test_a_reply_streams_in_with_its_usage(page: Page, upstream: FakeOpenAI, user: str) -> None:
    await sign_in(page, user)
    upstream.behaviour = Behaviour(reply=LONG_REPLY, gap_s=0.03)
    await send(page, "Tell me about resuming")
    reply = page.locator(".message.assistant").last
    await expect(reply).to_have_attribute("data-status", "streaming")
    await expect(page.locator("#stop")).to_be_visible()
    await expect(reply).to_have_attribute("data-status", "completed", timeout=20_000)
    await expect(reply.locator(".text")).to_have_text(LONG_REPLY)
    await expect(reply.locator(".usage")).to_contain_text("tokens")
    await expect(page.locator(".message.user").last).to_have_text("Tell me about resuming")
    await expect(page.locator("#send")).to_be_visible()


async def test_another_tab_shows_the_usage_of_replies_it_did_not_stream(
    browser: Browser, page: Page, live_threadline: LiveApp, upstream: FakeOpenAI, user: str
) -> None:
    await sign_in(page, user)
    upstream.behaviour = Behaviour(reply="Counted once, shown everywhere.")
    await send(page, "count my tokens")
    await expect(page.locator(".message.assistant").last).to_have_attribute("data-status", "completed")
    context = await browser.new_context(viewport={"width": 1280, "height": 800}, base_url=live_threadline.url)
    try:
        other = await context.new_page()
        await sign_in(other, user)
        reply = other.locator(".message.assistant").last
        await expect(reply.locator(".text")).to_have_text("Counted once, shown everywhere.")
        await expect(reply.locator(".usage")).to_contain_text("tokens")
    finally:
        await context.close()


async def test_a_reload_mid_reply_resumes_and_shows_the_whole_reply(
    page: Page, upstream: FakeOpenAI, user: str
) -> None:
    await sign_in(page, user)
    upstream.behaviour = Behaviour(reply=LONG_REPLY, gap_s=0.1)
    await send(page, "Reload while you answer")
    reply = page.locator(".message.assistant").last
    await expect(reply.locator(".text")).to_contain_text("Threadline keeps every")
    await page.reload()
    resumed = page.locator(".message.assistant").last
    await expect(resumed).to_have_attribute("data-status", "streaming")
    await expect(resumed).to_have_attribute("data-status", "completed", timeout=20_000)
    await expect(resumed.locator(".text")).to_have_text(LONG_REPLY)
    await expect(page.locator(".message.assistant")).to_have_count(1)
    await expect(page.locator(".message.user")).to_have_text(["Reload while you answer"])


async def test_stop_cancels_the_reply_and_keeps_its_start(
    page: Page, upstream: FakeOpenAI, user: str
) -> None:
    await sign_in(page, user)
    upstream.behaviour = Behaviour(reply=LONG_REPLY, gap_s=0.1)
    await send(page, "Start, then stop")
    reply = page.locator(".message.assistant").last
    await expect(reply.locator(".text")).to_contain_text("Threadline keeps")
    await page.click("#stop")
    await expect(reply).to_have_attribute("data-status", "cancelled")
    await expect(reply.locator(".status")).to_have_text("Stopped")
    kept = await reply.locator(".text").inner_text()
    assert kept.startswith("Threadline keeps")
    assert len(kept) < len(LONG_REPLY)
    await expect(page.locator("#send")).to_be_visible()


async def test_threads_are_listed_by_date_and_new_thread_starts_another(
    page: Page, upstream: FakeOpenAI, user: str, live_threadline: LiveApp
) -> None:
    if not await server_has(live_threadline, user, "/threads"):
        pytest.skip("this server has no GET /threads yet; the playground then says so")
    await sign_in(page, user)
    upstream.behaviour = Behaviour(reply="First thread reply.")
    await send(page, "first thread")
    await expect(page.locator(".message.assistant").last).to_have_attribute("data-status", "completed")
    threads = page.locator("#thread-list .thread")
    await expect(threads).to_have_count(1)
    await expect(page.locator("#thread-list h3")).to_have_text(["Today"])
    await page.click("#new-thread")
    await expect(page.locator(".message")).to_have_count(0)
    await send(page, "second thread")
    await expect(page.locator(".message.assistant").last).to_have_attribute("data-status", "completed")
    await expect(threads).to_have_count(2)
    await page.locator("#thread-list .thread:not([aria-current])").click()
    await expect(page.locator(".message.user")).to_have_text(["first thread"])


async def test_search_finds_a_past_message_and_opens_its_thread(
    page: Page, upstream: FakeOpenAI, user: str, live_threadline: LiveApp
) -> None:
    if not await server_has(live_threadline, user, "/search?q=probe"):
        pytest.skip("this server has no GET /search yet; the playground then hides the box")
    await sign_in(page, user)
    await send(page, "the zebra crossing on Abbey Road")
    await expect(page.locator(".message.assistant").last).to_have_attribute("data-status", "completed")
    await page.click("#new-thread")
    await expect(page.locator(".message")).to_have_count(0)
    await page.fill("#search-input", "zebra")
    await page.press("#search-input", "Enter")
    hit = page.locator("#search-results .hit").first
    await expect(hit.locator("mark").first).to_have_text("zebra")
    await hit.click()
    await expect(page.locator(".message.user").first).to_have_text("the zebra crossing on Abbey Road")


async def test_a_phone_sized_window_keeps_the_thread_list_in_a_drawer(
    browser: Browser, live_threadline: LiveApp, upstream: FakeOpenAI, user: str
) -> None:
    context = await browser.new_context(viewport={"width": 390, "height": 844}, base_url=live_threadline.url)
    try:
        phone = await context.new_page()
        await sign_in(phone, user)
        await expect(phone.locator("#menu")).to_be_visible()
        await expect(phone.locator("#message-input")).to_be_visible()
        await phone.click("#menu")
        await expect(phone.locator("#sidebar")).to_have_class("sidebar open")
        await phone.click("#scrim", position={"x": 370, "y": 400})
        await expect(phone.locator("#scrim")).to_be_hidden()
    finally:
        await context.close()


async def test_the_eventsource_example_follows_a_reply(page: Page, upstream: FakeOpenAI, user: str) -> None:
    # Served from Threadline's origin, as the example says it must be.
    await page.route("**/examples/eventsource.html", lambda route: route.fulfill(path=EVENTSOURCE_EXAMPLE))
    await page.goto("/examples/eventsource.html")
    upstream.behaviour = Behaviour(reply="Followed by EventSource, token by token.", gap_s=0.05)
    await page.fill("#token", issue_token(JWT_SECRET, user))
    await page.click("button[type=submit]")
    await expect(page.locator("#status")).to_contain_text("completed")
    await expect(page.locator("#output")).to_have_text("Followed by EventSource, token by token.")


async def test_screenshot_for_the_readme(page: Page, upstream: FakeOpenAI, tmp_path: Path) -> None:
    await sign_in(page, "alice")
    upstream.behaviour = Behaviour(reply="Paris is the capital of France.", gap_s=0.01)
    await send(page, "What is the capital of France?")
    await expect(page.locator(".message.assistant").last).to_have_attribute("data-status", "completed")
    upstream.behaviour = Behaviour(reply=LONG_REPLY, gap_s=0.01)
    await send(page, "And what happens if I reload while you answer?")
    await expect(page.locator(".message.assistant").last).to_have_attribute("data-status", "completed")
    # The README's copy changes only when asked (UPDATE_SCREENSHOTS=1), so a test run leaves the tree clean.
    target = SCREENSHOT if os.environ.get("UPDATE_SCREENSHOTS") == "1" else tmp_path / SCREENSHOT.name
    await page.screenshot(path=str(target))
    assert target.stat().st_size > 10_000
