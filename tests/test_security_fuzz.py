"""Property-based fuzzing of the two public call edges, on one running server.

One `voicebot serve` subprocess runs `pipelines/cloud.yaml` against the provider fakes
(tests/fakes; Deepgram answers with a canned transcript so no Whisper runs). While a healthy
Twilio call talks to it turn after turn, Hypothesis generates rounds of hostile input:

- Twilio Media Streams frames over `WS /twilio/stream`: text that is not JSON, binary frames,
  JSON of the wrong shape, unknown events, `media` before `start`, a wrong `streamSid`,
  base64 that is invalid or of odd length, empty and large payloads, floods of valid media,
  deep nesting, broken `start` objects, a few frames over 64 KiB. Each round opens one call
  with a valid `connected` + `start` and then goes bad (so the code after `start` is fuzzed
  too; one pipeline per round, closed when the round ends), plus short connections that go
  bad before `start`. A connection the server closes is replaced by a new one.
- SmallWebRTC offers to `POST /api/offer`: JSON that is not an offer, wrong types, garbage
  and SDP-like text, a real SDP offer with random mutations plus one fatal defect, oversized
  fields, bodies that are not JSON. Every answer must be a 4xx (or 503), within 5 s.

The rounds are sent twice (the same rounds: generation is derandomized, with no example
database, so every run sends the same input). Then: the server is up and ready; the healthy
call (in a process of its own) heard its greeting and every reply with no playback gap over
100 ms (bot/bench_load.py's measure); the server's RSS grew by at most RSS_GROWTH_LIMIT_MB
over the second pass; it logged the refused input; its log holds no traceback and none of
the fuzz's raw text.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import multiprocessing
import random
import re
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import websockets
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from bot.bench_load import CallRecord, Utterance, run_one_call
from tests.fakes.suite import FakeSuite
from tests.support.background import BackgroundLoop
from tests.support.instant_fakes import instant_fakes
from tests.support.servers import REPO, RunningServer, start_server

pytestmark = pytest.mark.slow

# Each Hypothesis example (a round) opens one started call, i.e. one pipeline, and closes it:
# a dozen long rounds rather than many short ones.
ROUNDS = 12
STARTED_SEGMENTS = (88, 96)  # segments of frames after `start` in a round's call
SEGMENT_FRAMES = (10, 16)  # frames in a segment (a flood segment sends 3-8 times as many)
PRESTART_SESSIONS = (16, 20)  # short connections per round that go bad before `start`
OFFERS = (84, 90)  # offer bodies per round
MIN_TWILIO_FRAMES = 10_000
MIN_OFFERS = 1_000
MAX_STARTED_CALLS = 40
MAX_FRAME_BYTES = 32 * 1024  # generated frames stay under this, except the oversized ones
OVERSIZED_BYTES = (80 * 1024, 128 * 1024)
OFFER_TIMEOUT_SECS = 5.0
GAP_MS = 100.0
RSS_GROWTH_LIMIT_MB = 30.0  # over the second pass of the fuzz
RSS_FIRST_PASS_LIMIT_MB = 70.0  # the first pass's one-off step (see the test)
MAX_TURNS = 30
TRANSCRIPT = "What color is the sky on a clear day?"

# An offer as aiortc's RTCPeerConnection.createOffer() wrote it on this machine (audio only,
# one host candidate on 127.0.0.2).
SDP_OFFER = "\r\n".join(
    [
        "v=0",
        "o=- 4005291225 4005291225 IN IP4 0.0.0.0",
        "s=-",
        "t=0 0",
        "a=group:BUNDLE 0",
        "a=msid-semantic:WMS *",
        "m=audio 54086 UDP/TLS/RTP/SAVPF 96 9 0 8",
        "c=IN IP4 127.0.0.2",
        "a=sendrecv",
        "a=extmap:1 urn:ietf:params:rtp-hdrext:sdes:mid",
        "a=extmap:2 urn:ietf:params:rtp-hdrext:ssrc-audio-level",
        "a=mid:0",
        "a=msid:b19f2ee9-e654-4644-bb3c-c0f3e73c09e8 0bf5cf8e-b436-40d2-abc5-bacaa6cbd572",
        "a=rtcp:9 IN IP4 0.0.0.0",
        "a=rtcp-mux",
        "a=ssrc:102283940 cname:74e26e31-49ad-4eef-ac88-48534b0b8c5d",
        "a=rtpmap:96 opus/48000/2",
        "a=rtpmap:9 G722/8000",
        "a=rtpmap:0 PCMU/8000",
        "a=rtpmap:8 PCMA/8000",
        "a=candidate:4001cb5a8cfccf96c7f813f5813aab59 1 udp 2130706431 127.0.0.2 54086 typ host",
        "a=end-of-candidates",
        "a=ice-ufrag:N1Fp",
        "a=ice-pwd:RdOlXeiuOrPMXQnskvhlIy",
        "a=fingerprint:sha-256 74:58:E9:6A:2A:06:99:BA:68:9C:0C:C7:C9:D4:D4:55:E9:BF:C7:6C:2A:"
        "B2:FF:B6:B6:64:FD:D9:0C:DE:9B:08",
        "a=setup:actpass",
        "",
    ]
)

# ---------------------------------------------------------------------------- Twilio frames

# Kinds of frame; `build_frames` turns (kind, size, seed) into the message(s) sent.
COMMON_KINDS = (
    "text",
    "bytes",
    "json_shape",
    "deep",
    "event_unknown",
    "truncated",
    "media_ok",
    "media_bad_b64",
    "media_odd",
    "media_empty",
    "media_big",
    "media_wrong_sid",
    "media_shapes",
    "dtmf",
    "mark",
    "stop",
    "connected",
)
STARTED_KINDS = (*COMMON_KINDS, "flood", "start_again")
PRESTART_KINDS = (*COMMON_KINDS, "start_bad", "oversized")

CHARS = (
    "abcxyz019 {}[]\":,\\/'%=+-_.\t\n\r\x00\x01\x7féß中文ü€\u200b\u2028\ufeff\U0001f600\U0010ffff"
)
JSON_VALUES = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=12),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4)
    ),
    max_leaves=8,
)


@dataclass(frozen=True)
class FrameSpec:
    """`count` frames of one kind (a segment of a connection's traffic)."""

    kind: str
    size: int
    seed: int
    count: int = 1
    value: Any = None  # a Hypothesis-drawn JSON value for the kinds that use one


SHAPED_KINDS = ("json_shape", "event_unknown")


def frame_specs(kinds: tuple[str, ...], counts: tuple[int, int]) -> st.SearchStrategy[FrameSpec]:
    """Segments: Hypothesis picks kind, size, seed and length; the seed fills in the bytes
    (a few draws per segment keep an example inside Hypothesis's data budget)."""

    def segment(kind: str) -> st.SearchStrategy[FrameSpec]:
        return st.builds(
            FrameSpec,
            kind=st.just(kind),
            size=st.integers(0, 4095),
            seed=st.integers(0, 2**16 - 1),
            count=st.integers(*counts),
            value=JSON_VALUES if kind in SHAPED_KINDS else st.none(),
        )

    return st.sampled_from(kinds).flatmap(segment)


@dataclass
class Sids:
    stream: str
    call: str
    account: str = "AC" + "0" * 32
    sequence: int = 0

    def next(self) -> str:
        self.sequence += 1
        return str(self.sequence)


def _size(frame: str | bytes) -> int:
    return len(frame.encode() if isinstance(frame, str) else frame)


def _random_text(rnd: random.Random, length: int) -> str:
    return "".join(rnd.choice(CHARS) for _ in range(length))


def _media(sids: Sids, payload: Any, stream_sid: Any = None, media: Any = None) -> str:
    seq = sids.next()
    body = {"track": "inbound", "chunk": seq, "timestamp": str(int(seq) * 20), "payload": payload}
    return json.dumps(
        {
            "event": "media",
            "sequenceNumber": seq,
            "media": body if media is None else media,
            "streamSid": sids.stream if stream_sid is None else stream_sid,
        }
    )


def _ulaw(rnd: random.Random, n: int) -> bytes:
    """μ-law audio: mostly digital silence, sometimes noise (which the VAD hears as speech)."""
    if rnd.random() < 0.2:
        return rnd.randbytes(n)
    return b"\xff" * n


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def connected_frame() -> str:
    return json.dumps({"event": "connected", "protocol": "Call", "version": "1.0.0"})


def start_frame(sids: Sids) -> str:
    return json.dumps(
        {
            "event": "start",
            "sequenceNumber": sids.next(),
            "start": {
                "streamSid": sids.stream,
                "accountSid": sids.account,
                "callSid": sids.call,
                "tracks": ["inbound"],
                "customParameters": {"CallSid": sids.call},
                "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
            },
            "streamSid": sids.stream,
        }
    )


def _bad_start(rnd: random.Random, sids: Sids) -> str:
    """A `start` that the handshake must refuse (never one it could accept)."""
    good = {
        "streamSid": sids.stream,
        "accountSid": sids.account,
        "callSid": sids.call,
        "mediaFormat": {"encoding": "audio/x-mulaw", "sampleRate": 8000, "channels": 1},
    }
    defect = rnd.randrange(12)
    start: Any = dict(good)
    message: dict[str, Any] = {"event": "start"}
    if defect == 0:
        start = rnd.choice([None, [], "start", 7, [good]])
    elif defect == 1:
        start.pop("callSid")
    elif defect == 2:
        start["callSid"] = rnd.choice([None, "", 5, [], {"a": 1}])
    elif defect == 3:
        start.pop("streamSid")
    elif defect == 4:
        start["streamSid"] = rnd.choice(["", 0, [], {}])
    elif defect == 5:
        start["mediaFormat"] = rnd.choice(["mulaw", 8000, [1, 2], True, ["audio/x-mulaw"]])
    elif defect == 6:
        rate = rnd.choice([None, "abc", [], {}, "8k", 16000, -1, 0, 44100, "", 1e400])
        start["mediaFormat"] = {"encoding": "audio/x-mulaw", "sampleRate": rate}
    elif defect == 7:
        encoding = rnd.choice(["audio/l16", "", "x", 1, [], {"a": 1}, "AUDIO/X-MULAW"])
        start["mediaFormat"] = {"encoding": encoding}
    elif defect == 8:
        start["mediaFormat"] = {"sampleRate": "NaN"}
    elif defect == 9:
        start["customParameters"] = rnd.choice([[], "x", 5])
        start["mediaFormat"] = {"sampleRate": 7999}
    elif defect == 10:
        start["callSid"] = "CA" + "x" * rnd.randrange(0, 2000)
        start["mediaFormat"] = {"encoding": "audio/x-alaw"}
    else:
        start["mediaFormat"] = {"sampleRate": "1" * rnd.randrange(1, 5000)}
    message["start"] = start
    if rnd.random() < 0.5:
        message["streamSid"] = rnd.choice([None, "", 0, False])  # nothing that repairs it
    return json.dumps(message)


def build_frames(spec: FrameSpec, sids: Sids) -> list[str | bytes]:
    """The messages a segment stands for; deterministic in the spec."""
    rnd = random.Random(spec.seed * 7919 + spec.size)
    frames: list[str | bytes] = []
    for i in range(spec.count):
        size = spec.size if i == 0 else rnd.randrange(4096)
        frames += _frames(spec.kind, size, spec.seed + i, spec.value, rnd, sids)
    return frames


def _frames(
    kind: str, size: int, seed: int, value: Any, rnd: random.Random, sids: Sids
) -> list[str | bytes]:
    if kind == "text":
        return [_random_text(rnd, size % 2048)]
    if kind == "bytes":
        return [rnd.randbytes(size)]
    if kind == "json_shape":
        if isinstance(value, dict) and rnd.random() < 0.5:
            value = {**value, "event": rnd.choice(["media", "start", "dtmf", "mark", "stop"])}
        return [json.dumps(value)]
    if kind == "deep":
        # Up to ~16k levels (3k for objects), past Python's recursion limit, under 32 KiB.
        if rnd.random() < 0.5:
            depth = 1 + size * 4
            return ["[" * depth + "]" * depth]
        depth = 1 + size * 3 // 4
        return ['{"event":' * depth + "1" + "}" * depth]
    if kind == "event_unknown":
        event = rnd.choice([value, _random_text(rnd, 12), "MEDIA", "media ", "", None])
        if event in ("connected", "start"):
            event = "started"
        return [json.dumps({"event": event, "streamSid": sids.stream, "x": value})]
    if kind == "truncated":
        whole = _media(sids, _b64(_ulaw(rnd, 160)))
        return [whole[: rnd.randrange(1, len(whole))]]
    if kind == "media_ok":
        return [_media(sids, _b64(_ulaw(rnd, 160)))]
    if kind == "media_bad_b64":
        payload = rnd.choice(
            ["%%% not base64 %%%", "====", "QUJD=RA==", "\u00e9\u00e9\u00e9\u00e9", " ", "A"]
        )
        return [_media(sids, payload + _random_text(rnd, size % 64))]
    if kind == "media_odd":
        data = _ulaw(rnd, 1 + 2 * (size % 500))  # an odd number of μ-law bytes
        encoded = _b64(data)
        if rnd.random() < 0.5:
            encoded = encoded.rstrip("=")[: max(1, len(encoded) - 1 - rnd.randrange(3))]
        return [_media(sids, encoded)]
    if kind == "media_empty":
        if rnd.random() < 0.5:
            return [_media(sids, "")]
        return [json.dumps({"event": "media", "streamSid": sids.stream, "media": {}})]
    if kind == "media_big":
        # Up to ~2.9 s of audio in one frame, still under MAX_FRAME_BYTES once encoded.
        return [_media(sids, _b64(_ulaw(rnd, 8000 + size * 3)))]
    if kind == "media_wrong_sid":
        other = rnd.choice(["MZ" + "f" * 32, "", 42, None, ["MZ"], sids.call])
        return [_media(sids, _b64(_ulaw(rnd, 160)), stream_sid=other)]
    if kind == "media_shapes":
        if rnd.random() < 0.5:
            media = rnd.choice(["oops", 7, None, [], [1, 2], True])
            return [_media(sids, None, media=media)]
        return [_media(sids, rnd.choice([7, None, [], {"a": "b"}, True, 1.5]))]
    if kind == "dtmf":
        digit = rnd.choice(["1", "#", "*", "Z", "", "12", 5, None, [], "\u0663", "A", "d" * 500])
        dtmf: Any = {"track": "inbound_track", "digit": digit}
        if rnd.random() < 0.2:
            dtmf = rnd.choice(["1", 1, [], None])
        return [json.dumps({"event": "dtmf", "streamSid": sids.stream, "dtmf": dtmf})]
    if kind == "mark":
        mark: Any = {"name": rnd.choice(["m1", "", 3, None, [], "x" * (size % 1000)])}
        if rnd.random() < 0.3:
            mark = rnd.choice(["name", 5, None, []])
        return [json.dumps({"event": "mark", "streamSid": sids.stream, "mark": mark})]
    if kind == "stop":
        stop: Any = {"accountSid": sids.account, "callSid": rnd.choice([sids.call, "CAother"])}
        if rnd.random() < 0.3:
            stop = rnd.choice([None, "stop", []])
        return [json.dumps({"event": "stop", "streamSid": sids.stream, "stop": stop})]
    if kind == "connected":
        return [json.dumps({"event": "connected", "protocol": rnd.choice(["Call", "", 1, None])})]
    if kind == "flood":
        return [_media(sids, _b64(_ulaw(rnd, 160))) for _ in range(3 + size % 6)]
    if kind == "start_again":
        again = Sids(stream=f"MZ{rnd.getrandbits(128):032x}", call=f"CA{rnd.getrandbits(128):032x}")
        return [start_frame(again)]
    if kind == "start_bad":
        return [_bad_start(rnd, sids)]
    if kind == "oversized":
        # A handful only (one seed in eight); the others are plain text.
        if seed % 8:
            return [_random_text(rnd, size % 2048)]
        return ["x" * rnd.randrange(*OVERSIZED_BYTES)]
    raise AssertionError(f"unknown frame kind {kind}")


# ---------------------------------------------------------------------------- offers

OFFER_KINDS = (
    "mutated",
    "json_value",
    "wrong_types",
    "garbage_sdp",
    "sdp_like",
    "mutated",
    "oversized",
    "not_json",
    "content_type",
    "deep_json",
    "pc_id",
    "empty",
)


@dataclass(frozen=True)
class OfferSpec:
    kind: str
    size: int
    seed: int
    value: Any = None


OFFER_SPECS = st.sampled_from(OFFER_KINDS).flatmap(
    lambda kind: st.builds(
        OfferSpec,
        kind=st.just(kind),
        size=st.integers(0, 4095),
        seed=st.integers(0, 2**16 - 1),
        value=JSON_VALUES if kind in ("json_value", "wrong_types", "mutated") else st.none(),
    )
)

SDP_JUNK_LINES = (
    "a=",
    "=",
    "x",
    "a=rtpmap:",
    "a=fmtp:96 minptime=10;useinbandfec=1",
    "c=IN IP6 ::1",
    "a=ssrc-group:FID 1 2",
    "b=AS:99999999999999999999",
    "a=extmap:99999 urn:x",
    "a=sctp-port:5000",
    "a=rtcp-fb:96 nack",
    "a=msid:- -",
    "k=clear:secret",
    "\x00\x01",
    "a=candidate:",
    "a=group:BUNDLE 0 1 2 3",
)


def _mutate_sdp(rnd: random.Random, size: int) -> str:
    """The real offer with random mutations, then one defect aiortc must refuse."""
    lines = SDP_OFFER.split("\r\n")
    for _ in range(1 + size % 6):
        op = rnd.randrange(6)
        i = rnd.randrange(len(lines))
        if op == 0 and len(lines) > 8:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[i])
        elif op == 2:
            j = rnd.randrange(len(lines))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == 3 and lines[i]:
            k = rnd.randrange(len(lines[i]))
            lines[i] = lines[i][:k] + _random_text(rnd, 1 + rnd.randrange(4)) + lines[i][k + 1 :]
        elif op == 4:
            lines.insert(i, rnd.choice(SDP_JUNK_LINES))
        else:
            lines[i] = lines[i].upper() if rnd.random() < 0.5 else lines[i] + " " * 3
    # Keep the audio section aiortc will parse, then break it for sure.
    if not any(line.startswith("m=audio") for line in lines):
        lines.insert(6, "m=audio 9 UDP/TLS/RTP/SAVPF 96 9 0 8")
    poison = rnd.randrange(5)
    if poison == 0:
        lines = [line for line in lines if not line.lower().startswith("a=ice-ufrag")]
    elif poison == 1:
        lines = [line for line in lines if not line.lower().startswith("a=ice-pwd")]
    elif poison == 2:
        lines.append("a=candidate:1 1 udp notanumber 127.0.0.1 9 typ host")
    elif poison == 3:
        lines.append("a=rtpmap:x opus/48000/2")
    else:
        lines.append(f"a=setup:{rnd.choice(['bogus', 'x', 'passive-ish'])}")
    separator = rnd.choice(["\r\n", "\n"])
    return separator.join(lines)


