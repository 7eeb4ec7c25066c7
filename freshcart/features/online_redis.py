"""Feature rows straight into Feast's Redis online store, byte for byte as Feast writes them.

Feast's Redis store keeps one hash per entity key (``serialize_entity_key`` + the
project name): a field ``_ts:<view>`` with the event time as a ``Timestamp`` proto,
and one field per feature, named by the murmur3 hash of ``<view>:<feature>``, with
the serialised ``ValueProto`` (see ``RedisOnlineStore.online_write_batch``, whose
``skip_dedup`` path this reproduces). Feast builds a protobuf per value and a dict
per row; here the values come from the column encoder of
:mod:`freshcart.features.online_sqlite` and the whole batch is packed into one
buffer of Redis commands, which :func:`send` writes in one round trip.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from feast.infra.online_stores.helpers import _mmh3
from feast.infra.online_stores.redis import _versioned_fv_name
from google.protobuf.timestamp_pb2 import Timestamp


@dataclass
class Commands:
    """One batch of HSET (and EXPIRE) commands, packed in the Redis protocol."""

    packed: list[bytes]
    count: int  # commands, one reply each


def timestamp_bytes(micros: int) -> bytes:
    """The ``_ts:<view>`` field: a ``Timestamp`` proto as Feast's ``Timestamp.FromDatetime`` sets it."""
    seconds, rest = divmod(int(micros), 1_000_000)
    return Timestamp(seconds=seconds, nanos=rest * 1000).SerializeToString()


def hset_commands(config: Any, fv: Any, encoded: Any, packer: Any) -> Commands:
    """Pack the HSETs of ``encoded`` rows (a :class:`freshcart.features.materialize.EncodedRows`).

    ``packer``: a redis-py connection (not necessarily connected), whose ``pack_commands``
    encodes the commands exactly as redis-py's own pipeline would.
    """
    view = _versioned_fv_name(fv, config)
    project = config.project.encode("utf-8")
    ttl = config.online_store.key_ttl_seconds
    names = list(encoded.columns)
    fields = [_mmh3(f"{view}:{name}") for name in names]
    columns = [encoded.columns[name] for name in names]
    ts_field = f"_ts:{view}".encode()
    commands: list[list[Any]] = []
    for i in range(len(encoded.keys)):
        key = encoded.keys[i].tobytes() + project
        args: list[Any] = ["HSET", key, ts_field, timestamp_bytes(encoded.micros[i])]
        for field, col in zip(fields, columns):
            start = int(col.value_start[i])
            args += [field, col.values[start:start + int(col.value_len[i])]]
        commands.append(args)
        if ttl:
            commands.append(["EXPIRE", key, ttl])
    return Commands(packer.pack_commands(commands), len(commands))


def send(pool: Any, commands: Commands) -> None:
    """Write a packed batch on one connection of ``pool`` and read every reply (raising the first error)."""
    conn = pool.get_connection()
    try:
        conn.send_packed_command(commands.packed)
        for _ in range(commands.count):
            conn.read_response(disable_decoding=True)  # an error reply raises
    except BaseException:
        conn.disconnect()  # a half-read connection must not go back to the pool as it is
        raise
    finally:
        pool.release(conn)


def redis_client(config: Any) -> Any | None:
    """A client of the store's Redis (Feast's connection string parsing) when these writes match it: a
    single Redis (not cluster or sentinel) and Feast's current entity key format; None otherwise."""
    from feast.infra.online_stores.redis import RedisOnlineStore, RedisType

    store = config.online_store
    if store.type != "redis" or config.entity_key_serialization_version != 3 or store.redis_type != RedisType.redis:
        return None
    return RedisOnlineStore()._get_client(config.online_store)
