"""TURN REST credentials (bot/turn.py): the published coturn rule, settings, and a real coturn.

The coturn tests run Debian's `turnserver` on loopback (`make test` installs it through
`deps-debian`); a missing turnserver fails them. They prove that coturn, configured with
`--use-auth-secret --static-auth-secret`, accepts what `credentials()` mints and refuses a wrong
password or an expired username, that the server's peer connections (WebRTCEdge with `turn`)
allocate a relay with user "bot", and that a real call whose caller may only use relay
candidates connects through coturn and hears the greeting.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import functools
import hashlib
import hmac
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from aioice import stun
from aioice.turn import create_turn_endpoint
from aiortc import (
    RTCConfiguration,
    RTCIceServer,
    RTCIceTransportPolicy,
    RTCPeerConnection,
    RTCSessionDescription,
)
from pipecat.transports.smallwebrtc.request_handler import SmallWebRTCRequest

import bot.caller.webrtc as caller_module
from bot.caller.webrtc import WebRTCCaller
from bot.settings import ServerSettings, SettingsError
from bot.turn import TurnConfig, TurnConfigError, check_turn_url, credentials, ice_servers
from tests.support.loopback import ensure_loopback_candidate_address
from tests.support.servers import RunningServer
from transports.webrtc import WebRTCEdge
from transports.webrtc_turn import TurnRequestHandler

SECRET = "s3cret-for-the-turn-tests-0123456789"
REALM = "voicebot.test"


# ------------------------------------------------------------------ the credential rule


def coturn_password(secret: str, username: str) -> str:
    """coturn's TURN REST API rule, written out from its documentation (turnserver(1),
    --use-auth-secret): password = base64(HMAC-SHA1(static-auth-secret, "expiry:user"))."""
    mac = hmac.new(secret.encode("utf-8"), username.encode("utf-8"), hashlib.sha1)
    return base64.b64encode(mac.digest()).decode("ascii")


def test_credentials_follow_the_coturn_rest_rule() -> None:
    config = TurnConfig(urls=("turn:turn.example.com:3478",), secret=SECRET, ttl_secs=600)
    minted = credentials(config, "alice", now=1_700_000_000.7)
    assert minted["urls"] == ["turn:turn.example.com:3478"]
    assert minted["username"] == "1700000600:alice"
    assert minted["credential"] == coturn_password(SECRET, "1700000600:alice")
    # A known vector, so a change to both sides of the rule would still be caught.
    assert (
        coturn_password("secret", "1:u")
        == base64.b64encode(hmac.new(b"secret", b"1:u", "sha1").digest()).decode()
    )
    assert minted["credential"] != credentials(config, "bob", now=1_700_000_000)["credential"]


def test_expiry_is_now_plus_ttl() -> None:
    config = TurnConfig(urls=("turn:127.0.0.1",), secret=SECRET, ttl_secs=3600)
    before = int(time.time())
    expiry = int(credentials(config, "u")["username"].split(":")[0])
    assert before + 3600 <= expiry <= int(time.time()) + 3600


def test_ice_servers_carry_the_same_credentials() -> None:
    config = TurnConfig(urls=("turn:127.0.0.1:3478?transport=udp",), secret=SECRET)
    (server,) = ice_servers(config, "bot", now=100)
    assert isinstance(server, RTCIceServer)
    assert server.urls == ["turn:127.0.0.1:3478?transport=udp"]
    assert server.username == "3700:bot"
    assert server.credential == coturn_password(SECRET, "3700:bot")


@pytest.mark.parametrize(
    "url",
    [
        "turn:turn.example.com",
        "turn:turn.example.com:3478",
        "turn:10.0.0.1:3478?transport=udp",
        "turn:turn.example.com?transport=tcp",
        "turns:turn.example.com:5349?transport=tcp",
    ],
)
def test_valid_turn_urls(url: str) -> None:
    assert check_turn_url(url) == url


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("stun:turn.example.com:3478", "scheme must be turn: or turns:"),
        ("https://turn.example.com", "scheme must be turn: or turns:"),
        ("turn://turn.example.com:3478", "no '//'"),
        ("turn:turn.example.com:99999", "outside 1-65535"),
        ("turn:turn.example.com:3478?transport=sctp", "transport must be udp or tcp"),
        ("turns:turn.example.com?transport=udp", "transport is tcp"),
        ("turn:[::1]:3478", "IPv6"),
        ("turn:", "is not turn[s]:HOST"),
        ("turn:bad_host!:3478", "not a valid host name"),
        ("turn:-bad-.example.com", "not a valid host name"),
        ("turn:user@turn.example.com", "is not turn[s]:HOST"),
    ],
)
def test_invalid_turn_urls_say_why(url: str, why: str) -> None:
    with pytest.raises(TurnConfigError, match=re.escape(why)):
        check_turn_url(url)


def test_user_ids_cannot_forge_the_expiry() -> None:
    config = TurnConfig(urls=("turn:127.0.0.1",), secret=SECRET)
    with pytest.raises(ValueError, match="no ':'"):
        credentials(config, "9999999999:mallory")
    with pytest.raises(ValueError, match="1-128 characters"):
        credentials(config, "")


# ------------------------------------------------------------------ settings


def turn_env(**extra: str) -> dict[str, str]:
    return {
        "VOICEBOT_TURN_URLS": "turn:turn.example.com:3478?transport=udp, turns:turn.example.com",
        "VOICEBOT_TURN_SECRET": SECRET,
        **extra,
    }


def test_settings_read_turn() -> None:
    settings = ServerSettings.from_env(turn_env(VOICEBOT_TURN_TTL_SECONDS="900"))
    assert settings.turn == TurnConfig(
        urls=("turn:turn.example.com:3478?transport=udp", "turns:turn.example.com"),
        secret=SECRET,
        ttl_secs=900,
    )
    assert ServerSettings.from_env(turn_env()).turn.ttl_secs == 3600
    assert ServerSettings.from_env({}).turn is None


def test_the_secret_never_shows_in_repr_or_str() -> None:
    settings = ServerSettings.from_env(turn_env())
    for text in (repr(settings), str(settings), repr(settings.turn), str(settings.turn)):
        assert SECRET not in text
        assert "turn.example.com" in text  # the rest is still there


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"VOICEBOT_TURN_URLS": "turn:turn.example.com"},
            "VOICEBOT_TURN_URLS is set but VOICEBOT_TURN_SECRET is not",
        ),
        ({"VOICEBOT_TURN_SECRET": SECRET}, "VOICEBOT_TURN_SECRET is set but VOICEBOT_TURN_URLS"),
        (turn_env(VOICEBOT_TURN_SECRET="short-secret"), "at least 16 characters (got 12)"),
        (turn_env(VOICEBOT_TURN_URLS="stun:x.example.com"), "VOICEBOT_TURN_URLS: 'stun:"),
        (turn_env(VOICEBOT_TURN_URLS="turn:ok.example.com,turn:bad host"), "'turn:bad host'"),
        (turn_env(VOICEBOT_TURN_TTL_SECONDS="1h"), "VOICEBOT_TURN_TTL_SECONDS must be a whole"),
        (turn_env(VOICEBOT_TURN_TTL_SECONDS="10"), "VOICEBOT_TURN_TTL_SECONDS: the credential"),
    ],
)
def test_bad_turn_settings_are_refused(env: dict[str, str], message: str) -> None:
    with pytest.raises(SettingsError, match=re.escape(message)) as refused:
        ServerSettings.from_env(env)
    assert SECRET not in str(refused.value)


def test_a_short_secret_is_not_quoted() -> None:
    with pytest.raises(SettingsError) as refused:
        ServerSettings.from_env(turn_env(VOICEBOT_TURN_SECRET="hunter2-hunter"))
    assert "hunter2" not in str(refused.value)
    assert "VOICEBOT_TURN_SECRET" in str(refused.value)


# ------------------------------------------------------------------ the server's handler


def test_the_edge_mints_fresh_bot_credentials_per_connection() -> None:
    config = TurnConfig(urls=("turn:127.0.0.1:3478",), secret=SECRET, ttl_secs=120)
    edge = WebRTCEdge(None, None, turn=config)  # type: ignore[arg-type]
    handler = edge._handler
    assert isinstance(handler, TurnRequestHandler)
    (server,) = handler._ice_servers
    assert server.username.endswith(":bot")
    assert server.credential == coturn_password(SECRET, server.username)
    assert not isinstance(WebRTCEdge(None, None)._handler, TurnRequestHandler)  # type: ignore[arg-type]


# ------------------------------------------------------------------ a real coturn


@dataclass
class Coturn:
    host: str
    port: int
    process: subprocess.Popen[bytes]
    log_path: Path

    @property
    def config(self) -> TurnConfig:
        return TurnConfig(urls=(f"turn:{self.host}:{self.port}",), secret=SECRET, ttl_secs=600)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for_log(self, pattern: str, timeout: float = 5.0) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = re.search(pattern, self.log())
            if found:
                return found.group(0)
            time.sleep(0.05)
        raise AssertionError(f"coturn's log has no {pattern!r}:\n{self.log()[-4000:]}")


def free_udp_and_tcp_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as udp:
            udp.bind(("127.0.0.1", 0))
            port = udp.getsockname()[1]
            with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as tcp:
                try:
                    tcp.bind(("127.0.0.1", port))
                except OSError:
                    continue
                return int(port)
    raise RuntimeError("no port free for both UDP and TCP on 127.0.0.1")


def turnserver_binary() -> str:
    found = shutil.which("turnserver") or shutil.which("turnserver", path="/usr/bin:/usr/sbin")
    if found is None:
        pytest.fail(
            "turnserver (Debian package coturn) is not installed: `make deps-debian` installs it "
            "(apt-get install -y coturn); the TURN tests need a real coturn"
        )
    return found


@pytest.fixture(scope="module")
def coturn(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Coturn]:
    binary = turnserver_binary()
    work = tmp_path_factory.mktemp("coturn")
    (work / "turnserver.conf").write_text("")  # not /etc/turnserver.conf
    port = free_udp_and_tcp_port()
    log_path = work / "turnserver.log"
    command = [
        binary,
        "-c",
        str(work / "turnserver.conf"),
        "--listening-ip=127.0.0.1",
        "--relay-ip=127.0.0.1",
        f"--listening-port={port}",
        "--use-auth-secret",
        f"--static-auth-secret={SECRET}",
        f"--realm={REALM}",
        "--no-tls",
        "--no-dtls",
        "--no-cli",
        "--allow-loopback-peers",
        "--log-file=stdout",
        "--simple-log",
        "--verbose",
        f"--pidfile={work / 'turnserver.pid'}",
        f"--db={work / 'turndb'}",
    ]
    with log_path.open("wb") as log_file:
        process = subprocess.Popen(command, stdout=log_file, stderr=subprocess.STDOUT)
    server = Coturn("127.0.0.1", port, process, log_path)
    try:
        deadline = time.monotonic() + 10
        while True:
            if process.poll() is not None:
                pytest.fail(f"turnserver exited with {process.returncode}:\n{server.log()}")
            with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
                break
            if time.monotonic() > deadline:
                pytest.fail(f"turnserver is not listening on {port} after 10 s:\n{server.log()}")
            time.sleep(0.05)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=5)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=5)


async def allocate(server: Coturn, username: str, password: str) -> tuple[str, int]:
    """A TURN allocation over UDP with aioice; returns the relayed address."""
    transport, _ = await asyncio.wait_for(
        create_turn_endpoint(
            asyncio.DatagramProtocol, (server.host, server.port), username, password, lifetime=60
        ),
        10,
    )
    try:
        return transport.get_extra_info("sockname")
    finally:
        transport.close()


async def refused_with(server: Coturn, username: str, password: str) -> int:
    with pytest.raises(stun.TransactionFailed) as refused:
        await allocate(server, username, password)
    return refused.value.response.attributes["ERROR-CODE"][0]


async def test_coturn_accepts_minted_credentials(coturn: Coturn) -> None:
    minted = credentials(coturn.config, "alloc-ok")
    relayed = await allocate(coturn, minted["username"], minted["credential"])
    assert relayed[0] == "127.0.0.1" and relayed[1] > 0, relayed
    name = re.escape(minted["username"])
    coturn.wait_for_log(rf"user <{name}>: incoming packet ALLOCATE processed, success")


async def test_coturn_refuses_a_wrong_password(coturn: Coturn) -> None:
    minted = credentials(coturn.config, "alloc-wrong")
    wrong = coturn_password("another-secret-0123456789", minted["username"])
    assert await refused_with(coturn, minted["username"], wrong) in (401, 438)


async def test_coturn_refuses_an_expired_username(coturn: Coturn) -> None:
    past = credentials(coturn.config, "alloc-old", now=time.time() - 2 * coturn.config.ttl_secs)
    assert int(past["username"].split(":")[0]) < time.time()
    # The password is right for that username: only the expiry is wrong.
    assert past["credential"] == coturn_password(SECRET, past["username"])
    assert await refused_with(coturn, past["username"], past["credential"]) in (401, 438)


# ------------------------------------------------------------------ WebRTC through coturn


@pytest.fixture(scope="module")
def loopback_candidate_address() -> None:
    """aiortc skips 127.0.0.1: the host candidates need 127.0.0.2 on lo."""
    ensure_loopback_candidate_address()


def relay_only_config(servers: list[RTCIceServer]) -> RTCConfiguration:
    return RTCConfiguration(iceServers=servers, iceTransportPolicy=RTCIceTransportPolicy.RELAY)


def candidate_types(sdp: str) -> list[str]:
    return re.findall(r"^a=candidate:.* typ (\w+)", sdp, flags=re.MULTILINE)


async def test_server_peer_connections_allocate_on_coturn_as_bot(
    coturn: Coturn, loopback_candidate_address: None
) -> None:
    """The handler WebRTCEdge builds with `turn`: its peer connection gathers a relay
    candidate on coturn with freshly minted "<expiry>:bot" credentials, and a caller limited
    to relay candidates connects to it."""
    handler = TurnRequestHandler(coturn.config)
    client = RTCPeerConnection(relay_only_config(ice_servers(coturn.config, "relay-client")))
    try:
        client.addTransceiver("audio", direction="sendrecv")
        await client.setLocalDescription(await client.createOffer())
        offer = client.localDescription
        assert candidate_types(offer.sdp) and set(candidate_types(offer.sdp)) == {"relay"}

        async def started(_connection: object) -> None:
            return None

        before = int(time.time())
        answer = await handler.handle_web_request(
            SmallWebRTCRequest(sdp=offer.sdp, type=offer.type), started
        )
        assert answer is not None
        assert "relay" in candidate_types(answer["sdp"]), answer["sdp"]
        (bot_server,) = handler._ice_servers
        expiry = int(bot_server.username.removesuffix(":bot"))
        assert before + 600 <= expiry <= time.time() + 600
        name = re.escape(bot_server.username)
        coturn.wait_for_log(rf"user <{name}>: incoming packet ALLOCATE processed, success")

        connected = asyncio.Event()
        client.on(
            "connectionstatechange",
            lambda: connected.set() if client.connectionState == "connected" else None,
        )
        await client.setRemoteDescription(RTCSessionDescription(answer["sdp"], answer["type"]))
        await asyncio.wait_for(connected.wait(), 10)
    finally:
        await client.close()
        await handler.close()


@pytest.mark.slow
async def test_a_relay_only_call_connects_through_coturn_and_hears_the_greeting(
    coturn: Coturn,
    local_server: RunningServer,
    loopback_candidate_address: None,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """`voicebot call`'s WebRTC client, limited to relay candidates (aiortc's
    iceTransportPolicy=relay) with minted credentials: every media packet goes through coturn."""
    monkeypatch.setattr(
        caller_module,
        "RTCConfiguration",
        functools.partial(RTCConfiguration, iceTransportPolicy=RTCIceTransportPolicy.RELAY),
    )
    caller = WebRTCCaller(local_server.url, connect_timeout=10)
    caller._ice_servers = ice_servers(coturn.config, "caller")
    username = caller._ice_servers[0].username
    try:
        await caller.connect()
        assert caller._pc is not None
        local = caller._pc.localDescription.sdp
        assert candidate_types(local) and set(candidate_types(local)) == {"relay"}, local
        heard = await caller.wait_for_bot_audio(max_wait=15)
        assert heard is not None, "no greeting audio arrived through the relay"
    finally:
        await caller.close()
    name = re.escape(username)
    coturn.wait_for_log(rf"user <{name}>: incoming packet ALLOCATE processed, success")
    coturn.wait_for_log(rf"user <{name}>: incoming packet CHANNEL_BIND processed, success")
    # When the allocation ends coturn reports what it relayed to and from the server (the peer):
    # the bot's greeting came in through the relay, the caller's audio went out through it.
    usage = coturn.wait_for_log(
        rf"peer usage: realm=<{REALM}>, username=<{name}>, rp=\d+, rb=\d+, sp=\d+, sb=\d+"
    )
    counts = dict(re.findall(r"(rp|rb|sp|sb)=(\d+)", usage))
    # 20 ms RTP packets both ways (plus ICE checks and DTLS), at least a few hundred ms of them.
    assert int(counts["rp"]) >= 20 and int(counts["sp"]) >= 20, usage
    assert int(counts["rb"]) > 2000 and int(counts["sb"]) > 2000, usage
