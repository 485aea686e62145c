"""Adapter for OpenAI-compatible Chat Completions servers (vLLM, SGLang, llama.cpp's server): `POST
{base_url}/chat/completions`, with token ids and log-probs for RL trainers when `return_token_ids` is on.

A context-length error from the server (HTTP 400 naming the context length) becomes an incomplete response with no
output, so the agent stops cleanly and the episode is still scored; any other failure is a ModelError.
"""

from __future__ import annotations

import itertools
import logging
import re
from typing import Any

from pydantic import ValidationError

from gym_grpc.errors import ModelError
from gym_grpc.models.chat_convert import ChatOptions, from_chat_completion, to_chat_body
from gym_grpc.models.http import HttpModel, HttpStatusError
from gym_grpc.protocol.types import IncompleteDetails, Response, ResponseCreateParams

log = logging.getLogger(__name__)
_CONTEXT_LENGTH = re.compile(r"context length|context_length|maximum context|too many tokens|prompt is too long", re.I)
_ids = itertools.count()


class ChatCompletionsModel(HttpModel):
    def __init__(
        self,
        name: str,
        *,
        model: str | None = None,
        extra_body: dict[str, Any] | None = None,
        developer_as_system: bool = False,
        return_token_ids: bool = False,
        **kw: Any,
    ) -> None:
        super().__init__(name, **kw)
        self.model = model
        self.extra_body = extra_body or {}
        self.options = ChatOptions(developer_as_system=developer_as_system, return_token_ids=return_token_ids)
        self._warned_no_tokens = False

    async def create(self, params: ResponseCreateParams, *, sticky_key: str | None = None) -> Response:
        body = to_chat_body(self.capped(params), self.model, self.options)
        body.update(self.extra_body)
        response_id = f"{next(_ids)}"
        try:
            raw = await self.post_json("/chat/completions", body, sticky_key=sticky_key)
        except HttpStatusError as exc:
            if exc.status == 400 and _CONTEXT_LENGTH.search(exc.message):
                log.info("%s: context length exceeded; ending the episode as incomplete", self.name)
                return Response(
                    id=f"resp_{response_id}",
                    model=self.model,
                    status="incomplete",
                    output=[],
                    incomplete_details=IncompleteDetails(reason="max_output_tokens"),
                )
            raise
        if not raw.get("choices"):
            raise ModelError(f"{self.name}: the completion has no choices")
        try:
            response = from_chat_completion(raw, response_id)
        except (ValidationError, KeyError, TypeError) as exc:
            raise ModelError(f"{self.name}: the completion does not match the Chat Completions API: {exc}") from exc
        missing = self.options.return_token_ids and response.output and not _has_tokens(response)
        if missing and not self._warned_no_tokens:
            log.warning("%s: the server returned no token ids/log-probs; rollouts will carry none", self.name)
            self._warned_no_tokens = True
        return response


def _has_tokens(response: Response) -> bool:
    first = response.output[0]
    return getattr(first, "generation_token_ids", None) is not None
