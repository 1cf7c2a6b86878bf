"""What the routes use, resolved once in the lifespan and kept on app.state."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from fastapi import Request

from core.model import Priority
from core.services.admin import AdminService
from core.services.intake import IntakeService
from entrypoints.metrics import MailMetrics
from entrypoints.runner import Runner
from ports.clock import Clock
from ports.message_store import MessageStore


@dataclass(frozen=True, slots=True)
class AppServices:
    intake: IntakeService
    admin: AdminService
    messages: MessageStore
    runner: Runner
    metrics: MailMetrics
    clock: Clock
    default_priority: Priority
    max_batch: int
    test_mode: bool
    reporting: Literal["httpx", "memory", "off"]


def services(request: Request) -> AppServices:
    found: AppServices = request.app.state.services
    return found
