"""The page at `/` in a real browser: Debian's Chromium, driven by Playwright, with a WAV file as
its microphone. The page is Pipecat's own client-js with its SmallWebRTC transport (bundled from
npm by `make client`), so these calls also prove that Pipecat's client SDK talks to `/api/offer`
and understands the server's RTVI messages unchanged.

The bot's voice is measured in the page with WebAudio (an AnalyserNode on the <audio> element's
stream), not with RTP statistics, which read zero in headless Chromium.
"""

from __future__ import annotations

import json
import re
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from playwright.sync_api import Browser, Page, Playwright, Route, expect, sync_playwright

from tests.support.browser import (
    BOT_AUDIO_PROBE,
    QUIET_FLAGS,
    caller_wav,
    chromium_path,
    fake_microphone_flags,
)
from tests.support.loopback import ensure_loopback_candidate_address
from tests.support.servers import REPO, RunningServer, start_server

pytestmark = pytest.mark.slow

ARTIFACTS = REPO / "test-artifacts"
SCREENSHOT = ARTIFACTS / "browser-client.png"
UTTERANCE = "My friend John Smith wants to know what color the sky is on a clear day."
PHONE = {"width": 390, "height": 844}  # a phone-sized screen, in CSS pixels
API_KEY = "browser-test-api-key-0123456789"
HEARD_RMS = 0.02  # -34 dBFS: speech, well above the silence of an idle track

# What the page records about itself for the test, before its own script runs: the page's
# level meters and the bot-speaking indicator, sampled with the time they were seen.
PAGE_PROBE = """
(() => {
  window.__micLevels = [];
  window.__botSpeaking = [];
  setInterval(() => {
    const mic = document.getElementById("mic-level");
    if (mic) window.__micLevels.push(mic.value);
  }, 50);
  document.addEventListener("DOMContentLoaded", () => {
    const indicator = document.getElementById("bot-speaking");
    if (!indicator) return;  // another frame (the Daily iframe)
    new MutationObserver(() => window.__botSpeaking.push(
      [performance.now(), indicator.dataset.speaking])).observe(indicator, { attributes: true });
  });
})();
"""

BOT_HEARD_ON_PAGE = """() => document.getElementById("bot-speaking").dataset.speaking === "true"
    && document.getElementById("bot-level").value > 0.3"""


@pytest.fixture(scope="module", autouse=True)
def loopback_candidate_address() -> None:
    ensure_loopback_candidate_address()


@pytest.fixture(scope="module")
def page_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """`voicebot serve` with the offline pipeline, for this module's browsers only (their calls
    leave the session's shared server as they found it)."""
    server = start_server(REPO / "pipelines/local.yaml", tmp_path_factory.mktemp("page") / "log")
    yield server
    server.stop()


@pytest.fixture(scope="module")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as pw:
        yield pw


def launch(pw: Playwright, *flags: str) -> Browser:
    return pw.chromium.launch(executable_path=chromium_path(), args=[*QUIET_FLAGS, *flags])


def page_url(server: RunningServer, fragment: str = "") -> str:
    """The page on http://localhost (a secure context), the browser's microphone untouched."""
    return server.url.replace("127.0.0.1", "localhost") + "/?processing=off" + fragment


def open_page(browser: Browser, url: str, errors: list[str], requests: list[str]) -> Page:
    context = browser.new_context(viewport=PHONE, is_mobile=True, has_touch=True)
    page = context.new_page()
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("request", lambda request: requests.append(request.url))
    page.add_init_script(BOT_AUDIO_PROBE)
    page.add_init_script(PAGE_PROBE)
    page.goto(url)
    return page


@contextmanager
def browser_page(
    pw: Playwright, url: str, *flags: str
) -> Iterator[tuple[Page, list[str], list[str]]]:
    """A browser launched with `flags`, one phone-sized page open on `url`, and what the page
    did: its uncaught errors and the URLs it requested (both still readable after the close)."""
    browser = launch(pw, *flags)
    errors: list[str] = []
    requests: list[str] = []
    try:
        yield open_page(browser, url, errors, requests), errors, requests
    finally:
        browser.close()


