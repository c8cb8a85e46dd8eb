"""The process-wide TLS context (bot/providers/tls.py): made once, used by every provider socket.

`ssl.create_default_context()` costs ~45 ms on the event loop; these tests count its calls while
services are built and real TLS WebSockets are opened on loopback, and check that verification
stays on.
"""

from __future__ import annotations

import datetime
import ipaddress
import ssl
from collections.abc import Iterator
from pathlib import Path

import pipecat.services.websocket_service as pipecat_ws
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from websockets.asyncio.server import serve

# Importing it wraps the Deepgram SDK's connect (shared context, no compression).
import bot.deepgram_stt
from bot.call import CallInfo
from bot.providers import tls
from bot.providers.cloud import make_deepgram_stt
from bot.stage_options import DeepgramOptions


@pytest.fixture
def new_contexts(monkeypatch: pytest.MonkeyPatch) -> list[object]:
    """Every `ssl.create_default_context` call from now on (httpx, websockets and asyncio all
    look it up on the `ssl` module at call time)."""
    calls: list[object] = []
    real = ssl.create_default_context

    def counting(*args: object, **kwargs: object) -> ssl.SSLContext:
        calls.append((args, kwargs))
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ssl, "create_default_context", counting)
    return calls


@pytest.fixture
def fresh_tls_context() -> Iterator[None]:
    """Lets a test remake the shared context (under its own SSL_CERT_FILE); later tests get a
    normal one again."""
    tls.client_tls_context.cache_clear()
    yield
    tls.client_tls_context.cache_clear()


def self_signed(directory: Path, name: str) -> tuple[Path, Path]:
    """A certificate (and key) for IP 127.0.0.1, signed by itself."""
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / f"{name}.pem", directory / f"{name}.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_path, key_path


def server_context(cert: Path, key: Path) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    return context


async def echo(websocket) -> None:  # type: ignore[no-untyped-def]
    async for message in websocket:
        await websocket.send(message)


def port_of(server) -> int:  # type: ignore[no-untyped-def]
    return server.sockets[0].getsockname()[1]


async def test_deepgram_services_share_one_http_client_and_make_no_context(
    new_contexts: list[object],
) -> None:
    tls.install()
    shared = tls.client_tls_context()  # made once per process, before anything is counted
    new_contexts.clear()
    call = CallInfo("CAtls", "twilio", 8000, 8000)
    first = make_deepgram_stt(DeepgramOptions(api_key="dg-test"), call)
    second = make_deepgram_stt(DeepgramOptions(api_key="dg-test"), call)
    assert new_contexts == []
    client = first._client._client_wrapper.httpx_client.httpx_client
    assert client is second._client._client_wrapper.httpx_client.httpx_client
    assert client._transport._pool._ssl_context is shared


async def test_wss_connections_use_the_shared_verified_context(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    fresh_tls_context: None,
    new_contexts: list[object],
) -> None:
    trusted_cert, trusted_key = self_signed(tmp_path, "trusted")
    stranger_cert, stranger_key = self_signed(tmp_path, "stranger")
    monkeypatch.setenv("SSL_CERT_FILE", str(trusted_cert))
    tls.install()
    shared = tls.client_tls_context()
    new_contexts.clear()
    good = server_context(trusted_cert, trusted_key)
    bad = server_context(stranger_cert, stranger_key)
    async with (
        serve(echo, "127.0.0.1", 0, ssl=good) as server,
        serve(echo, "127.0.0.1", 0, ssl=bad) as stranger,
    ):
        uri = f"wss://127.0.0.1:{port_of(server)}/"
        for n in range(2):
            async with pipecat_ws.websocket_connect(uri) as websocket:
                await websocket.send(f"hello {n}")
                assert await websocket.recv() == f"hello {n}"
                assert websocket.transport.get_extra_info("sslcontext") is shared
        sdk_connect = bot.deepgram_stt.deepgram_listen_client.websockets_client_connect
        async with sdk_connect(uri, extra_headers={"Authorization": "Token t"}) as websocket:
            await websocket.send("sdk")
            assert await websocket.recv() == "sdk"
            assert websocket.transport.get_extra_info("sslcontext") is shared
        assert new_contexts == []
        with pytest.raises(ssl.SSLCertVerificationError):
            async with pipecat_ws.websocket_connect(f"wss://127.0.0.1:{port_of(stranger)}/"):
                pass


async def test_plain_ws_gets_no_ssl_argument() -> None:
    tls.install()
    async with serve(echo, "127.0.0.1", 0) as server:
        # websockets refuses an `ssl` argument for a ws:// URI, so this connects only if the
        # wrapper left it out.
        async with pipecat_ws.websocket_connect(f"ws://127.0.0.1:{port_of(server)}/") as ws:
            await ws.send("plain")
            assert await ws.recv() == "plain"
