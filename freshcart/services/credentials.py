"""The servers' side of the credentials: generate what a server needs at its start, and say when a
server is opened to the network without any (FRESHCART_BIND_HOST)."""

from __future__ import annotations

from pydantic import SecretStr

from freshcart.credentials import ensure_secrets, is_loopback
from freshcart.settings import Settings


def provision(settings: Settings, names: tuple[str, ...]) -> Settings:
    """``settings`` with the secrets ``names`` set: from the environment, the secrets dir, or new ones (stored
    with mode 0600). Credentials off: ``settings`` unchanged."""
    if not settings.auth:
        return settings
    given = {name: getattr(settings, name).get_secret_value() if getattr(settings, name) else None for name in names}
    values = ensure_secrets(settings.secrets_path, names, given)
    return settings.model_copy(update={name: SecretStr(value) for name, value in values.items()})


def exposure_warning(name: str, host: str, has_credentials: bool) -> str | None:
    """A warning line when a server without credentials listens on an address other than loopback."""
    if has_credentials or is_loopback(host):
        return None
    return (f"warning: {name} listens on {host} without credentials: anyone who reaches this address can use it. "
            "Set FRESHCART_AUTH=true, or FRESHCART_BIND_HOST=127.0.0.1 to keep it on loopback.")
