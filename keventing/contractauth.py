"""Contract authentication: which records on the contract topic the controller wrote.

Reserved topics keep tenants from producing to ``<instance>.contract`` through keventing, but anything
else with write access to the cluster could: so every record the controller writes carries an HMAC-SHA256
tag, in a Kafka record header, over the topic, the key and the value (or the fact that it is a tombstone).
The value stays the contract entry's bytes, so compaction and every reader of the table work unchanged,
and a tombstone is signed like any value: a data plane applies neither an unsigned value nor an unsigned
tombstone, and the controller, following its own topic, overwrites both (``controller.contracttopic``).

The tag does not say which key made it: verification tries each configured key, so rotating is
"sign with the new key, still accept the old one" (``KEVENTING_CONTRACT_KEY=new,old``), then dropping it.
A replayed record the controller once wrote verifies; the controller repairs it like a forged one.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import struct
from collections.abc import Iterable, Sequence
from typing import Literal

TAG_HEADER = "keventing-contract-tag"
# The tag's format, so that another algorithm can be told apart later.
_TAG_PREFIX = b"hmac-sha256:"
_DOMAIN = b"keventing-contract-v1"
# Shorter keys are refused: a guessable key is no authentication.
MIN_KEY_LENGTH = 16

Rejection = Literal["unsigned", "bad-tag"]
Headers = Sequence[tuple[str, bytes]]


class ContractKeyInvalid(ValueError):
    """The configured keys cannot be used (none, or one too short)."""


def new_key() -> str:
    """A random key, as ``kev up`` and the Helm chart generate one (64 hex digits: 256 bits)."""
    return secrets.token_hex(32)


def parse_keys(text: str) -> ContractKeys:
    """Keys separated by commas or newlines (a variable or a file), the signing one first."""
    keys = [part.strip() for line in text.splitlines() for part in line.split(",")]
    keys = [key for key in keys if key]
    if not keys:
        raise ContractKeyInvalid("no key given")
    for key in keys:
        if len(key) < MIN_KEY_LENGTH:
            raise ContractKeyInvalid(f"a key is shorter than {MIN_KEY_LENGTH} characters")
    return ContractKeys([key.encode() for key in keys])


class ContractKeys:
    """The keys a contract is signed with (the first) and verified with (any of them)."""

    def __init__(self, keys: Sequence[bytes]) -> None:
        if not keys:
            raise ContractKeyInvalid("no key given")
        self.keys = list(keys)

    def headers(self, topic: str, key: str, value: bytes | None) -> list[tuple[str, bytes]]:
        """The headers of a record the controller writes: its tag."""
        return [(TAG_HEADER, _tag(self.keys[0], topic, key, value))]

    def verify(self, topic: str, key: str, value: bytes | None, headers: Headers) -> Rejection | None:
        """None when the record carries a tag one of the keys made for exactly this topic, key and value."""
        tags = [v for name, v in headers if name == TAG_HEADER]
        if not tags:
            return "unsigned"
        if len(tags) == 1 and any(
            hmac.compare_digest(tags[0], _tag(k, topic, key, value)) for k in self.keys
        ):
            return None
        return "bad-tag"


def _tag(secret: bytes, topic: str, key: str, value: bytes | None) -> bytes:
    message = hmac.new(secret, digestmod=hashlib.sha256)
    for part in _framed(_DOMAIN, topic.encode(), key.encode()):
        message.update(part)
    # A tombstone and an empty value must never share a tag.
    message.update(b"T" if value is None else b"V" + value)
    return _TAG_PREFIX + message.hexdigest().encode()


def _framed(*parts: bytes) -> Iterable[bytes]:
    """Each part with its length first, so that no two (topic, key) pairs give the same bytes."""
    for part in parts:
        yield struct.pack(">I", len(part))
        yield part
