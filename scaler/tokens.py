"""Bearer tokens for OTLP pushes, each optionally bound to one namespace.

File format: one token per line, optionally followed by whitespace and a namespace; `#` starts a
comment. A token bound to namespace X may only write series whose namespace is X.
"""

from __future__ import annotations

import hmac
import logging
import os
from collections.abc import Mapping
from dataclasses import dataclass

logger = logging.getLogger(__name__)


class TokenFileError(ValueError):
    """A token file that cannot be used; the message names the line."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who pushed: the token's label (never the token itself) and the namespace it may write, if bound."""

    name: str
    namespace: str | None = None


def parse_tokens(text: str) -> dict[str, str | None]:
    tokens: dict[str, str | None] = {}
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split()
        if len(parts) > 2:
            raise TokenFileError(f"line {number}: expected 'TOKEN [NAMESPACE]', found {len(parts)} fields")
        token = parts[0]
        if len(token) < 16:
            raise TokenFileError(f"line {number}: token is shorter than 16 characters")
        if token in tokens:
            raise TokenFileError(f"line {number}: duplicate token")
        tokens[token] = parts[1] if len(parts) == 2 else None
    if not tokens:
        raise TokenFileError("no tokens found")
    return tokens


def authenticate(tokens: Mapping[str, str | None], header: str | None) -> Principal | None:
    """The principal for an `Authorization: Bearer ...` value, or None if it is missing or unknown."""
    if not header:
        return None
    scheme, _, presented = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not presented:
        return None
    presented = presented.strip()
    for index, (token, namespace) in enumerate(tokens.items()):
        if hmac.compare_digest(token.encode(), presented.encode()):
            return Principal(f"token-{index + 1}", namespace)
    return None


class TokenFile:
    """The token file, re-read when it changes; a broken new version keeps the old tokens in force."""

    def __init__(self, path: str) -> None:
        self.path = path
        self._stamp = self._stamp_now()
        self.tokens = self._load()

    def _stamp_now(self) -> tuple[int, int]:
        try:
            info = os.stat(self.path)
        except OSError:
            return (-1, -1)
        return (info.st_mtime_ns, info.st_size)

    def _load(self) -> dict[str, str | None]:
        try:
            with open(self.path, encoding="utf-8") as handle:
                return parse_tokens(handle.read())
        except (OSError, UnicodeDecodeError) as exc:
            raise TokenFileError(f"cannot read {self.path}: {exc}") from exc

    def refresh(self) -> bool:
        stamp = self._stamp_now()
        if stamp == self._stamp:
            return False
        self._stamp = stamp
        try:
            self.tokens = self._load()
        except TokenFileError as exc:
            logger.error("keeping the previous tokens: %s: %s", self.path, exc)
            return False
        logger.info("reloaded %d OTLP tokens from %s", len(self.tokens), self.path)
        return True
