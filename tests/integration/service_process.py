"""asyncmail as a real process for integration tests: start, SIGKILL, SIGTERM, talk HTTP."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

BATCH_SIZE = 50


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """One asyncmail process; `kill()` is SIGKILL, `stop()` is a graceful SIGTERM."""

    def __init__(self, db: Path, log: Path, extra_env: dict[str, str]) -> None:
        self.port = free_port()
        env = {k: v for k, v in os.environ.items() if not k.startswith("ASYNCMAIL_") and k != "API_TOKEN"}
        env.update(
            {
                "ASYNCMAIL_STORAGE__DB_PATH": str(db),
                "ASYNCMAIL_SERVER__PORT": str(self.port),
                "ASYNCMAIL_DELIVERY__SEND_INTERVAL_SECONDS": "0.2",
                "ASYNCMAIL_DELIVERY__BATCH_SIZE_PER_ACCOUNT": str(BATCH_SIZE),
                "ASYNCMAIL_DELIVERY__LEASE_SECONDS": "2",
                "ASYNCMAIL_SYNC__INTERVAL_SECONDS": "0.2",
                "ASYNCMAIL_SMTP__TIMEOUT_SECONDS": "5",
                "ASYNCMAIL_SMTP__HELO_HOSTNAME": "asyncmail.test",
                **extra_env,
            }
        )
        self._log_path = log
        self._log = log.open("ab")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "entrypoints.cli", "serve"], env=env, stdout=self._log, stderr=subprocess.STDOUT
        )
        self.client = httpx.Client(base_url=f"http://127.0.0.1:{self.port}", timeout=30)
        self._wait_ready()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"asyncmail exited with {self.process.returncode} during start-up")
            try:
                if self.client.get("/status").status_code == 200:
                    return
            except httpx.TransportError:
                time.sleep(0.05)
        raise TimeoutError("asyncmail did not answer /status within 30 s")

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(10)
        self._close()

    def stop(self) -> bool:
        """SIGTERM; True when the process shut down cleanly (uvicorn re-raises SIGTERM once it is done)."""
        self.process.send_signal(signal.SIGTERM)
        code = self.process.wait(30)
        self._close()
        return code in (0, -signal.SIGTERM) and b"Application shutdown complete" in self._log_path.read_bytes()

    def _close(self) -> None:
        self.client.close()
        self._log.close()


def wait_until(condition: Any, timeout: float, what: str, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(poll)
