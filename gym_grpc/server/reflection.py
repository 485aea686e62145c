"""Server reflection that also resolves method symbols.

grpcio's reflection answers `file_containing_symbol` for services, messages and enums, but not for methods
(`gym.v1.RolloutService.CollectRollouts`): `grpcurl describe` of a method fails with "Symbol not found", where a
grpc-go server answers. This servicer resolves a method to the file of its service, as grpc-go does.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import grpc
from grpc_reflection.v1alpha import reflection, reflection_pb2_grpc


class MethodAwareReflection(reflection.aio.ReflectionServicer):
    """`ReflectionServicer` whose `file_containing_symbol` also finds `package.Service.Method`."""

    def _file_containing_symbol(self, request: Any, fully_qualified_name: str) -> Any:
        pool = self._pool  # type: ignore[attr-defined]  # grpcio-reflection's own (private) descriptor pool
        service, _, method = fully_qualified_name.rpartition(".")
        try:
            pool.FindFileContainingSymbol(fully_qualified_name)
        except KeyError:
            try:
                found = pool.FindServiceByName(service)
            except KeyError:
                found = None
            if found is not None and method in found.methods_by_name:
                fully_qualified_name = service
        return super()._file_containing_symbol(request, fully_qualified_name)  # type: ignore[misc]


def enable_server_reflection(service_names: Iterable[str], server: grpc.aio.Server) -> None:
    """Serve reflection (v1alpha, which grpcurl and grpc-cli use) for `service_names` on `server`."""
    servicer = MethodAwareReflection(tuple(service_names))
    reflection_pb2_grpc.add_ServerReflectionServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]
