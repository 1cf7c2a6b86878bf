"""The SMTP sink the service delivers to: Postfix's smtp-sink when it can be had, else an aiosmtpd sink.

smtp-sink (C, event driven) accepts mail far faster than any Python client can send it, so it never is
the bottleneck. It is looked for in bench/.tools/postfix/usr/sbin/smtp-sink and, if absent, obtained with
`apt-get download postfix` + `dpkg -x` (no install, nothing outside bench/.tools). Without apt or network
the fallback is this module run as a script: an aiosmtpd server that accepts and discards everything
(in Python it is itself a limit, which is why the sink used is printed with every figure).
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

from procs import Child, Children, HarnessError, free_port, log, wait_listening

SINK_SCRIPT = Path(__file__).resolve()

TOOLS_DIR = SINK_SCRIPT.parent / ".tools"
POSTFIX_DIR = TOOLS_DIR / "postfix"
SMTP_SINK = POSTFIX_DIR / "usr" / "sbin" / "smtp-sink"
SMTP_SINK_LIBS = POSTFIX_DIR / "usr" / "lib" / "postfix"


@dataclass(frozen=True, slots=True)
class Sink:
    kind: str  # "postfix smtp-sink" or "aiosmtpd"
    port: int
    child: Child
    note: str  # why this sink was chosen


def obtain_smtp_sink(timeout_seconds: float = 180.0) -> str | None:
    """Make bench/.tools/postfix/usr/sbin/smtp-sink exist. Returns None on success, else the reason it failed."""
    if SMTP_SINK.is_file():
        return None
    if shutil.which("apt-get") is None or shutil.which("dpkg") is None:
        return "apt-get/dpkg not available"
    log(f"{SMTP_SINK} is absent: obtaining it with apt-get download postfix + dpkg -x")
    with tempfile.TemporaryDirectory(prefix="asyncmail-bench-apt-") as tmp:
        try:
            download = subprocess.run(
                ["apt-get", "download", "postfix"], cwd=tmp, capture_output=True, text=True, timeout=timeout_seconds
            )
            debs = sorted(Path(tmp).glob("postfix_*.deb"))
            if download.returncode != 0 or not debs:
                return "apt-get download postfix failed: " + (download.stderr.strip().splitlines() or ["?"])[-1]
            POSTFIX_DIR.mkdir(parents=True, exist_ok=True)
            extract = subprocess.run(
                ["dpkg", "-x", str(debs[0]), str(POSTFIX_DIR)], capture_output=True, text=True, timeout=timeout_seconds
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"obtaining postfix failed: {exc}"
    if extract.returncode != 0 or not SMTP_SINK.is_file():
        return "dpkg -x of the postfix package did not produce usr/sbin/smtp-sink: " + extract.stderr.strip()
    return None


def smtp_sink_argv(port: int) -> list[str]:
    argv = [str(SMTP_SINK)]
    if os.geteuid() == 0:
        argv += ["-u", "nobody"]  # smtp-sink refuses to run as root without a user to switch to
    return [*argv, "-c", f"127.0.0.1:{port}", "1000"]


async def start_sink(children: Children, workdir: Path, prefer: str = "auto") -> Sink:
    """Start a sink on a free loopback port. prefer: "auto" (smtp-sink, else aiosmtpd) or "aiosmtpd"."""
    reason = "aiosmtpd requested (--sink aiosmtpd)" if prefer == "aiosmtpd" else obtain_smtp_sink()
    if reason is None:
        port = free_port()
        env = {**os.environ, "LD_LIBRARY_PATH": str(SMTP_SINK_LIBS)}
        child = children.start(Child("smtp-sink", smtp_sink_argv(port), workdir / "smtp-sink.log", env=env))
        try:
            await wait_listening(port, child, timeout_seconds=10)
            return Sink("postfix smtp-sink", port, child, f"{SMTP_SINK.relative_to(TOOLS_DIR.parent.parent)}")
        except HarnessError as exc:
            child.stop()
            children.forget(child)
            reason = f"smtp-sink did not start: {exc}"
    log(f"using the aiosmtpd sink instead of Postfix smtp-sink: {reason}")
    port = free_port()
    argv = [sys.executable, str(SINK_SCRIPT), "--port", str(port)]
    child = children.start(Child("aiosmtpd-sink", argv, workdir / "aiosmtpd-sink.log"))
    await wait_listening(port, child, timeout_seconds=20)
    return Sink("aiosmtpd", port, child, reason)


class _DiscardHandler:
    """aiosmtpd handler: accept every message and throw it away."""

    def __init__(self) -> None:
        self.received = 0

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        self.received += 1
        return "250 2.0.0 Ok: discarded"


async def _serve_aiosmtpd(port: int) -> None:
    from aiosmtpd.smtp import SMTP

    handler = _DiscardHandler()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: SMTP(handler, hostname="bench-sink", enable_SMTPUTF8=True, data_size_limit=64 * 1024 * 1024),
        host="127.0.0.1",
        port=port,
        backlog=1000,
    )
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    print(f"aiosmtpd sink received {handler.received} messages", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description="aiosmtpd SMTP sink that discards every message")
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(_serve_aiosmtpd(parser.parse_args().port))


if __name__ == "__main__":
    main()