def calls_in_flight(server: RunningServer) -> int:
    with urllib.request.urlopen(server.url + "/readyz", timeout=5) as response:
        return int(json.load(response)["calls"])


def wait_for_no_calls(server: RunningServer, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while calls_in_flight(server) != 0:
        assert time.monotonic() < deadline, "the server still holds the call after hang-up"
        time.sleep(0.2)


def test_a_call_from_the_page(
    playwright: Playwright, page_server: RunningServer, tmp_path: Path
) -> None:
    """Connect, speak, hear the reply, read the redacted transcript and the latency, hang up."""
    wait_for_no_calls(page_server)
    wav = caller_wav(UTTERANCE, tmp_path / "caller.wav", lead_secs=6.0, tail_secs=40.0)
    with browser_page(playwright, page_url(page_server), *fake_microphone_flags(wav)) as (
        page,
        errors,
        requests,
    ):
        status = page.locator("#status")
        expect(status).to_have_text("Not connected")

        page.get_by_role("button", name="Connect").click()
        expect(status).to_have_text("Connected: say something", timeout=20_000)
        expect(page.get_by_role("button", name="Hang up")).to_be_enabled()
        microphones = page.get_by_label("Microphone").locator("option")
        assert microphones.count() >= 1
        assert all(label.strip() for label in microphones.all_inner_texts())

        # The caller's utterance, as the bot read it: the name redacted, live.
        user = page.locator("#transcript li.user:not(.interim)")
        expect(user.filter(has_text="<PERSON>")).to_have_count(1, timeout=45_000)
        expect(user.filter(has_text=re.compile("sky", re.IGNORECASE)).first).to_be_visible()
        heard_at = page.evaluate("performance.now()")

        # The page shows the bot speaking, with its own level meter moving: the moment for
        # the README's screenshot of the connected page (phone-sized).
        page.wait_for_function(BOT_HEARD_ON_PAGE, timeout=60_000)
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOT), full_page=True)
        answers = page.locator("#transcript li.user ~ li.bot")
        expect(answers.filter(has_text=re.compile("blue", re.IGNORECASE)).first).to_be_visible(
            timeout=60_000
        )
        expect(page.locator("#latency-total")).to_have_text(re.compile(r"^\d+ ms$"), timeout=30_000)
        expect(page.locator("#latency-stages dt").first).to_be_visible()
        stages = page.locator("#latency-stages dt").all_inner_texts()
        assert "Speech-to-text" in stages and "Language model" in stages, stages
        voice_to_voice = int(page.inner_text("#latency-total").split()[0])
        assert 0 < voice_to_voice < 30_000, voice_to_voice

        # The reply was heard: the bot's track carried speech after the caller spoke.
        page.wait_for_timeout(1500)
        levels = page.evaluate("window.__botAudio")
        loud = [rms for at, rms in levels if at > heard_at and rms > HEARD_RMS]
        assert len(loud) >= 10, f"no reply audio after the caller spoke ({len(levels)} samples)"
        speaking = page.evaluate("window.__botSpeaking")
        assert any(at > heard_at and state == "true" for at, state in speaking), speaking
        assert max(page.evaluate("window.__micLevels")) > 0.3, "the mic meter never moved"

        # Phone-sized: nothing is cut off sideways.
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        content = page.content()

        page.get_by_role("button", name="Hang up").click()
        expect(status).to_have_text("Call ended", timeout=10_000)
        expect(page.get_by_role("button", name="Connect")).to_be_enabled()
        wait_for_no_calls(page_server)
    assert "Smith" not in content
    assert errors == []
    origin = page_server.url.replace("127.0.0.1", "localhost")
    assert [url for url in requests if not url.startswith((origin + "/", "data:"))] == []


@pytest.fixture(scope="module")
def keyed_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """A server that takes WebRTC calls with a session token only, one call at a time."""
    log = tmp_path_factory.mktemp("keyed") / "server.log"
    server = start_server(
        REPO / "pipelines/local.yaml",
        log,
        env={
            "VOICEBOT_API_KEYS": API_KEY,
            "VOICEBOT_SESSION_SECRET": "browser-test-session-secret-0123456789abcdef",
            "VOICEBOT_MAX_CALLS": "1",
        },
    )
    yield server
    server.stop()