WRONG_VALUES: dict[str, list[Any]] = {
    "sdp": [7, [], {"a": 1}, True, None, "", 1.5],
    "type": ["answer", "pranswer", "OFFER", "", 1, None, []],
    "pc_id": [12345, [], {"a": 1}, True, 1.5],
    "restart_pc": ["maybe", [], {"a": 1}, 2, 1.5],
    "request_data": [[1], "x", 7, True],
}


def build_offer(spec: OfferSpec) -> tuple[bytes, str]:
    """One request body and its content type; deterministic in the spec."""
    rnd = random.Random(spec.seed * 104729 + spec.size)
    kind, size = spec.kind, spec.size

    def as_json(value: Any) -> tuple[bytes, str]:
        return json.dumps(value).encode(), "application/json"

    if kind == "json_value":
        value = spec.value
        if isinstance(value, dict):
            value = {**value, "type": rnd.choice(["offer", "answer", None])}
        return as_json(value)
    if kind == "wrong_types":
        # A defective SDP too: should a wrong type slip through validation, aiortc refuses.
        body: dict[str, Any] = {"sdp": _mutate_sdp(rnd, size), "type": "offer"}
        field_name = rnd.choice(sorted(WRONG_VALUES))
        body[field_name] = rnd.choice(WRONG_VALUES[field_name])
        return as_json(body)
    if kind == "garbage_sdp":
        return as_json({"sdp": "x" + _random_text(rnd, size % 3000), "type": "offer"})
    if kind == "sdp_like":
        junk = "\r\n".join(_random_text(rnd, rnd.randrange(40)) for _ in range(size % 30))
        sdp = f"v=0\r\n{junk}\r\nm=audio {rnd.randrange(70000)} {_random_text(rnd, 8)}\r\n{junk}"
        return as_json({"sdp": sdp, "type": "offer"})
    if kind == "mutated":
        body = {"sdp": _mutate_sdp(rnd, size), "type": "offer"}
        if rnd.random() < 0.3:
            body["request_data"] = spec.value if isinstance(spec.value, dict) else {"k": 1}
        if rnd.random() < 0.2:
            body["pc_id"] = f"SmallWebRTCConnection-{rnd.getrandbits(128):032x}"
        return as_json(body)
    if kind == "oversized":
        variant = rnd.randrange(4)
        if variant == 0:
            return as_json({"sdp": SDP_OFFER + "a=x\r\n" * 14000, "type": "offer"})  # > 64 KiB
        if variant == 1:
            sdp = _mutate_sdp(rnd, size)
            return as_json({"sdp": sdp, "type": "offer", "pc_id": "p" * (129 + size)})
        if variant == 2:
            data = {f"k{i}": "v" * 100 for i in range(2000)}  # ~200 KB of request_data
            return as_json({"sdp": _mutate_sdp(rnd, size), "type": "offer", "request_data": data})
        return as_json({"sdp": "v=0 m=audio " + "y" * (70_000 + size), "type": "offer"})
    if kind == "not_json":
        return rnd.randbytes(1 + size % 2000), "application/json"
    if kind == "content_type":
        content_type = rnd.choice(
            ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "", "xml"]
        )
        return json.dumps({"sdp": _mutate_sdp(rnd, size), "type": "offer"}).encode(), content_type
    if kind == "deep_json":
        depth = 1000 + size * 10
        if rnd.random() < 0.5:
            return ("[" * depth + "]" * depth).encode(), "application/json"
        nested = '{"a":' * depth + "1" + "}" * depth
        return f'{{"sdp": "v=0", "type": "offer", "request_data": {nested}}}'.encode(), (
            "application/json"
        )
    if kind == "pc_id":
        return as_json(
            {
                "sdp": _mutate_sdp(rnd, size),
                "type": "offer",
                "pc_id": rnd.choice(["SmallWebRTCConnection-" + "0" * 32, "x", "../../etc"]),
                "restart_pc": rnd.choice([True, False, None]),
            }
        )
    if kind == "empty":
        return rnd.choice([b"", b"{}", b"null", b'{"type": "offer"}', b'{"sdp": ""}']), (
            "application/json"
        )
    raise AssertionError(f"unknown offer kind {kind}")


