"""`freshcart privacy ...`: erasure requests and the pseudonym of a shop's user id."""

from __future__ import annotations

from typing import Optional

import typer

from freshcart.cli.common import console, fail, settings_or_exit

privacy_app = typer.Typer(help="Shoppers' privacy: erasure requests, pseudonyms.", no_args_is_help=True)


def _user_or_exit(user: str) -> int:
    from freshcart.privacy.pseudonym import as_user_id

    value = as_user_id(user)
    if value is None:
        fail(f"--user {user!r} is not a user id; give the shopper's id, a whole number from -2^63 to 2^63-1", 2)
    return value


@privacy_app.command("forget")
def forget(
    user: str = typer.Option(..., "--user", help="The shopper's id as the shop knows it (mapped to its pseudonym "
                             "when FRESHCART_PSEUDONYMISE is on)."),
    is_pseudonym: bool = typer.Option(False, "--pseudonym", help="--user is already FreshCart's (pseudonymised) id."),
    requested_by: Optional[str] = typer.Option(None, "--by", help="Who asked, for the audit record (default: the "
                                               "operating-system user)."),
    stream: bool = typer.Option(True, "--stream/--no-stream", help="Also erase the stream processor's state "
                                "(needs Kafka; the processor must be stopped)."),
) -> None:
    """Remove one shopper's events, feature rows (offline, online, stream state) and prediction records.

    Stop the stream processor first. Models are not retrained; an audit record is appended to
    <data_dir>/privacy/erasures.jsonl.
    """
    from freshcart.privacy.forget import forget_shopper, resolve_user
    from freshcart.privacy.pseudonym import PseudonymKeyError
    from freshcart.privacy.stream_state import StreamRunning

    settings = settings_or_exit()
    raw = _user_or_exit(user)
    try:
        user_id = resolve_user(settings, raw, is_pseudonym)
        erasure = forget_shopper(settings, user_id, requested_by, stream=stream)
    except (StreamRunning, PseudonymKeyError) as exc:
        fail(str(exc), 2)
    except Exception as exc:  # noqa: BLE001 - Kafka, Redis or the registry did not answer
        fail(f"erasure of user {user_id} stopped: {type(exc).__name__}: {exc}; nothing is audited until it "
             f"completes: fix the cause (`freshcart services status`) and run it again (it is idempotent)")
    shown = f"{user_id} (pseudonym)" if settings.pseudonymise and not is_pseudonym else str(user_id)
    console.print(f"forgot user {shown}: {erasure.total:,} rows and keys removed", highlight=False)
    for area, count in sorted(erasure.files.items()):
        console.print(f"  files    {area:<36} {count:>8,} rows", highlight=False)
    for view, count in sorted(erasure.online.items()):
        console.print(f"  online   {view:<36} {count:>8,} keys", highlight=False)
    if erasure.stream is not None:
        cache = erasure.stream.cache_keys
        console.print(f"  stream   local cache {cache.get('users', 0):,} users, {cache.get('pairs', 0):,} pairs; "
                      f"changelog {erasure.stream.tombstones:,} tombstones", highlight=False)
    else:
        console.print("  stream   skipped (--no-stream)", highlight=False)
    console.print("  kept     " + "; ".join(erasure.kept), highlight=False)


@privacy_app.command("pseudonym")
def pseudonym(user: str = typer.Argument(..., help="The shop's user id.")) -> None:
    """Print FreshCart's id of a shop's user id (its pseudonym; itself when pseudonymisation is off)."""
    from freshcart.privacy.forget import resolve_user

    settings = settings_or_exit()
    console.print(str(resolve_user(settings, _user_or_exit(user))), highlight=False)