def session_token(server: RunningServer) -> str:
    request = urllib.request.Request(
        server.url + "/api/session", method="POST", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return str(json.load(response)["token"])


def expect_alert(page: Page, title: str, help_text: str | re.Pattern[str]) -> None:
    alert = page.get_by_role("alert")
    expect(alert).to_be_visible(timeout=30_000)
    expect(alert.get_by_role("heading")).to_have_text(title)
    expect(alert).to_contain_text(help_text)
    expect(page.locator("#status")).to_have_text(title)
    expect(page.get_by_role("button", name="Connect")).to_be_enabled()


def test_the_page_says_why_the_server_refused(
    playwright: Playwright, keyed_server: RunningServer
) -> None:
    """No token: the page says a token is needed. A full server: it says busy, and when to
    come back; once the call ends, the same page connects."""
    flags = fake_microphone_flags(None)
    with browser_page(playwright, page_url(keyed_server), *flags) as (anonymous, errors, requests):
        browser = anonymous.context.browser
        assert browser is not None
        anonymous.get_by_role("button", name="Connect").click()
        expect_alert(anonymous, "The server needs a session token", "#token=")

        first = open_page(
            browser,
            page_url(keyed_server, "#token=" + session_token(keyed_server)),
            errors,
            requests,
        )
        assert "token" not in first.url, "the token stays in the address bar"
        first.get_by_role("button", name="Connect").click()
        expect(first.locator("#status")).to_have_text("Connected: say something", timeout=20_000)

        second = open_page(
            browser,
            page_url(keyed_server, "#token=" + session_token(keyed_server)),
            errors,
            requests,
        )
        second.get_by_role("button", name="Connect").click()
        expect_alert(second, "The server is busy", "Try again in 5 seconds")

        first.get_by_role("button", name="Hang up").click()
        expect(first.locator("#status")).to_have_text("Call ended", timeout=10_000)
        wait_for_no_calls(keyed_server)
        second.get_by_role("button", name="Connect").click()
        expect(second.get_by_role("alert")).to_be_hidden()
        expect(second.locator("#status")).to_have_text("Connected: say something", timeout=20_000)
        second.get_by_role("button", name="Hang up").click()
        expect(second.locator("#status")).to_have_text("Call ended", timeout=10_000)
    assert errors == []


def test_the_page_says_when_the_microphone_is_blocked(
    playwright: Playwright, page_server: RunningServer
) -> None:
    """The browser denies the microphone: the page says how to allow it, and calls no one."""
    no_auto_accept = "--use-fake-device-for-media-stream"
    with browser_page(playwright, page_url(page_server), no_auto_accept) as (
        page,
        errors,
        requests,
    ):
        page.get_by_role("button", name="Connect").click()
        expect_alert(page, "Microphone blocked", "Allow microphone access")
    assert not any("/api/offer" in url for url in requests), requests
    assert errors == []


def test_the_page_says_when_ice_fails(playwright: Playwright, page_server: RunningServer) -> None:
    """The server answers, but this browser's network has no path for media (Chromium is told to
    offer no UDP candidate, and the server has no TCP one): the page gives up when the server
    would, says it was ICE and what to do; the server lets the call go."""
    wait_for_no_calls(page_server)
    flags = [*fake_microphone_flags(None), "--webrtc-ip-handling-policy=disable_non_proxied_udp"]
    with browser_page(playwright, page_url(page_server), *flags) as (page, errors, requests):
        page.get_by_role("button", name="Connect").click()
        expect_alert(page, "The audio could not connect (ICE failed)", "TURN relay")
    assert any("/api/offer" in url for url in requests), "the offer was never sent"
    wait_for_no_calls(page_server, timeout=30.0)
    assert errors == []


@pytest.fixture(scope="module")
def short_call_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningServer]:
    """The offline pipeline with calls limited to 8 seconds."""
    where = tmp_path_factory.mktemp("short")
    text = (REPO / "pipelines/local.yaml").read_text()
    assert "call:\n" in text
    pipeline = where / "short.yaml"
    pipeline.write_text(text.replace("call:\n", "call:\n  max_duration_secs: 8\n", 1))
    server = start_server(pipeline, where / "server.log")
    yield server
    server.stop()