# ---------------------------------------------------------------------------- sending


@dataclass
class Tally:
    frames_sent: int = 0
    started_calls: int = 0
    prestart_sessions: int = 0
    refused_by_server: int = 0  # pre-start connections the server closed with 1008
    closed_after_start: list[str] = field(default_factory=list)  # calls the server closed
    offers_sent: int = 0
    offer_statuses: dict[int, int] = field(default_factory=dict)
    offers_refused_by_aiortc: int = 0  # 400 "could not answer the offer"
    problems: list[str] = field(default_factory=list)


@dataclass
class Round:
    started: list[FrameSpec]
    prestart: list[tuple[int, list[FrameSpec]]]
    offers: list[OfferSpec]


ROUNDS_STRATEGY = st.builds(
    Round,
    started=st.lists(
        frame_specs(STARTED_KINDS, SEGMENT_FRAMES),
        min_size=STARTED_SEGMENTS[0],
        max_size=STARTED_SEGMENTS[1],
    ),
    prestart=st.lists(
        st.tuples(
            st.integers(0, 2),
            st.lists(frame_specs(PRESTART_KINDS, (1, 1)), min_size=1, max_size=3),
        ),
        min_size=PRESTART_SESSIONS[0],
        max_size=PRESTART_SESSIONS[1],
    ),
    offers=st.lists(OFFER_SPECS, min_size=OFFERS[0], max_size=OFFERS[1]),
)


