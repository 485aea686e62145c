"""Adapter for servers that speak the OpenAI Responses API (`POST {base_url}/responses`).

Bodies follow the OpenAI SDK's shapes (`openai.types.responses`); answers are validated into
`gym_grpc.protocol.types.Response`. Transport, retries and upstream stickiness: `http.py`.
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
        body = self.capped(params).to_json()
        if self.model is not None:
            body["model"] = self.model
        body.update(self.extra_body)
        body["stream"] = False
        data = await self.post_json("/responses", body, sticky_key=sticky_key)
        try:
            return Response.model_validate(data)
        except ValidationError as exc:
            raise ModelError(f"{self.name}: the response does not match the Responses API: {exc}") from exc
