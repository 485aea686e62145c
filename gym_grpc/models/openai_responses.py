"""Adapter for servers that speak the OpenAI Responses API (`POST {base_url}/responses`).

Bodies follow the OpenAI SDK's shapes (`openai.types.responses`); answers are validated into
`gym_grpc.protocol.types.Response` (every key of a complete Response object is kept: unknown keys as extras).
Transport, retries and upstream stickiness: `http.py`.
"""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from gym_grpc.errors import ModelError
from gym_grpc.models.http import HttpModel
from gym_grpc.protocol.types import Response, ResponseCreateParams


class OpenAIResponsesModel(HttpModel):
    """A model behind `POST /responses`."""

    def __init__(self, name: str, *, model: str | None = None, extra_body: dict[str, Any] | None = None, **kw: Any):
        super().__init__(name, **kw)
        self.model = model
        self.extra_body = extra_body or {}

    async def create(self, params: ResponseCreateParams, *, sticky_key: str | None = None) -> Response:
        # Serialised by pydantic's own JSON writer (half the CPU of model_dump + json.dumps on a weather turn).
        update: dict[str, Any] = {} if self.model is None else {"model": self.model}
        update.update(self.extra_body)
        update["stream"] = False
        body = self.capped(params).model_copy(update=update).model_dump_json(exclude_unset=True).encode()
        data = await self.post_json("/responses", body, sticky_key=sticky_key)
        try:
            return Response.model_validate(data)
        except ValidationError as exc:
            raise ModelError(f"{self.name}: the response does not match the Responses API: {exc}") from exc