class Fuzzer:
    """Sends each round to the server from its own event loop (a BackgroundLoop)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.ws_url = url.replace("http://", "ws://") + "/twilio/stream"
        self.tally = Tally()
        self._round = 0
        self._session: aiohttp.ClientSession | None = None

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    async def run_round(self, round_: Round) -> list[str]:
        """Send one round; returns the problems it found (hang, 5xx, refused connection)."""
        self._round += 1
        before = len(self.tally.problems)
        await asyncio.gather(
            self._started_call(round_.started),
            self._prestart_sessions(round_.prestart),
            self._offers(round_.offers),
        )
        return self.tally.problems[before:]

    def _sids(self, tag: str) -> Sids:
        n = self._round
        return Sids(stream=f"MZfuzz{tag}{n:026d}", call=f"CAfuzz{tag}{n:026d}")

    async def _connect(self) -> websockets.ClientConnection:
        return await websockets.connect(
            self.ws_url,
            open_timeout=10,
            close_timeout=5,
            ping_interval=None,
            compression=None,
            max_size=None,
            proxy=None,
        )

    async def _started_call(self, specs: list[FrameSpec]) -> None:
        """`connected` + `start`, then the round's frames; a closed call is started again."""
        frames = [f for spec in specs for f in build_frames(spec, self._sids("S"))]
        assert all(_size(f) <= MAX_FRAME_BYTES for f in frames)
        index = 0
        attempt = 0
        while index < len(frames):
            attempt += 1
            sids = self._sids(f"S{attempt}")
            try:
                ws = await self._connect()
            except Exception as exc:
                self.tally.problems.append(f"started call: connection failed: {exc!r}")
                return
            self.tally.started_calls += 1
            try:
                await ws.send(connected_frame())
                await ws.send(start_frame(sids))
                self.tally.frames_sent += 2
                while index < len(frames):
                    await asyncio.wait_for(ws.send(frames[index]), 10)
                    self.tally.frames_sent += 1
                    index += 1
                await ws.send(json.dumps({"event": "stop", "streamSid": sids.stream}))
                self.tally.frames_sent += 1
            except websockets.ConnectionClosed:
                self.tally.closed_after_start.append(f"{sids.call}: {ws.close_code}")
                index += 1  # skip the frame the server closed on
            except TimeoutError:
                self.tally.problems.append(f"{sids.call}: sending hung at frame {index}")
                return
            finally:
                await self._close(ws, sids.call)

    async def _close(self, ws: websockets.ClientConnection, label: str) -> None:
        """Close from our side; the server must answer the close handshake promptly."""
        t0 = time.monotonic()
        await ws.close()
        if time.monotonic() - t0 > 4.0:
            self.tally.problems.append(f"{label}: no answer to the close handshake")

    async def _prestart_sessions(self, sessions: list[tuple[int, list[FrameSpec]]]) -> None:
        for number, (connected, specs) in enumerate(sessions):
            sids = self._sids(f"P{number}")
            frames: list[str | bytes] = [connected_frame()] * connected
            frames += [f for spec in specs for f in build_frames(spec, sids)]
            try:
                ws = await self._connect()
            except Exception as exc:
                self.tally.problems.append(f"pre-start connection failed: {exc!r}")
                continue
            self.tally.prestart_sessions += 1
            try:
                for frame in frames:
                    await ws.send(frame)
                    self.tally.frames_sent += 1
                # Each of these sessions ends in a frame the handshake refuses (or only
                # `connected`s): the server must close the socket promptly.
                if any(spec.kind != "connected" for spec in specs):
                    await asyncio.wait_for(ws.recv(), 10)
                    self.tally.problems.append(f"{sids.call}: server answered a refused stream")
            except websockets.ConnectionClosed:
                if ws.close_code == 1008:
                    self.tally.refused_by_server += 1
            except TimeoutError:
                self.tally.problems.append(f"{sids.call}: server kept a refused stream open")
            finally:
                await self._close(ws, sids.call)

    async def _offers(self, specs: list[OfferSpec]) -> None:
        if self._session is None:
            self._session = aiohttp.ClientSession()
        timeout = aiohttp.ClientTimeout(total=OFFER_TIMEOUT_SECS)
        for spec in specs:
            body, content_type = build_offer(spec)
            headers = {"Content-Type": content_type} if content_type else {}
            self.tally.offers_sent += 1
            try:
                async with self._session.post(
                    self.url + "/api/offer", data=body, headers=headers, timeout=timeout
                ) as response:
                    status = response.status
                    text = await response.text()
            except TimeoutError:
                self.tally.problems.append(f"offer hung: {spec} {body[:300]!r}")
                continue
            self.tally.offer_statuses[status] = self.tally.offer_statuses.get(status, 0) + 1
            if not (400 <= status < 500 or status == 503):
                self.tally.problems.append(f"offer answered {status} {text[:200]}: {body[:300]!r}")
            if status == 400 and "could not answer the offer" in text:
                self.tally.offers_refused_by_aiortc += 1


