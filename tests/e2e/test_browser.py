"""The web client in a real browser: two people register, meet in a room, and chat live.

Headless Chromium from Debian's `chromium` package, driven by Playwright through
``executable_path`` (Playwright's own browser downloads are never used: PITFALLS §8).
`scripts/install-system-deps` installs it. Without it the test skips on a laptop, and
fails in CI, where the install step is supposed to have run.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from tests.support.processes import ChatProcess
from tests.support.services import in_ci

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",  # we run as root in CI; Chromium refuses its sandbox there
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-default-apps",
    "--disable-extensions",
    "--disable-sync",
    "--metrics-recording-only",
    "--no-first-run",
    "--mute-audio",
]
SCREENSHOT = Path(__file__).parents[2] / "var" / "screenshots" / "chat.png"
TIMEOUT_MS = 15_000
# The web client's policy (chat_server.security): /docs must live with it too.
STRICT_CSP = (
    "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:; "
    "style-src 'self'; script-src 'self'; frame-ancestors 'none'"
)
PASSWORD = "correct horse battery"

try:
    from playwright.async_api import Browser, Page, Route, async_playwright, expect
except ImportError:  # the test extra is not installed
    async_playwright = None  # type: ignore[assignment]


def require_chromium() -> None:
    problem = None
    if async_playwright is None:
        problem = "playwright is not installed: pip install -e '.[test]'"
    elif not CHROMIUM.exists():
        problem = (
            f"{CHROMIUM} is missing: run scripts/install-system-deps "
            "(apt-get install -y --no-install-recommends chromium)"
        )
    if problem is None:
        return
    if in_ci():
        pytest.fail(problem + " (CI never skips the browser test)")
    pytest.skip(problem)


@pytest.fixture
async def browser() -> AsyncIterator[Browser]:
    require_chromium()
    async with async_playwright() as pw:
        launched = await pw.chromium.launch(
            executable_path=str(CHROMIUM), headless=True, args=CHROMIUM_ARGS
        )
        yield launched
        await launched.close()


async def open_client(browser: Browser, url: str) -> Page:
    context = await browser.new_context(viewport={"width": 1100, "height": 700})
    page = await context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    await page.goto(url)
    return page


async def register_and_log_in(page: Page, username: str) -> None:
    await page.fill("#username", username)
    await page.fill("#password", PASSWORD)
    await page.click("#register")
    await expect(page.locator("#auth-status")).to_contain_text("created")
    await page.click("#login")
    await expect(page.locator("#app-view")).to_be_visible()
    await expect(page.locator("#conn-state")).to_have_attribute("data-state", "online")
    await expect(page.locator("#me")).to_contain_text(username)


async def test_two_people_chat_live_in_the_browser(browser: Browser, server: ChatProcess) -> None:
    suffix = uuid.uuid4().hex[:6]
    alice_name, bob_name = f"alice_{suffix}", f"bob_{suffix}"
    alice = await open_client(browser, server.url)
    bob = await open_client(browser, server.url)
    errors: list[str] = []
    for page in (alice, bob):
        page.on("pageerror", lambda exc: errors.append(str(exc)))

    await register_and_log_in(alice, alice_name)
    await register_and_log_in(bob, bob_name)

    # Alice creates a room (it opens) and adds Bob by his username.
    await alice.fill("#new-room-name", "Lunch plans")
    await alice.click("#create-room")
    await expect(alice.locator("#room-view")).to_be_visible()
    await expect(alice.locator("#room-title")).to_have_text("Lunch plans")
    await alice.fill("#member-search", bob_name)
    await alice.click("#add-member")
    await expect(alice.locator("#room-members")).to_contain_text(bob_name)

    # Bob's room list gets the room live (room:member_added); he opens it.
    bobs_room = bob.locator('#room-list li.room[data-testid="room"]', has_text="Lunch plans")
    await expect(bobs_room).to_be_visible()
    await bobs_room.click()
    await expect(bob.locator("#room-view")).to_be_visible()

    # Alice sends; both see it stored (it has a seq), Bob without reloading anything.
    await alice.fill("#composer", "pizza at noon?")
    await alice.press("#composer", "Enter")
    own = alice.locator("#messages .message.own", has_text="pizza at noon?")
    await expect(own).to_have_attribute("data-seq", "1")
    seen = bob.locator("#messages .message", has_text="pizza at noon?")
    await expect(seen).to_have_attribute("data-seq", "1")
    await expect(seen.locator(".sender")).to_contain_text(alice_name)

    # Bob answers; Alice sees it live too.
    await bob.fill("#composer", "yes, see you there")
    await bob.click("#send")
    await expect(alice.locator("#messages .message", has_text="see you there")).to_have_attribute(
        "data-seq", "2"
    )

    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    await alice.screenshot(path=str(SCREENSHOT), full_page=True)
    await bob.screenshot(path=str(SCREENSHOT.with_name("chat-bob.png")), full_page=True)
    assert errors == [], f"JavaScript errors in the page: {errors}"


async def test_docs_page_renders_offline_under_a_strict_csp(
    browser: Browser, server: ChatProcess
) -> None:
    """Swagger UI comes from our vendored files: no request leaves the machine, and it
    renders every tag's operations with a `default-src 'self'` policy on the page."""
    page = await (await browser.new_context()).new_page()
    page.set_default_timeout(TIMEOUT_MS)
    outside: list[str] = []
    problems: list[str] = []
    page.on("console", lambda msg: problems.append(msg.text) if msg.type == "error" else None)
    page.on("pageerror", lambda exc: problems.append(str(exc)))

    async def offline_with_csp(route: Route) -> None:
        url = route.request.url
        if not url.startswith(server.url):
            outside.append(url)
            await route.abort()
        elif url.rstrip("/").endswith("/docs"):
            answer = await route.fetch()
            headers = {**answer.headers, "content-security-policy": STRICT_CSP}
            await route.fulfill(response=answer, headers=headers)
        else:
            await route.continue_()

    await page.route("**/*", offline_with_csp)
    await page.goto(f"{server.url}/docs")
    for tag in ("auth", "users", "rooms", "messages", "operations"):
        await expect(page.locator(f'.opblock-tag[data-tag="{tag}"]')).to_be_visible()
    await expect(page.locator(".opblock").first).to_be_visible()
    assert await page.locator(".opblock").count() >= 20
    await expect(page.locator(".btn.authorize")).to_be_visible()  # the bearerAuth scheme
    SCREENSHOT.parent.mkdir(parents=True, exist_ok=True)
    await page.screenshot(path=str(SCREENSHOT.with_name("docs.png")))
    assert outside == [], f"/docs fetched from outside: {outside}"
    assert problems == [], f"errors on /docs (CSP violations show here): {problems}"
