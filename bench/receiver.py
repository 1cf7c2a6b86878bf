"""Delivery-report receiver: a tiny HTTP/1.1 server (raw asyncio, keep-alive) run as a subprocess.

POST /report   {"delivery_report": [...]} -> 200 {"sent": .., "error": .., "deferred": ..}
GET  /stats?prefix=P  -> counts of items and distinct ids, and when the last new id with that prefix arrived
POST /reset    forget everything
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from procs import Child, Children, free_port, wait_listening

RECEIVER_SCRIPT = Path(__file__).resolve()


@dataclass(slots=True)
class Reports:
    first_seen: dict[str, float] = field(default_factory=dict)  # id -> time.time() of its first report
    items: int = 0
    batches: int = 0
    bad_requests: int = 0

    def receive(self, body: bytes) -> tuple[int, dict[str, Any]]:
        try:
            items = json.loads(body)["delivery_report"]
            if not isinstance(items, list):
                raise TypeError("delivery_report is not a list")
        except (ValueError, KeyError, TypeError) as exc:
            self.bad_requests += 1
            return 400, {"detail": f"bad delivery report: {exc}"}
        now = time.time()
        summary = {"sent": 0, "error": 0, "deferred": 0}
        for item in items:
            self.first_seen.setdefault(str(item.get("id")), now)
            if item.get("sent_ts") is not None:
                summary["sent"] += 1
            elif item.get("error_ts") is not None:
                summary["error"] += 1
            else:
                summary["deferred"] += 1
        self.items += len(items)
        self.batches += 1
        return 200, summary

    def stats(self, prefix: str) -> dict[str, Any]:
        times = [ts for mid, ts in self.first_seen.items() if mid.startswith(prefix)]
        return {
            "items": self.items,
            "batches": self.batches,
            "distinct": len(self.first_seen),
            "bad_requests": self.bad_requests,
            "matching": len(times),
            "first_ts": min(times, default=None),
            "last_new_ts": max(times, default=None),
        }


class HttpServer:
    def __init__(self) -> None:
        self.reports = Reports()

    def route(self, method: str, target: str, body: bytes) -> tuple[int, dict[str, Any]]:
        url = urlsplit(target)
        if method == "POST" and url.path == "/report":
            return self.reports.receive(body)
        if method == "GET" and url.path == "/stats":
            prefix = parse_qs(url.query).get("prefix", [""])[0]
            return 200, self.reports.stats(prefix)
        if method == "POST" and url.path == "/reset":
            self.reports = Reports()
            return 200, {"ok": True}
        return 404, {"detail": f"no route {method} {url.path}"}

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                method, target, _version = request_line.split(" ", 2)
                headers = {}
                for line in header_lines:
                    name, _, value = line.partition(":")
                    if name:
                        headers[name.strip().lower()] = value.strip()
                length = int(headers.get("content-length", "0"))
                body = await reader.readexactly(length) if length else b""
                status, payload = self.route(method, target, body)
                out = json.dumps(payload).encode()
                reason = {200: "OK", 400: "Bad Request", 404: "Not Found"}[status]
                writer.write(
                    f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\n"
                    f"content-length: {len(out)}\r\n\r\n".encode()
                    + out
                )
                await writer.drain()
                if headers.get("connection", "").lower() == "close":
                    break
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError, ConnectionError, ValueError):
            pass
        finally:
            writer.close()


async def _serve(port: int) -> None:
    app = HttpServer()
    server = await asyncio.start_server(app.handle, "127.0.0.1", port, backlog=100)
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    async with server:
        await stop.wait()
    print(f"receiver: {app.reports.items} report items in {app.reports.batches} batches", flush=True)


class ReceiverClient:
    """The harness's view of the receiver subprocess."""

    def __init__(self, child: Child, port: int) -> None:
        self.child = child
        self.port = port
        self.report_url = f"http://127.0.0.1:{port}/report"
        self._http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}", timeout=30.0)

    async def stats(self, prefix: str) -> dict[str, Any]:
        response = await self._http.get("/stats", params={"prefix": prefix})
        response.raise_for_status()
        data: dict[str, Any] = response.json()
        return data

    async def reset(self) -> None:
        (await self._http.post("/reset")).raise_for_status()

    async def aclose(self) -> None:
        await self._http.aclose()


async def start_receiver(children: Children, workdir: Path) -> ReceiverClient:
    port = free_port()
    argv = [sys.executable, str(RECEIVER_SCRIPT), "--port", str(port)]
    child = children.start(Child("report-receiver", argv, workdir / "receiver.log"))
    await wait_listening(port, child, timeout_seconds=20)
    return ReceiverClient(child, port)


def main() -> None:
    parser = argparse.ArgumentParser(description="delivery-report receiver for the asyncmail benchmark")
    parser.add_argument("--port", type=int, required=True)
    asyncio.run(_serve(parser.parse_args().port))


if __name__ == "__main__":
    main()