def test_the_page_says_why_the_bot_ended_the_call(
    playwright: Playwright, short_call_server: RunningServer
) -> None:
    """The bot ends the call (its time limit): the page says so, not that the call dropped."""
    url = page_url(short_call_server)
    with browser_page(playwright, url, *fake_microphone_flags(None)) as (page, errors, _):
        page.get_by_role("button", name="Connect").click()
        status = page.locator("#status")
        expect(status).to_have_text("Connected: say something", timeout=20_000)
        expect(status).to_have_text(
            "The bot ended the call: it reached its time limit.", timeout=30_000
        )
        expect(page.get_by_role("alert")).to_be_hidden()
        expect(page.get_by_role("button", name="Connect")).to_be_enabled()
    assert errors == []


def test_hanging_up_during_the_goodbye_frees_the_call_at_once(
    playwright: Playwright, short_call_server: RunningServer
) -> None:
    """The caller hangs up while the bot says goodbye (its EndFrame already queued): the call's
    place is free at once, not after Pipecat's 10 s write timeout for a peer that stopped
    reading."""
    wait_for_no_calls(short_call_server)
    speaking = "() => document.getElementById('bot-speaking').dataset.speaking === '{}'"
    url = page_url(short_call_server)
    with browser_page(playwright, url, *fake_microphone_flags(None)) as (page, errors, _):
        page.get_by_role("button", name="Connect").click()
        for state in ("true", "false", "true"):  # the greeting, then the goodbye
            page.wait_for_function(speaking.format(state), timeout=30_000)
        assert calls_in_flight(short_call_server) == 1
        page.wait_for_timeout(300)
        page.get_by_role("button", name="Hang up").click()
        hung_up = time.monotonic()
        wait_for_no_calls(short_call_server, timeout=15.0)
        freed_after = time.monotonic() - hung_up
    assert freed_after < 3.0, f"the call held its place {freed_after:.1f}s after the hang-up"
    assert errors == []


AXE = REPO / "client/node_modules/axe-core/axe.min.js"  # installed by `make client`
AXE_RULES = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "best-practice"]


def accessibility_violations(page: Page) -> list[str]:
    """axe-core's WCAG 2.1 A/AA and best-practice findings on the page as it is now."""
    if page.evaluate("typeof window.axe") == "undefined":
        page.add_script_tag(path=str(AXE))
    found = page.evaluate(
        "async (tags) => (await axe.run(document, { runOnly: { type: 'tag', values: tags } }))"
        ".violations.map((v) => `${v.id}: ${v.help} (${v.nodes.map((n) => n.target).join(', ')})`)",
        AXE_RULES,
    )
    return list(found)


def test_the_page_passes_an_accessibility_audit(
    playwright: Playwright, page_server: RunningServer
) -> None:
    """axe-core finds nothing on the page, idle and showing an error, on a phone-sized screen."""
    assert AXE.exists(), f"{AXE} is missing: `make client` installs it"
    browser = launch(playwright, "--use-fake-device-for-media-stream")  # the mic is refused
    try:
        context = browser.new_context(viewport=PHONE, is_mobile=True, bypass_csp=True)
        page = context.new_page()
        page.goto(page_url(page_server))
        assert accessibility_violations(page) == []
        page.get_by_role("button", name="Connect").click()
        expect(page.get_by_role("alert")).to_be_visible(timeout=10_000)
        assert accessibility_violations(page) == []
    finally:
        browser.close()


# Records every track the page puts on a WebRTC sender (the transport's, and a swapped one).
SENDER_PROBE = """
(() => {
  window.__sentTracks = [];
  const replace = RTCRtpSender.prototype.replaceTrack;
  RTCRtpSender.prototype.replaceTrack = function (track) {
    if (track && track.kind === "audio") window.__sentTracks.push(track.label);
    return replace.call(this, track);
  };
})();
"""