# ---------------------------------------------------------------------------- the healthy call


async def healthy_call(url: str, utterance: Utterance, warmed: Any, fuzz_done: Any) -> CallRecord:
    """bench_load's call, with turns until the fuzzing is over: greeting, then question and
    reply, again and again; gaps over GAP_MS inside the greeting and each reply recorded.
    `warmed` is set after the first reply: every model the server runs has run once."""

    def reply_heard() -> bool:
        warmed.set()
        return fuzz_done.is_set()

    try:
        return await run_one_call(url, utterance, MAX_TURNS, GAP_MS, after_reply=reply_heard)
    finally:
        warmed.set()


def healthy_call_process(url: str, wav: str, warmed: Any, fuzz_done: Any, out: Any) -> None:
    """The healthy call in a process of its own: in the test's process, building and sending
    the fuzz holds the GIL for 100 ms and more now and then, and the caller would stamp the
    bot's audio late (a gap that the server did not make)."""
    record = asyncio.run(healthy_call(url, Utterance.from_wav(Path(wav)), warmed, fuzz_done))
    out.put(record)


# ---------------------------------------------------------------------------- the test


def vm_rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise AssertionError(f"no VmRSS for {pid}")


def wait_for_calls(url: str, at_most: int, timeout: float = 20.0) -> None:
    """Until the server runs at most `at_most` calls (the fuzzed ones torn down), then 1 s."""
    deadline = time.monotonic() + timeout
    while get_status(url + "/readyz")[1].get("calls", 0) > at_most:
        assert time.monotonic() < deadline, f"fuzzed calls still running {timeout:.0f} s later"
        time.sleep(0.2)
    time.sleep(1.0)


