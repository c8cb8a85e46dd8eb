"""Several `voicebot serve` processes behind HAProxy, with the shipped config
(deploy/haproxy/haproxy.cfg): a call's webhook and its media stream may land on different
processes, and a draining process gets no new calls.

Two processes on `pipelines/cloud.yaml` (providers played by the local fakes), each with
VOICEBOT_PUBLIC_URL = HAProxy's URL and TWILIO_AUTH_TOKEN set, so every webhook and stream is
signed over the balancer's URL and checked by whichever process receives it. Which process
answered what is read from the processes themselves: the webhook's request span in each
one's trace file (VOICEBOT_TRACE_FILE), the stream's "call started" line in its log and
`voicebot_calls_started_total` on its /metrics.

HAProxy (Debian's `haproxy`) must be installed: `make test` / `.ci/run` install it.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import signal
import subprocess
import time
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlencode

import pytest
from twilio.request_validator import RequestValidator

from bot.caller.twilio import TwilioCaller
from tests.fakes.suite import TWILIO_AUTH_TOKEN, FakeSuite
from tests.support.instant_fakes import instant_fakes
from tests.support.metrics import sample, scrape
from tests.support.servers import REPO, RunningServer, free_port, start_server
from tests.test_twilio_call import pcm8k

pytestmark = pytest.mark.slow

TEMPLATE = REPO / "deploy/haproxy/haproxy.cfg"
GREETING = "Hello! How can I help you today?"
QUESTION = "What color is the sky on a clear day?"
NAMES = ("bot1", "bot2")


def haproxy_binary() -> str:
    # Debian installs it in /usr/sbin, which a non-login PATH may leave out.
    found = shutil.which("haproxy") or shutil.which("haproxy", path="/usr/sbin:/sbin")
    if found is None:
        pytest.fail(
            "haproxy is not on PATH: install Debian's package (apt-get install -y haproxy); "
            "`make test` and .ci/run install it when it is missing"
        )
    return found


def render_config(backends: dict[str, str], balance: str | None = None) -> str:
    """The shipped template with our servers in place of its example `server` lines."""
    text = TEMPLATE.read_text()
    examples = re.findall(r"^ *server .*\n", text, flags=re.M)
    assert examples, "the template has no `server` lines"
    servers = "".join(
        f"    server {name} {address} cookie {name}\n" for name, address in backends.items()
    )
    text = text.replace("".join(examples), servers)
    assert text.count("\n    server ") == len(backends), text
    if balance is not None:
        assert "    balance leastconn\n" in text
        text = text.replace("    balance leastconn\n", f"    balance {balance}\n")
    return text


@dataclass
class Balancer:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    async def wait_for(self, text: str, max_wait: float) -> None:
        deadline = time.monotonic() + max_wait
        while text not in self.log():
            if time.monotonic() > deadline:
                raise AssertionError(f"HAProxy never logged {text!r}:\n{self.log()}")
            await asyncio.sleep(0.1)


def start_haproxy(config: str, port: int, tmp_path: Path) -> Balancer:
    path = tmp_path / "haproxy.cfg"
    path.write_text(config)
    env = {**os.environ, "VOICEBOT_LB_BIND": f"127.0.0.1:{port}"}
    binary = haproxy_binary()
    checked = subprocess.run(
        [binary, "-c", "-f", str(path)], env=env, capture_output=True, text=True, timeout=30
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    log_path = tmp_path / "haproxy.log"
    process = subprocess.Popen(
        [binary, "-f", str(path), "-db"],
        env=env,
        stdout=log_path.open("wb"),
        stderr=subprocess.STDOUT,
    )
    balancer = Balancer(f"http://127.0.0.1:{port}", process, log_path)
    deadline = time.monotonic() + 10
    while True:
        if process.poll() is not None:
            raise AssertionError(f"haproxy exited with {process.returncode}:\n{balancer.log()}")
        try:
            with urllib.request.urlopen(f"{balancer.url}/healthz", timeout=2) as response:
                if response.status == 200:
                    return balancer
        except OSError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"haproxy does not answer:\n{balancer.log()}")
        time.sleep(0.1)


@dataclass
class Cluster:
    balancer: Balancer
    servers: dict[str, RunningServer]
    trace_files: dict[str, Path]

    def webhook_spans(self, name: str) -> int:
        """How many /twilio/voice requests the process has answered (its request spans)."""
        path = self.trace_files[name]
        if not path.exists():
            return 0
        text = path.read_text()
        # The exporter may be mid-line while we read: count complete lines only.
        complete = text[: text.rfind("\n") + 1]
        spans = [json.loads(line) for line in complete.splitlines() if line.strip()]
        return sum(1 for s in spans if s["attributes"].get("http.route") == "/twilio/voice")

    def webhooks(self) -> dict[str, int]:
        return {name: self.webhook_spans(name) for name in self.servers}

    def streams(self) -> dict[str, float]:
        """Twilio calls started by each process, from its /metrics."""
        return {
            name: sample(scrape(server.url), "voicebot_calls_started_total", transport="twilio")
            for name, server in self.servers.items()
        }


@pytest.fixture(scope="module")
def suite() -> Iterator[FakeSuite]:
    with instant_fakes(QUESTION, warm=[GREETING]) as (_, suite):
        yield suite


def start_cluster(
    suite: FakeSuite, tmp_path: Path, balance: str | None, drain_secs: float = 10
) -> Cluster:
    haproxy_binary()  # fail first, clearly, when it is missing
    port = free_port()
    public_url = f"http://127.0.0.1:{port}"
    trace_files = {name: tmp_path / f"{name}-spans.jsonl" for name in NAMES}

    def start(name: str) -> RunningServer:
        env = {
            **suite.env(),
            "VOICEBOT_PUBLIC_URL": public_url,
            "TWILIO_AUTH_TOKEN": TWILIO_AUTH_TOKEN,
            "VOICEBOT_TRACE_FILE": str(trace_files[name]),
            "VOICEBOT_DRAIN_SECONDS": f"{drain_secs:g}",
        }
        return start_server(REPO / "pipelines/cloud.yaml", tmp_path / f"{name}.log", env=env)

    with ThreadPoolExecutor(len(NAMES)) as pool:
        servers = dict(zip(NAMES, pool.map(start, NAMES), strict=True))
    backends = {name: server.url.removeprefix("http://") for name, server in servers.items()}
    try:
        balancer = start_haproxy(render_config(backends, balance), port, tmp_path)
    except BaseException:
        for server in servers.values():
            server.stop()
        raise
    return Cluster(balancer, servers, trace_files)


def stop_cluster(cluster: Cluster) -> None:
    for server in cluster.servers.values():
        server.stop()
    cluster.balancer.process.terminate()
    try:
        cluster.balancer.process.wait(timeout=10)
    except subprocess.TimeoutExpired:
        cluster.balancer.process.kill()


def caller_for(url: str, public_url: str) -> TwilioCaller:
    """A signed Twilio caller; `url` is where it connects, `public_url` what it signs."""
    return TwilioCaller(url, auth_token=TWILIO_AUTH_TOKEN, public_url=public_url)


async def talk(caller: TwilioCaller, wav: Path) -> None:
    """Greeting, one question, the bot's reply."""
    assert await caller.wait_for_bot_audio(max_wait=10) is not None, "no greeting"
    await caller.wait_for_bot_quiet(gap=0.7, max_wait=20)
    await caller.send_pcm(pcm8k(wav))
    said_at = time.monotonic()
    assert await caller.wait_for_bot_audio(after=said_at, max_wait=15) is not None, "no reply"