def test_the_chosen_microphone_is_the_one_sent(
    playwright: Playwright, page_server: RunningServer
) -> None:
    """Another microphone picked during a call goes out on the same peer connection; one picked
    between calls is the one the next call sends."""
    wait_for_no_calls(page_server)
    browser = launch(playwright, *fake_microphone_flags(None))
    errors: list[str] = []
    requests: list[str] = []
    try:
        context = browser.new_context(viewport=PHONE, is_mobile=True)
        context.add_init_script(SENDER_PROBE)
        page = context.new_page()
        page.on("pageerror", lambda exc: errors.append(str(exc)))
        page.on("request", lambda request: requests.append(f"{request.method} {request.url}"))
        page.goto(page_url(page_server))
        page.get_by_role("button", name="Connect").click()
        expect(page.locator("#status")).to_have_text("Connected: say something", timeout=20_000)
        first = page.evaluate("window.__sentTracks")
        mics = page.get_by_label("Microphone")
        labels = mics.locator("option").all_inner_texts()
        other = next(label for label in labels if label not in first)
        mics.select_option(label=other)
        page.wait_for_function(
            "(label) => window.__sentTracks.includes(label)", arg=other, timeout=10_000
        )
        expect(page.locator("#status")).to_have_text("Connected: say something")
        expect(page.get_by_role("alert")).to_be_hidden()
        assert calls_in_flight(page_server) == 1
        offers = [line for line in requests if line.startswith("POST ") and "/api/offer" in line]
        page.get_by_role("button", name="Hang up").click()
        expect(page.locator("#status")).to_have_text("Call ended", timeout=10_000)
        assert len(offers) == 1, "the swap renegotiated or reconnected"

        third = next(label for label in labels if label not in (*first, other))
        mics.select_option(label=third)
        page.evaluate("window.__sentTracks = []")
        wait_for_no_calls(page_server)
        page.get_by_role("button", name="Connect").click()
        expect(page.locator("#status")).to_have_text("Connected: say something", timeout=20_000)
        assert page.evaluate("window.__sentTracks") == [third]
        page.get_by_role("button", name="Hang up").click()
        expect(page.locator("#status")).to_have_text("Call ended", timeout=10_000)
    finally:
        browser.close()
    assert first, "the transport sent no microphone track"
    assert errors == []


def test_hanging_up_while_connecting_then_calling_again(
    playwright: Playwright, page_server: RunningServer
) -> None:
    """Hang up before the offer is sent (the page is still fetching its ICE servers): no offer
    goes out, no error shows, nothing is held; the next call connects and nothing of the
    abandoned one interferes with it."""
    wait_for_no_calls(page_server)
    held: list[Route] = []
    with browser_page(playwright, page_url(page_server), *fake_microphone_flags(None)) as (
        page,
        errors,
        requests,
    ):
        page.route("**/api/ice-servers", lambda route: held.append(route))  # answered later
        status = page.locator("#status")
        page.get_by_role("button", name="Connect").click()
        hang_up = page.get_by_role("button", name="Hang up")
        expect(hang_up).to_be_enabled(timeout=10_000)
        page.wait_for_timeout(300)
        assert len(held) == 1, "the page did not ask for its ICE servers"
        hang_up.click()
        expect(status).to_have_text("Call ended", timeout=10_000)
        page.unroute("**/api/ice-servers")  # lets the held request through
        page.wait_for_timeout(1_000)
        expect(page.get_by_role("alert")).to_be_hidden()
        assert not any(url.endswith("/api/offer") for url in requests), "an offer went out"
        assert calls_in_flight(page_server) == 0

        page.get_by_role("button", name="Connect").click()
        expect(status).to_have_text("Connected: say something", timeout=20_000)
        page.wait_for_timeout(2_000)
        expect(status).to_have_text("Connected: say something")
        expect(page.get_by_role("alert")).to_be_hidden()
        assert calls_in_flight(page_server) == 1
        hang_up.click()
        expect(status).to_have_text("Call ended", timeout=10_000)
        wait_for_no_calls(page_server)
    assert errors == []
