"""The `local_hub` fixture: a real Hub-compatible HTTP server on 127.0.0.1 for the test suite.

The server (tests/hub_write_layer.py: Olah 0.5.4 in offline mode serving bare git repositories,
plus a write layer for the endpoints Olah lacks) runs as a uvicorn subprocess on the port that
tests/conftest.py put in ``HF_ENDPOINT``. It starts lazily the first time a test asks for
`local_hub` and stops at the end of the session.

Example:
    def test_roundtrip(local_hub):
        api = HfApi(token=local_hub.token)
        api.create_repo("tester/demo", repo_type="dataset")
"""

from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

logger = logging.getLogger(__name__)

_SERVER_SCRIPT = Path(__file__).with_name("hub_write_layer.py")
# Read by the server on every commit / tag creation (hub_write_layer.py).
_FAIL_COMMITS_FLAG = ".fail_commits"
_FAIL_TAGS_FLAG = ".fail_tags"
TOKEN = "hf_local_test_token"
USER = "tester"


class LocalHub:
    """Handle on the local Hub server process.

    Args:
        port: TCP port on 127.0.0.1 (the one in ``HF_ENDPOINT``).
        repos_dir: folder of the bare git repositories the server reads and writes.
        startup_timeout: seconds to wait for the port to answer before giving up.

    Attributes:
        endpoint: ``http://127.0.0.1:<port>``, equal to ``os.environ["HF_ENDPOINT"]``.
        token: the user token the server accepts for writes (``whoami`` -> user ``tester``).
        user: the namespace repos are created in when none is given.
        repos_dir: where the bare repositories live (``<repos_dir>/datasets/<org>/<name>``).

    Example:
        >>> hub = LocalHub(port=8765, repos_dir="/tmp/hub")  # doctest: +SKIP
        >>> hub.start(); hub.fail_commits(True); hub.fail_tags(False); hub.stop()  # doctest: +SKIP
    """

    def __init__(self, *, port: int, repos_dir: str | os.PathLike, startup_timeout: float = 30.0) -> None:
        self.port = int(port)
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self.token = TOKEN
        self.user = USER
        self.repos_dir = Path(repos_dir)
        self.startup_timeout = startup_timeout
        self._proc: subprocess.Popen | None = None
        # Outside repos_dir's parent, which the fixture removes: the log outlives the session.
        self.log_path = Path(tempfile.gettempdir()) / f"hf-selectit-local-hub-{self.port}.log"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> None:
        """Start the server process and wait until it answers on its port.

        Raises:
            RuntimeError: the port is taken, the process exited, or it did not answer within
                `startup_timeout` seconds; the message includes the end of the server log.
        """
        if self.running:
            return
        if _port_answers(self.port):
            raise RuntimeError(
                f"Port {self.port} on 127.0.0.1 is already in use by another process; the local Hub "
                "cannot start there. Re-run the tests (conftest.py picks a new free port each session)."
            )
        self.repos_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        # The server may run on another interpreter than the tests: `make test-lowest` tests the
        # lowest huggingface_hub, older than the one Olah itself needs (.venv runs the server).
        python = os.environ.get("HF_SELECTIT_TEST_HUB_PYTHON") or sys.executable
        self._proc = subprocess.Popen(
            [python, str(_SERVER_SCRIPT), "--port", str(self.port),
             "--repos-dir", str(self.repos_dir), "--token", self.token, "--parent-pid", str(os.getpid())],
            stdout=log, stderr=subprocess.STDOUT, env=env, cwd=str(self.repos_dir.parent),
        )
        log.close()
        deadline = time.monotonic() + self.startup_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise RuntimeError(
                    f"The local Hub server exited with code {self._proc.returncode} during start-up.\n"
                    f"{self._log_tail()}"
                )
            if _health_ok(self.port):
                logger.info("local Hub up at %s (pid %s)", self.endpoint, self._proc.pid)
                return
            time.sleep(0.05)
        self.stop()
        raise RuntimeError(
            f"The local Hub server did not answer on {self.endpoint} within {self.startup_timeout:.0f} s.\n"
            f"{self._log_tail()}"
        )

    def stop(self) -> None:
        """Stop the server process (requests then fail with a connection error)."""
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
        # The port must be free before start() may be called again on it.
        deadline = time.monotonic() + 10
        while _port_answers(self.port) and time.monotonic() < deadline:
            time.sleep(0.05)

    def fail_commits(self, flag: bool) -> None:
        """While `flag` is True the commit endpoint answers HTTP 500 (nothing is written)."""
        path = self.repos_dir / _FAIL_COMMITS_FLAG
        if flag:
            self.repos_dir.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            path.unlink(missing_ok=True)

    def fail_tags(self, flag: bool) -> None:
        """While `flag` is True creating a tag answers HTTP 500 (commits still succeed)."""
        path = self.repos_dir / _FAIL_TAGS_FLAG
        if flag:
            self.repos_dir.mkdir(parents=True, exist_ok=True)
            path.touch()
        else:
            path.unlink(missing_ok=True)

    def _log_tail(self, n: int = 40) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").splitlines()
        except OSError:
            return f"(no server log at {self.log_path})"
        return f"server log {self.log_path} (last lines):\n" + "\n".join(lines[-n:])


def _port_answers(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def _health_ok(port: int) -> bool:
    import http.client

    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=1)
    try:
        conn.request("GET", "/_local_hub/health")
        return conn.getresponse().status == 200
    except OSError:
        return False
    finally:
        conn.close()


@pytest.fixture(scope="session")
def local_hub():
    """The running local Hub (session-wide); see `LocalHub` for its attributes."""
    port = os.environ.get("HF_SELECTIT_TEST_HUB_PORT")
    if not port:
        raise RuntimeError("HF_SELECTIT_TEST_HUB_PORT is not set: tests/conftest.py must run before this fixture")
    workdir = Path(tempfile.mkdtemp(prefix="hf-selectit-local-hub-"))
    hub = LocalHub(port=int(port), repos_dir=workdir / "repos")
    if os.environ.get("HF_ENDPOINT") != hub.endpoint:
        raise RuntimeError(f"HF_ENDPOINT is {os.environ.get('HF_ENDPOINT')!r}, expected {hub.endpoint!r}")
    hub.start()
    try:
        yield hub
    finally:
        hub.fail_commits(False)
        hub.fail_tags(False)
        hub.stop()
        shutil.rmtree(workdir, ignore_errors=True)
