"""No secret leaves the server: not in its log (JSON, DEBUG, the most it ever writes), not in its
traces, call summaries or `/metrics`, not in error answers, even when a provider refuses a key.

One `voicebot serve` on `pipelines/cloud.yaml` (providers played by tests/fakes) with every
secret set: the provider keys, a wrong Anthropic key (the fake refuses it with a 401, so the
error and failover paths run with the key in hand), and a Twilio auth token (every webhook and
stream signed). One phone call with one turn, plus a badly signed webhook; then every byte the
server wrote is searched for every secret.
"""

from __future__ import annotations

import asyncio
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.caller.twilio import TwilioCaller, new_sid, webhook_params
from tests.fakes.suite import KEYS, FakeSuite
from tests.support.instant_fakes import instant_fakes
from tests.support.servers import REPO, start_server
from tests.test_twilio_call import pcm8k

pytestmark = pytest.mark.slow

PUBLIC_URL = "https://bot.example.test"
TWILIO_TOKEN = "twilio-auth-token-canary-5f0c2e"
WRONG_ANTHROPIC_KEY = "sk-ant-canary-wrong-key-7d1b9a"
ANSWER = "What color is the sky on a clear day?"


@pytest.fixture(scope="module")
def suite() -> Iterator[FakeSuite]:
    with instant_fakes(ANSWER) as (_, suite):
        yield suite


def _fetch(url: str, data: bytes | None = None, headers: dict[str, str] | None = None) -> str:
    request = urllib.request.Request(url, data=data, headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.read().decode()
    except urllib.error.HTTPError as exc:
        return f"{exc.code} {exc.read().decode()}"


async def test_no_secret_in_logs_traces_summaries_metrics_or_errors(
    suite: FakeSuite, speech: dict[str, Path], tmp_path: Path
) -> None:
    secrets = {**{k: v for k, v in KEYS.items()}, "TWILIO_AUTH_TOKEN": TWILIO_TOKEN}
    secrets["ANTHROPIC_API_KEY"] = WRONG_ANTHROPIC_KEY
    env = {
        **suite.env(),
        **secrets,
        "VOICEBOT_PUBLIC_URL": PUBLIC_URL,
        "VOICEBOT_LOG_FORMAT": "json",
        "VOICEBOT_LOG_LEVEL": "DEBUG",
        "VOICEBOT_TRACE_FILE": str(tmp_path / "traces.jsonl"),
        "VOICEBOT_SUMMARY_FILE": str(tmp_path / "summaries.jsonl"),
    }
    server = start_server(REPO / "pipelines/cloud.yaml", tmp_path / "server.log", env=env)
    written: list[str] = []
    try:
        async with TwilioCaller(
            server.url, auth_token=TWILIO_TOKEN, public_url=PUBLIC_URL
        ) as caller:
            assert await caller.wait_for_bot_audio(max_wait=10) is not None, "no greeting"
            await caller.wait_for_bot_quiet(gap=0.7, max_wait=20)
            await caller.send_pcm(pcm8k(speech["sky"]))
            said = time.monotonic()
            assert await caller.wait_for_bot_audio(after=said, max_wait=15) is not None
        # The reply came from the fallback: the wrong key was used and refused first.
        assert suite.openai.log.requests, "the failover path did not run"

        form = webhook_params(new_sid("AC"), new_sid("CA"), "+15005550006", "+15005550001")
        refused = await asyncio.to_thread(
            _fetch,
            f"{server.url}/twilio/voice",
            urllib.parse.urlencode(form).encode(),
            {"X-Twilio-Signature": "bm90IGEgc2lnbmF0dXJl"},
        )
        assert refused.startswith("403"), refused
        written.append(refused)
        written.append(await asyncio.to_thread(_fetch, f"{server.url}/metrics"))
        written.append(await asyncio.to_thread(_fetch, f"{server.url}/readyz"))
    finally:
        server.stop()
    log = server.log()
    assert "anthropic" in log.lower() and ("401" in log or "auth" in log.lower()), (
        "the refused key should have been reported (without the key)"
    )
    written.append(log)
    for name in ("traces.jsonl", "summaries.jsonl"):
        path = tmp_path / name
        assert path.exists() and path.stat().st_size > 0, name
        written.append(path.read_text())
    everything = "\n".join(written)
    for name, value in secrets.items():
        assert value not in everything, f"{name} leaked"
