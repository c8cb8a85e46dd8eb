"""`GET /` and `/static/`: the page, its bundle, its security headers, nothing else served."""

from __future__ import annotations

import re

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from transports.page import STATIC_FILES, add_page_routes


@pytest.fixture(scope="module")
def client() -> TestClient:
    app = FastAPI()
    add_page_routes(app)
    return TestClient(app)


def test_the_page_loads_only_from_its_own_origin(client: TestClient) -> None:
    response = client.get("/")
    assert response.status_code == 200
    policy = response.headers["content-security-policy"]
    assert "default-src 'self'" in policy and "script-src 'self'" in policy
    assert "connect-src 'self'" in policy and "unsafe-eval" not in policy
    assert response.headers["x-content-type-options"] == "nosniff"
    # Every script and stylesheet the page names is its own: no CDN.
    sources = re.findall(r'<(?:script|link)[^>]+(?:src|href)="([^"]+)"', response.text)
    assert sources and all(s.startswith(("/static/", "data:")) for s in sources), sources


def test_the_bundle_is_served_and_is_pipecats_client(client: TestClient) -> None:
    response = client.get("/static/app.js")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/javascript")
    assert "rtvi-ai" in response.text  # client-js's RTVI message label
    assert "SmallWebRTCMediaManager" in response.text  # the SmallWebRTC transport
    assert "c.daily.co" not in response.text  # Daily's CDN loader is not bundled
    assert client.get("/static/app.js.LEGAL.txt").status_code == 200


@pytest.mark.parametrize(
    "path",
    ["/static/index.html", "/static/..%2Fpage.py", "/static/%2e%2e/webrtc.py", "/static/x.js"],
)
def test_static_serves_the_named_files_only(client: TestClient, path: str) -> None:
    assert client.get(path).status_code == 404
    assert "index.html" not in STATIC_FILES