def status_of(url: str) -> int:
    with urllib.request.urlopen(url, timeout=5) as response:
        return int(response.status)


def only(counts: dict[str, float]) -> str:
    """The one process whose count went up by exactly one (the others: unchanged)."""
    moved = {name: n for name, n in counts.items() if n}
    assert len(moved) == 1 and next(iter(moved.values())) == 1, counts
    return next(iter(moved))


def diff(after: dict[str, float], before: dict[str, float]) -> dict[str, float]:
    return {name: after[name] - before[name] for name in after}


async def wait_webhooks(cluster: Cluster, before: dict[str, int]) -> dict[str, float]:
    """The request span is written as the response goes out: give it a moment."""
    deadline = time.monotonic() + 5
    while True:
        moved = diff(cluster.webhooks(), before)
        if any(moved.values()) or time.monotonic() > deadline:
            return moved
        await asyncio.sleep(0.05)


# ----------------------------------------------------------------------------- the config


def test_shipped_config_is_valid_and_fit_for_websockets(tmp_path: Path) -> None:
    text = TEMPLATE.read_text()
    for line in (
        "balance leastconn",
        "cookie voicebot_server insert indirect nocache httponly",
        "option httpchk GET /readyz",
        "http-check expect status 200",
        "timeout tunnel 1h",
        "option forwardfor",
        "X-Forwarded-Proto",
        'bind "${VOICEBOT_LB_BIND-:8080}"',
    ):
        assert line in text, line
    settings = [line.split("#")[0] for line in text.splitlines()]
    # A failed check must never cut an established call (on-marked-down shutdown-sessions).
    assert not any("shutdown-sessions" in line for line in settings)
    env = {**os.environ, "VOICEBOT_LB_BIND": f"127.0.0.1:{free_port()}"}
    checked = subprocess.run(
        [haproxy_binary(), "-c", "-f", str(TEMPLATE)],
        env=env,
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert checked.returncode == 0, checked.stdout + checked.stderr
    rendered = render_config({"a": "127.0.0.1:1", "b": "127.0.0.1:2", "c": "127.0.0.1:3"})
    assert re.findall(r"^    server (\w+)", rendered, flags=re.M) == ["a", "b", "c"]


# ------------------------------------------------------------------------------ the calls


async def test_webhook_and_stream_on_different_processes(
    suite: FakeSuite, speech: dict[str, Path], tmp_path: Path
) -> None:
    # Round robin (in this copy only) makes the split deterministic: a call's webhook and
    # its stream are consecutive requests, so they go to different processes; one probe
    # between calls swaps the roles for the next call.
    cluster = start_cluster(suite, tmp_path, balance="roundrobin")
    try:
        url = cluster.balancer.url
        answered: list[tuple[str, str]] = []
        for _ in range(3):
            webhooks, streams = cluster.webhooks(), cluster.streams()
            async with caller_for(url, public_url=url) as caller:
                await talk(caller, speech["sky"])
            webhook_by = only(await wait_webhooks(cluster, webhooks))
            stream_by = only(diff(cluster.streams(), streams))
            assert webhook_by != stream_by, (webhook_by, stream_by)
            # The stream's process ran the call: its log has the call (by CallSid), the
            # other's has not.
            started = f"{caller.call_sid} bot.calls: call started (twilio, pipeline cloud)"
            assert started in cluster.servers[stream_by].log()
            assert caller.call_sid not in cluster.servers[webhook_by].log()
            answered.append((webhook_by, stream_by))
            assert await asyncio.to_thread(status_of, f"{url}/healthz") == 200
        # Both directions happened: each process answered a webhook whose stream the other
        # one served.
        assert set(answered) == {("bot1", "bot2"), ("bot2", "bot1")}, answered
        assert not re.search(
            r"refused .*signature", "".join(s.log() for s in cluster.servers.values())
        )
    finally:
        stop_cluster(cluster)


def post_webhook(url: str, cookie: str | None) -> tuple[int, str]:
    """A signed Twilio webhook POST through the balancer; (status, Set-Cookie)."""
    params = {
        "CallSid": "CA" + "1" * 32,
        "AccountSid": "AC" + "1" * 32,
        "From": "+15005550006",
        "To": "+15005550001",
    }
    signature = RequestValidator(TWILIO_AUTH_TOKEN).compute_signature(f"{url}/twilio/voice", params)
    headers = {"X-Twilio-Signature": signature, "Content-Type": "application/x-www-form-urlencoded"}
    if cookie:
        headers["Cookie"] = cookie
    request = urllib.request.Request(
        f"{url}/twilio/voice", data=urlencode(params).encode(), headers=headers
    )
    with urllib.request.urlopen(request, timeout=5) as response:
        return int(response.status), response.headers.get("Set-Cookie", "")


async def test_the_cookie_pins_a_browsers_requests_to_one_process(
    suite: FakeSuite, tmp_path: Path
) -> None:
    # SmallWebRTC: a call's PATCH /api/offer must reach the process that holds its peer
    # connection. HAProxy's cookie pins a browser's requests (here: webhooks, which show up in
    # each process's trace file) to one process, even with round robin.
    cluster = start_cluster(suite, tmp_path, balance="roundrobin")
    try:
        url = cluster.balancer.url
        status, set_cookie = await asyncio.to_thread(post_webhook, url, None)
        assert status == 200 and set_cookie.startswith("voicebot_server=bot"), set_cookie
        # That request's span is written as its response goes out: count it in first.
        deadline = time.monotonic() + 5
        while sum(cluster.webhooks().values()) < 1 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        before = cluster.webhooks()
        assert sum(before.values()) == 1, before
        for _ in range(4):
            status, _ = await asyncio.to_thread(post_webhook, url, "voicebot_server=bot2")
            assert status == 200
        deadline = time.monotonic() + 5
        while sum(diff(cluster.webhooks(), before).values()) < 4 and time.monotonic() < deadline:
            await asyncio.sleep(0.05)
        assert diff(cluster.webhooks(), before) == {"bot1": 0, "bot2": 4}
    finally:
        stop_cluster(cluster)


async def test_draining_process_gets_no_new_calls(
    suite: FakeSuite, speech: dict[str, Path], tmp_path: Path
) -> None:
    cluster = start_cluster(suite, tmp_path, balance="roundrobin", drain_secs=60)
    try:
        url = cluster.balancer.url
        draining, other = cluster.servers["bot1"], cluster.servers["bot2"]
        # A call in flight on bot1 (straight to it, signed over the public URL), so that it
        # drains rather than exits when told to stop.
        async with caller_for(draining.url, public_url=url) as held:
            assert await held.wait_for_bot_audio(max_wait=10) is not None, "no greeting"
            draining.process.send_signal(signal.SIGTERM)
            # Taken out by the health check (/readyz 503), not because it stopped listening.
            await cluster.balancer.wait_for(
                "Server voicebot/bot1 is DOWN, reason: Layer7 wrong status, code: 503", max_wait=10
            )
            assert draining.process.poll() is None, "bot1 did not wait for its call"

            before_webhooks, before_streams = cluster.webhooks(), cluster.streams()
            for _ in range(2):
                async with caller_for(url, public_url=url) as caller:
                    await talk(caller, speech["sky"])
            moved_webhooks = diff(cluster.webhooks(), before_webhooks)
            moved_streams = diff(cluster.streams(), before_streams)
            assert moved_webhooks == {"bot1": 0, "bot2": 2}, moved_webhooks
            assert moved_streams == {"bot1": 0, "bot2": 2}, moved_streams
            # The call on the draining process went on meanwhile.
            assert not held.log.closed
            await held.send_pcm(pcm8k(speech["sky"]))
            said_at = time.monotonic()
            assert await held.wait_for_bot_audio(after=said_at, max_wait=15) is not None
        # Its last call over, bot1 exits cleanly; bot2 still serves.
        await asyncio.to_thread(draining.process.wait, 10)
        assert draining.process.returncode == 0, draining.log()
        assert await asyncio.to_thread(status_of, f"{other.url}/readyz") == 200
    finally:
        stop_cluster(cluster)