def get_status(url: str) -> tuple[int, dict[str, Any]]:
    try:
        with urllib.request.urlopen(url, timeout=5) as response:
            return response.status, json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, {}


@pytest.fixture(scope="module")
def fakes() -> Iterator[FakeSuite]:
    with instant_fakes(
        TRANSCRIPT, warm=["Hello! How can I help you today?", "The sky is blue."]
    ) as (_, suite):
        yield suite


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory, fakes: FakeSuite) -> Iterator[RunningServer]:
    log = tmp_path_factory.mktemp("fuzz") / "server.log"
    running = start_server(REPO / "pipelines/cloud.yaml", log, env=fakes.env())
    yield running
    running.stop()


def test_fuzzed_twilio_frames_and_offers_beside_a_healthy_call(
    server: RunningServer, speech: dict[str, Path]
) -> None:
    pid = server.process.pid
    fuzz_loop = BackgroundLoop()
    fuzzer = Fuzzer(server.url)
    spawn = multiprocessing.get_context("spawn")
    warmed, fuzz_done, out = spawn.Event(), spawn.Event(), spawn.Queue()
    caller = spawn.Process(
        target=healthy_call_process,
        args=(server.url, str(speech["sky"]), warmed, fuzz_done, out),
        daemon=True,
    )
    caller.start()
    try:
        assert warmed.wait(90), "the healthy call's first turn did not end"
        fuzz_started = time.monotonic()
        rss_start = vm_rss_mb(pid)

        @settings(
            max_examples=ROUNDS,
            deadline=None,
            database=None,
            derandomize=True,
            phases=[Phase.generate],  # no shrinking: each example opens a call on the server
            suppress_health_check=list(HealthCheck),
            print_blob=False,
        )
        @given(round_=ROUNDS_STRATEGY)
        def fuzz_round(round_: Round) -> None:
            problems = fuzz_loop.run(fuzzer.run_round(round_), timeout=120)
            assert not problems, problems
            status, _ = get_status(server.url + "/healthz")
            assert status == 200, f"/healthz answered {status} after a round"

        # Two passes over the same (derandomized) rounds. The first raises the server's memory
        # high-water mark once, ~+35-45 MB here: it grows with each new size of media payload
        # (most likely the voice-activity model's batch shapes: ONNX Runtime keeps memory per
        # input shape), and sending the same rounds again adds ~0-3 MB. So the second pass
        # measures what the fuzzing leaves behind: a leak per frame, offer or call shows there.
        fuzz_round()
        first_pass = Tally(frames_sent=fuzzer.tally.frames_sent)
        first_pass.offers_sent = fuzzer.tally.offers_sent
        wait_for_calls(server.url, at_most=1)  # the healthy call goes on
        rss_before = vm_rss_mb(pid)
        fuzz_round()
        fuzz_ended = time.monotonic()
        fuzz_done.set()
        record: CallRecord = out.get(timeout=90)
    finally:
        fuzz_done.set()
        with contextlib.suppress(Exception):
            fuzz_loop.run(fuzzer.close())
        fuzz_loop.close()
        caller.join(timeout=30)
        if caller.is_alive():
            caller.kill()
    tally = fuzzer.tally
    fuzz_secs = fuzz_ended - fuzz_started
    print(
        f"fuzz: {fuzz_secs:.1f} s, {tally.frames_sent} Twilio frames "
        f"({tally.started_calls} started calls, {tally.prestart_sessions} pre-start sessions, "
        f"{tally.refused_by_server} refused), {tally.offers_sent} offers {tally.offer_statuses}; "
        f"healthy call: {len(record.first_reply_ms)} replies, gaps > {GAP_MS:.0f} ms "
        f"{record.gaps_ms}, error {record.error}"
    )

    # Everything was sent (each pass), and the server bounded what it had to build.
    assert first_pass.frames_sent >= MIN_TWILIO_FRAMES, first_pass
    assert first_pass.offers_sent >= MIN_OFFERS, first_pass
    assert tally.frames_sent >= 2 * first_pass.frames_sent - 100, tally
    assert tally.started_calls <= MAX_STARTED_CALLS, tally
    assert not tally.closed_after_start, f"calls closed on bad input: {tally.closed_after_start}"

    # The server is up and ready.
    assert get_status(server.url + "/healthz")[0] == 200
    assert get_status(server.url + "/readyz")[0] == 200

    # The healthy call went on throughout: greeted, answered at every turn, no audio gap.
    assert record.error is None, record
    assert record.greeting_ms is not None
    assert record.first_reply_ms, record
    assert any(fuzz_started <= said < fuzz_ended for said, _ in record.first_reply_ms), (
        "no turn of the healthy call overlapped the fuzzing"
    )
    assert not record.gaps_ms, f"playback gaps over {GAP_MS} ms: {record.gaps_ms}"

    # Memory: the fuzzed calls' pipelines are gone and nothing piled up.
    wait_for_calls(server.url, at_most=0)
    rss_after = vm_rss_mb(pid)
    print(
        f"server RSS: {rss_start:.1f} MB at the start, {rss_before:.1f} MB after the first "
        f"pass, {rss_after:.1f} MB after the second"
    )
    assert rss_after - rss_before <= RSS_GROWTH_LIMIT_MB, (rss_start, rss_before, rss_after)
    assert rss_after - rss_start <= RSS_FIRST_PASS_LIMIT_MB + RSS_GROWTH_LIMIT_MB, (
        rss_start,
        rss_before,
        rss_after,
    )

    # The bad input was logged as refused, and nothing escaped as an unhandled error.
    log = server.log()
    refused = log.count("Twilio stream refused:")
    dropped = log.count("dropped malformed Twilio frame")
    offers_refused = log.count("WebRTC offer refused:")
    print(f"log: {refused} refused streams, {dropped} dropped-frame lines, {offers_refused} offers")
    assert refused >= tally.refused_by_server > 0
    assert dropped >= tally.started_calls  # at least the first bad frame of every fuzzed call
    assert offers_refused >= tally.offers_refused_by_aiortc > 0
    for marker in ("Traceback", "Exception in ASGI application", "Task exception was never"):
        assert marker not in log, _around(log, marker)
    assert not re.search(r" CRITICAL ", log), _around(log, "CRITICAL")
    # And none of the fuzz's text was copied into the log (Pipecat's serializer logs frames
    # that are not JSON in full; transports/twilio.py keeps them from reaching it).
    assert "Failed to parse JSON message" not in log, _around(log, "Failed to parse JSON")


def _around(log: str, marker: str) -> str:
    at = log.find(marker)
    return log[max(0, at - 1500) : at + 3000]
