"""The browser page's own logic (what it says for each failure, the latency rows), tested with
Node's test runner: `node --test client/test` (Node comes with `make client`'s npm)."""

from __future__ import annotations

import shutil
import subprocess

from tests.support.servers import REPO


def test_the_page_modules_pass_their_node_tests() -> None:
    node = shutil.which("node") or shutil.which("nodejs")
    assert node is not None, "node is missing: `make test` installs npm (and Node) with apt"
    result = subprocess.run(
        [node, "--test", "test/"],
        cwd=REPO / "client",
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "# fail 0" in result.stdout and "# pass 0" not in result.stdout, result.stdout
