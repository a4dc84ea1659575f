"""Server TLS for the gRPC and HTTP listeners, with optional client verification, reloaded on change.

gRPC asks for a new certificate configuration at each handshake (dynamic credentials), and each
gRPC listener compares the reload count with the one it serves; the HTTP listener swaps in a rebuilt
SSLContext from its SNI callback. Either way a renewed certificate (as
cert-manager writes it) is served from the next connection on, with no restart.
"""

from __future__ import annotations

import logging
import os
import ssl
from dataclasses import dataclass

import grpc

logger = logging.getLogger(__name__)


class TlsError(ValueError):
    """Certificate files that cannot be loaded."""


@dataclass(frozen=True, slots=True)
class TlsMaterial:
    cert: bytes
    key: bytes
    client_ca: bytes | None


class TlsFiles:
    def __init__(self, cert: str, key: str, client_ca: str | None = None) -> None:
        self.cert, self.key, self.client_ca = cert, key, client_ca
        self._stamp = self._stamp_now()
        self.material = self._read()
        self._context = self._build_context(self.material)
        self.reloads = 0

    def _paths(self) -> list[str]:
        return [p for p in (self.cert, self.key, self.client_ca) if p]

    def _stamp_now(self) -> tuple[tuple[int, int], ...]:
        stamps = []
        for path in self._paths():
            try:
                info = os.stat(path)
                stamps.append((info.st_mtime_ns, info.st_size))
            except OSError:
                stamps.append((-1, -1))
        return tuple(stamps)

    def _read(self) -> TlsMaterial:
        try:
            cert, key = _read_bytes(self.cert), _read_bytes(self.key)
            ca = _read_bytes(self.client_ca) if self.client_ca else None
        except OSError as exc:
            raise TlsError(f"cannot read TLS files: {exc}") from exc
        return TlsMaterial(cert, key, ca)

    def _build_context(self, material: TlsMaterial) -> ssl.SSLContext:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        try:
            context.load_cert_chain(self.cert, self.key)
            if material.client_ca is not None:
                context.load_verify_locations(cadata=material.client_ca.decode())
                context.verify_mode = ssl.CERT_REQUIRED
        except (ssl.SSLError, ValueError, OSError) as exc:
            raise TlsError(f"cannot load TLS files {self._paths()}: {exc}") from exc
        return context

    def refresh(self) -> bool:
        """Reload if the files changed; keep serving the old material if the new one is broken."""
        stamp = self._stamp_now()
        if stamp == self._stamp:
            return False
        try:
            material = self._read()
            context = self._build_context(material)
        except TlsError as exc:
            logger.error("keeping the previous certificate: %s", exc)
            return False
        self._stamp, self.material, self._context = stamp, material, context
        self.reloads += 1
        logger.info("reloaded TLS certificate from %s", self.cert)
        return True

    def grpc_credentials(self) -> grpc.ServerCredentials:
        def configuration(material: TlsMaterial) -> grpc.ServerCertificateConfiguration:
            return grpc.ssl_server_certificate_configuration([(material.key, material.cert)], material.client_ca)

        served = [self.reloads]  # what this listener serves; the files are shared by every listener

        def fetch() -> grpc.ServerCertificateConfiguration | None:
            # Whoever noticed the change (housekeeping, the other gRPC port, an HTTP handshake), each
            # listener switches once it sees a reload it has not served yet.
            self.refresh()
            if served[0] == self.reloads:
                return None
            served[0] = self.reloads
            return configuration(self.material)

        # grpc takes None from the fetcher as "unchanged"; its type stubs do not say so.
        return grpc.dynamic_ssl_server_credentials(
            configuration(self.material),
            fetch,  # type: ignore[arg-type]
            require_client_authentication=self.client_ca is not None,
        )

    def ssl_context(self) -> ssl.SSLContext:
        """A context for the HTTP listener that switches to the newest material at each handshake."""
        outer = self._build_context(self.material)

        def pick(connection: ssl.SSLObject, server_name: str | None, context: ssl.SSLContext) -> None:
            self.refresh()
            if self._context is not context:
                connection.context = self._context

        outer.sni_callback = pick
        return outer


def _read_bytes(path: str) -> bytes:
    with open(path, "rb") as handle:
        return handle.read()
