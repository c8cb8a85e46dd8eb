"""Every fake provider on one loopback port, and the environment that points
`pipelines/cloud.yaml` at them.

`FakeSuite` holds one fake per provider (Deepgram, Anthropic, OpenAI, ElevenLabs, Daily REST,
Twilio REST); `running_fakes()` serves them for the length of a block; `env()` gives the
provider keys and base URLs, as `export` lines print them (`python -m tests.fakes`).
`Latencies` sets the published latencies the fakes inject.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from tests.fakes.base import FakeServer
from tests.fakes.daily import FakeDailyRest
from tests.fakes.deepgram import FakeDeepgram
from tests.fakes.elevenlabs import FakeElevenLabs
from tests.fakes.llm import FakeAnthropic, FakeOpenAI
from tests.fakes.twilio_rest import FakeTwilioRest

# Test keys: not secrets, only what the fakes expect to see.
KEYS = {
    "DEEPGRAM_API_KEY": "fake-deepgram-key",
    "ANTHROPIC_API_KEY": "fake-anthropic-key",
    "OPENAI_API_KEY": "fake-openai-key",
    "ELEVENLABS_API_KEY": "fake-elevenlabs-key",
    "DAILY_API_KEY": "fake-daily-key",
}
TWILIO_AUTH_TOKEN = "fake-twilio-auth-token"
VOICE_ID = "fakevoice0000000000"


@dataclass
class Latencies:
    """Injected latencies, in milliseconds (the published figures by default)."""

    stt_final_ms: float = 100.0  # Deepgram: final transcript after the end of speech
    llm_first_token_ms: float = 250.0  # Anthropic and OpenAI: first token
    llm_per_token_ms: float = 0.0
    tts_first_chunk_ms: float = 75.0  # ElevenLabs: first audio chunk of a context
    tts_per_chunk_ms: float = 0.0


@dataclass
class FakeSuite:
    latencies: Latencies = field(default_factory=Latencies)
    transcript: str | None = None  # a canned transcript instead of transcribing (benchmarks)
    deepgram: FakeDeepgram = field(init=False)
    anthropic: FakeAnthropic = field(init=False)
    openai: FakeOpenAI = field(init=False)
    elevenlabs: FakeElevenLabs = field(init=False)
    daily: FakeDailyRest = field(init=False)
    twilio: FakeTwilioRest = field(init=False)
    server: FakeServer = field(init=False)
    url: str = ""

    def __post_init__(self) -> None:
        self.deepgram = FakeDeepgram(KEYS["DEEPGRAM_API_KEY"], transcript=self.transcript)
        self.anthropic = FakeAnthropic(KEYS["ANTHROPIC_API_KEY"])
        self.openai = FakeOpenAI(KEYS["OPENAI_API_KEY"])
        self.elevenlabs = FakeElevenLabs(KEYS["ELEVENLABS_API_KEY"])
        self.daily = FakeDailyRest(KEYS["DAILY_API_KEY"])
        self.twilio = FakeTwilioRest(auth_token=TWILIO_AUTH_TOKEN)
        self.server = FakeServer(
            self.deepgram, self.anthropic, self.openai, self.elevenlabs, self.daily, self.twilio
        )
        self.apply_latencies()

    def apply_latencies(self) -> None:
        lat = self.latencies
        self.deepgram.faults.first_byte_ms = lat.stt_final_ms
        for llm in (self.anthropic, self.openai):
            llm.faults.first_byte_ms = lat.llm_first_token_ms
            llm.faults.per_chunk_ms = lat.llm_per_token_ms
        self.elevenlabs.faults.first_byte_ms = lat.tts_first_chunk_ms
        self.elevenlabs.faults.per_chunk_ms = lat.tts_per_chunk_ms

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> str:
        self.url = await self.server.start(host, port)
        return self.url

    async def stop(self) -> None:
        await self.server.stop()

    def env(self) -> dict[str, str]:
        """Keys and base URLs that point `pipelines/cloud.yaml` (and Daily, Twilio) here."""
        http = self.url
        ws = http.replace("http://", "ws://", 1)
        return {
            **KEYS,
            "DEEPGRAM_BASE_URL": ws,
            "ANTHROPIC_BASE_URL": http,
            "OPENAI_BASE_URL": f"{http}/v1",
            "ELEVENLABS_BASE_URL": ws,
            "ELEVENLABS_VOICE_ID": VOICE_ID,
            "DAILY_API_URL": f"{http}/v1",
            "VOICEBOT_TWILIO_API_URL": http,
        }


@asynccontextmanager
async def running_fakes(
    latencies: Latencies | None = None,
    *,
    transcript: str | None = None,
    host: str = "127.0.0.1",
    port: int = 0,
) -> AsyncIterator[FakeSuite]:
    """All fakes served on one port for the length of the block."""
    suite = FakeSuite(latencies or Latencies(), transcript)
    await suite.start(host, port)
    try:
        yield suite
    finally:
        await suite.stop()
