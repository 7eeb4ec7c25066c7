"""`freshcart services kafka-acls`: give every Kafka role its SCRAM credential and its ACLs on the broker of the
settings, as the admin principal. The Helm chart's ACL Job runs it after each install and upgrade, so the grants
come from one place (:mod:`freshcart.kafka_acls`), for a broker FreshCart did not start itself."""

from __future__ import annotations

import logging
import time

import typer

from freshcart.cli.common import console, fail, settings_or_exit
from freshcart.credentials import KAFKA_ROLES
from freshcart.settings import ConfigError

ROLES = tuple(role for role in KAFKA_ROLES if role != "admin")
"""The roles whose principals get a credential and ACLs; the admin is the broker's super user."""


class SaslFailures(logging.Handler):
    """The SASL failures kafka-python logs while it retries a bootstrap: it reports a refused login only as a
    bootstrap timeout, which would otherwise read like a broker out of reach."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if "SaslAuthenticationFailed" in message:
            self.messages.append(message)


def kafka_acls(
    principals: bool = typer.Option(
        True, "--principals/--no-principals",
        help="Also set each role's SCRAM-SHA-512 credential to its password in the settings "
             "(FRESHCART_KAFKA_<ROLE>_PASSWORD; a changed password takes effect at once). --no-principals needs only "
             "the admin's password."),
    wait_seconds: float = typer.Option(
        0.0, "--wait-seconds", min=0.0,
        help="Keep trying this long while the brokers cannot be reached (they may be starting alongside)."),
) -> None:
    """Give every role's principal its SCRAM credential and its ACLs on the broker of the settings, as the admin.

    The grants are those of freshcart/kafka_acls.py on the settings' topics; the broker is FRESHCART_KAFKA_BOOTSTRAP,
    the admin freshcart-admin with FRESHCART_KAFKA_ADMIN_PASSWORD (the Helm chart's ACL Job runs this command)."""
    from kafka.errors import KafkaConnectionError, KafkaError, RetriableError

    from freshcart.kafka_acls import acl_specs
    from freshcart.kafka_io import admin_client, ensure_acls, ensure_principals

    settings = settings_or_exit()
    if not settings.auth:
        fail("FRESHCART_AUTH is false: a broker without SASL has no principals or ACLs to create; set "
             "FRESHCART_AUTH=true (the default) and the admin's password FRESHCART_KAFKA_ADMIN_PASSWORD", 2)
    try:
        for role in ("admin", *ROLES) if principals else ("admin",):
            settings.kafka_credentials(role)
    except ConfigError as exc:
        fail(f"{exc} (or pass --no-principals to create only the ACLs)" if principals else str(exc), 2)
    failures = SaslFailures()
    logging.getLogger("kafka").addHandler(failures)
    deadline = time.monotonic() + wait_seconds
    while True:
        try:
            if principals:
                ensure_principals(settings)
            admin = admin_client(settings, client_id="freshcart-kafka-acls")
            try:
                ensure_acls(admin, settings)
            finally:
                admin.close()
            break
        except (RetriableError, KafkaConnectionError) as exc:
            if failures.messages:
                fail(f"kafka: the brokers {settings.bootstrap_servers} refused the login of {KAFKA_ROLES['admin']} "
                     f"({failures.messages[-1]}); check FRESHCART_KAFKA_ADMIN_PASSWORD: it must be the password the "
                     "broker's storage was formatted with (the Secret's admin-password)")
            if time.monotonic() >= deadline:
                fail(f"kafka: cannot reach the brokers {settings.bootstrap_servers} or log in to them as "
                     f"{KAFKA_ROLES['admin']} ({exc}); check FRESHCART_KAFKA_BOOTSTRAP and "
                     "FRESHCART_KAFKA_ADMIN_PASSWORD (a broker that refuses a login may only close the connection), "
                     "or give them longer with --wait-seconds")
            console.print(f"kafka: {settings.bootstrap_servers} not reachable yet ({exc}); trying again",
                          highlight=False)
            time.sleep(2.0)
        except (KafkaError, RuntimeError) as exc:
            fail(f"kafka: {exc} (as freshcart-admin on {settings.bootstrap_servers}: check "
                 "FRESHCART_KAFKA_ADMIN_PASSWORD and that freshcart-admin is the broker's super user)")
    if principals:
        console.print(f"kafka: SCRAM-SHA-512 credentials set for {', '.join(KAFKA_ROLES[role] for role in ROLES)}",
                      highlight=False)
    console.print(f"kafka: {len(acl_specs(settings))} ACLs of the roles in place on {settings.bootstrap_servers}",
                  highlight=False)
