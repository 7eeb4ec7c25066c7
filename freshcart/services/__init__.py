"""`freshcart services up|down|status`: the real servers FreshCart runs on this machine.

local profile: a single-node Kafka broker. production profile: also Redis and
PostgreSQL. `down` stops whatever `up` started (it reads the pid files), in
reverse order, whatever the profile is now.
"""

from __future__ import annotations

from types import ModuleType

from freshcart.services import kafka, postgres, redis
from freshcart.services.credentials import exposure_warning
from freshcart.services.process import ServiceError, ServiceStatus
from freshcart.settings import Settings

ALL: tuple[ModuleType, ...] = (kafka, redis, postgres)

__all__ = ["ServiceError", "ServiceStatus", "up", "down", "status", "for_profile"]


def for_profile(settings: Settings) -> tuple[ModuleType, ...]:
    """The services a profile needs, in start order."""
    return ALL if settings.profile == "production" else (kafka,)


def up(settings: Settings) -> list[str]:
    """Start the profile's services; already-running ones are left as they are. A warning first when they
    listen beyond loopback without credentials."""
    lines = [line for service in for_profile(settings)
             if (line := exposure_warning(service.NAME, settings.bind_host, settings.auth))]
    return lines + [service.start(settings) for service in for_profile(settings)]


def down(settings: Settings) -> list[str]:
    """Stop every service that `up` started; a line per service stopped."""
    lines = []
    for service in reversed(ALL):
        line = service.stop(settings)
        if line:
            lines.append(line)
    return lines


def status(settings: Settings) -> list[ServiceStatus]:
    return [service.status(settings) for service in ALL]
