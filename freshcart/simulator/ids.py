"""Deterministic identifiers: a bijective 64-bit mix and fast fixed-width hex strings.

Event ids and session ids are built from structured 64-bit keys (day, index,
segment) passed through the SplitMix64 finaliser, which is a bijection on
64-bit integers: distinct keys give distinct ids. The strings are assembled as
byte matrices and handed to Arrow without a Python loop.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

MASK64 = (1 << 64) - 1
_HEX = np.frombuffer(b"0123456789abcdef", dtype=np.uint8)
_DASH = ord("-")


def mix64(values: np.ndarray) -> np.ndarray:
    """SplitMix64 finaliser of each value (uint64 in, uint64 out; a bijection)."""
    z = np.asarray(values, dtype=np.uint64).copy()
    with np.errstate(over="ignore"):
        z ^= z >> np.uint64(30)
        z *= np.uint64(0xBF58476D1CE4E5B9)
        z ^= z >> np.uint64(27)
        z *= np.uint64(0x94D049BB133111EB)
        z ^= z >> np.uint64(31)
    return z


def mix_int(value: int) -> int:
    """SplitMix64 finaliser of one Python integer (taken modulo 2**64)."""
    return int(mix64(np.array([value & MASK64], dtype=np.uint64))[0])


def seed_salt(seed: int, purpose: int) -> np.uint64:
    """A per-seed, per-purpose 64-bit constant added to keys before mixing."""
    return np.uint64(mix_int(mix_int(seed) ^ (purpose * 0x9E3779B97F4A7C15)))


def hex_bytes(values: np.ndarray) -> np.ndarray:
    """Each uint64 as 16 lowercase hex digits: an (n, 16) uint8 matrix, big-endian order."""
    raw = np.asarray(values, dtype=np.uint64).astype(">u8").view(np.uint8).reshape(-1, 8)
    out = np.empty((raw.shape[0], 16), dtype=np.uint8)
    out[:, 0::2] = _HEX[raw >> 4]
    out[:, 1::2] = _HEX[raw & 15]
    return out


def fixed_width_strings(matrix: np.ndarray) -> pa.StringArray:
    """An Arrow string array whose i-th value is row i of an (n, width) ASCII byte matrix."""
    rows, width = matrix.shape
    offsets = np.arange(0, (rows + 1) * width, width, dtype=np.int32)
    data = np.ascontiguousarray(matrix, dtype=np.uint8)
    return pa.Array.from_buffers(pa.string(), rows, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def hex_ids(keys: np.ndarray, salt: np.uint64) -> tuple[np.ndarray, pa.StringArray]:
    """Mixed 64-bit ids of ``keys`` and their 16-character hex strings (same order)."""
    with np.errstate(over="ignore"):
        mixed = mix64(np.asarray(keys, dtype=np.uint64) + salt)
    return mixed, fixed_width_strings(hex_bytes(mixed))


def uuid_strings(keys: np.ndarray, salt: np.uint64) -> pa.StringArray:
    """UUID-version-4-looking strings (36 characters), one per distinct key."""
    return fixed_width_strings(uuid_bytes(keys, salt))


def uuid_bytes(keys: np.ndarray, salt: np.uint64) -> np.ndarray:
    """UUID-version-4-looking strings as an (n, 36) byte matrix.

    The first 64 bits are a bijective mix of the key, so distinct keys never collide.
    """
    keys = np.asarray(keys, dtype=np.uint64)
    with np.errstate(over="ignore"):
        high = mix64(keys + salt)
        low = mix64(high ^ np.uint64(0xD1B54A32D192ED03))
    low = (low & np.uint64(0x3FFFFFFFFFFFFFFF)) | np.uint64(0x8000000000000000)  # RFC 4122 variant
    high_hex, low_hex = hex_bytes(high), hex_bytes(low)
    # All 16 digits of ``high`` (the bijective half) appear; the version "4" and the
    # variant digit (from ``low``) sit where RFC 4122 puts them.
    out = np.empty((keys.shape[0], 36), dtype=np.uint8)
    out[:, [8, 13, 18, 23]] = _DASH
    out[:, 0:8] = high_hex[:, 0:8]
    out[:, 9:13] = high_hex[:, 8:12]
    out[:, 14] = ord("4")
    out[:, 15:18] = high_hex[:, 12:15]
    out[:, 19] = low_hex[:, 0]
    out[:, 20] = high_hex[:, 15]
    out[:, 21:23] = low_hex[:, 1:3]
    out[:, 24:36] = low_hex[:, 3:15]
    return out
