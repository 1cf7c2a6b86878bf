"""Child processes of the benchmark: start, wait until they listen, stop. Every child is killed on exit."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path


class HarnessError(RuntimeError):
    """The harness itself broke (a child did not start, a scenario timed out): reported, exit status 1."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def log(message: str) -> None:
    """Progress goes to stderr so that stdout holds only the JSON lines and the table."""
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


class Child:
    """One subprocess in its own session (so its whole process group can be signalled), output to a log file."""

    def __init__(
        self,
        name: str,
        argv: Sequence[str],
        log_path: Path,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.name = name
        self.log_path = log_path
        self._log = log_path.open("ab")
        try:
            self.popen = subprocess.Popen(
                list(argv),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=dict(env) if env is not None else None,
                cwd=cwd,
                start_new_session=True,
            )
        except OSError:
            self._log.close()
            raise

    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def running(self) -> bool:
        return self.popen.poll() is None

    def log_tail(self, lines: int = 25) -> str:
        if not self._log.closed:
            self._log.flush()
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, sig: int = signal.SIGTERM, grace_seconds: float = 10.0) -> int | None:
        """Signal the child's process group, wait up to grace_seconds, then SIGKILL it. Returns the exit status."""
        if self.running:
            self._signal(sig)
            try:
                self.popen.wait(timeout=grace_seconds)
            except subprocess.TimeoutExpired:
                log(f"{self.name} (pid {self.pid}) ignored signal {sig} for {grace_seconds:.0f}s; killing it")
                self._signal(signal.SIGKILL)
                self.popen.wait(timeout=10)
        self._log.close()
        return self.popen.returncode

    def _signal(self, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.pid, sig)  # our child's own group: its pid is the group id (start_new_session)


class Children:
    """Every child started by the harness; `close_all` stops them in reverse order (used in `finally`)."""

    def __init__(self) -> None:
        self._children: list[Child] = []

    def start(self, child: Child) -> Child:
        self._children.append(child)
        return child

    def forget(self, child: Child) -> None:
        if child in self._children:
            self._children.remove(child)

    def close_all(self) -> None:
        while self._children:
            child = self._children.pop()
            try:
                child.stop(grace_seconds=5.0)
            except Exception as exc:  # cleanup goes on with the others whatever happens
                log(f"could not stop {child.name} (pid {child.pid}): {exc}")


async def wait_listening(port: int, child: Child, timeout_seconds: float) -> None:
    """Wait until 127.0.0.1:port accepts connections; fail early if the child exits."""
    deadline = time.monotonic() + timeout_seconds
    while time.monotonic() < deadline:
        if not child.running:
            raise HarnessError(
                f"{child.name} exited with status {child.popen.returncode} before listening on port {port}:\n"
                + child.log_tail()
            )
        try:
            _, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), timeout=1.0)
        except (OSError, TimeoutError):
            await asyncio.sleep(0.05)
            continue
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
        return
    raise HarnessError(
        f"{child.name} did not listen on 127.0.0.1:{port} within {timeout_seconds:.0f}s:\n" + child.log_tail()
    )


def cpu_seconds(pid: int) -> float | None:
    """User + system CPU time used so far by a live process (all its threads), from /proc/PID/stat."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")  # utime, stime (fields 14, 15)


def peak_rss_mb(pid: int) -> float | None:
    """VmHWM (peak resident set size) of a live process, in MiB; None when unavailable."""
    try:
        text = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("VmHWM:"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


def machine_busy_seconds() -> float | None:
    """CPU time all cores of the machine spent busy so far (not idle, not iowait), from /proc/stat."""
    try:
        jiffies = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    except (OSError, IndexError, ValueError):
        return None
    idle = jiffies[3] + (jiffies[4] if len(jiffies) > 4 else 0)
    guest = sum(jiffies[8:10])  # guest time is already counted in user and nice
    return (sum(jiffies) - idle - guest) / os.sysconf("SC_CLK_TCK")


def command_cpu_seconds(command: str) -> float | None:
    """CPU time of every live process named `command` (e.g. the PostgreSQL server and its backends), their
    reaped children included (a backend that exited is in the postmaster's cutime). None when none runs."""
    total, found = 0, False
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            text = stat.read_text()
        except OSError:
            continue  # gone meanwhile
        name, _, rest = text.partition(" (")[2].rpartition(")")
        if name != command:
            continue
        fields = rest.split()
        total += sum(int(f) for f in fields[11:15])  # utime, stime, cutime, cstime
        found = True
    return total / os.sysconf("SC_CLK_TCK") if found else None
