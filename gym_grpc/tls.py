"""TLS credentials of a gRPC channel, for every hop that dials out: the Python client, a remote environment, the
`grpc` model adapter."""

from __future__ import annotations

from pathlib import Path

import grpc


def tls_credentials(
    ca: str | Path | None = None, cert: str | Path | None = None, key: str | Path | None = None
) -> grpc.ChannelCredentials:
    """TLS channel credentials: a CA bundle to trust (None = the system's), and a client certificate for mTLS."""
    if (cert is None) != (key is None):
        raise ValueError("a client certificate needs both cert and key")
    return grpc.ssl_channel_credentials(
        root_certificates=Path(ca).read_bytes() if ca else None,
        private_key=Path(key).read_bytes() if key else None,
        certificate_chain=Path(cert).read_bytes() if cert else None,
    )
