"""Prompts and responses of the trainer-hosted policy (no torch here: a Hugging Face tokenizer is all it needs).

- **Prompts** are the tokenizer's chat template rendered with the request's tools; a template without a tools branch
  (SmolLM2's drops them silently) is replaced by Qwen2.5's tool template (both are ChatML).
- **Token-exact turns**: when the request's input holds an earlier turn of this policy with its token data (the agent
  sends every output back), the new prompt is that turn's `prompt_token_ids + generation_token_ids` followed by the
  tokens of what the template puts after it (tool outputs, the next assistant header). The text is never re-tokenised,
  so turn k+1's prompt begins with turn k's prompt + generation by construction. When the template's rendering does
  not extend the earlier turn's text (a template that rewrites history), the whole prompt is rendered afresh.
- **Tool calls**: Hermes / Qwen `<tool_call>{json}</tool_call>` blocks, or a reply that is nothing but one bare JSON
  object naming an offered tool (```json fences allowed).
"""

from __future__ import annotations

import json
import logging
import re
import time
import uuid
from dataclasses import dataclass
from typing import Any

from gym_grpc.models.chat_template import QWEN25_TOOLS_TEMPLATE, ParsedCall, chat_messages, parse_tool_calls, tool_specs
from gym_grpc.protocol.types import (
    FunctionCall,
    IncompleteDetails,
    Item,
    Message,
    OutputText,
    Reasoning,
    Response,
    ResponseCreateParams,
    Usage,
)

log = logging.getLogger(__name__)
_FENCE = re.compile(r"^```(?:json)?\s*(.*?)\s*```$", re.S)


@dataclass(frozen=True)
class Generation:
    """One sampled turn: the exact prompt, every sampled token (the stop token included), their log-probs."""

    prompt_ids: list[int]
    token_ids: list[int]
    log_probs: list[float]
    text: str  # the generated text without the stop token
    finished: bool  # ended by a stop token, not by the token limit


class Renderer:
    """Chat template rendering and tokenisation for one tokenizer."""

    def __init__(self, tokenizer: Any, *, system_hint: str | None = None) -> None:
        self.tokenizer = tokenizer
        self.system_hint = system_hint
        source = getattr(tokenizer, "chat_template", None)
        self.template: str | None = None if isinstance(source, str) and "tools" in source else QWEN25_TOOLS_TEMPLATE
        stops = {tokenizer.eos_token_id}
        im_end = tokenizer.convert_tokens_to_ids("<|im_end|>")
        if isinstance(im_end, int) and im_end != tokenizer.unk_token_id:
            stops.add(im_end)
        self.stop_ids: list[int] = sorted(i for i in stops if isinstance(i, int))
        self.vocab_size = len(tokenizer)

    def render(self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None, *, prompt: bool) -> str:
        text = self.tokenizer.apply_chat_template(
            messages, tools=tools, chat_template=self.template, add_generation_prompt=prompt, tokenize=False
        )
        return str(text)

    def encode(self, text: str) -> list[int]:
        return [int(t) for t in self.tokenizer(text, add_special_tokens=False)["input_ids"]]

    def decode(self, ids: list[int]) -> str:
        return str(self.tokenizer.decode(ids, skip_special_tokens=False))

    def prompt_ids(self, params: ResponseCreateParams) -> list[int]:
        """The prompt's token ids (token-exact after an earlier turn of this policy, see the module docstring)."""
        tools = tool_specs(_offered(params)) or None
        full = self.render(chat_messages(params, self.system_hint), tools, prompt=True)
        continued = self._continue(params, tools, full)
        return continued if continued is not None else self.encode(full)

    def _continue(
        self, params: ResponseCreateParams, tools: list[dict[str, Any]] | None, full: str
    ) -> list[int] | None:
        items = params.items
        last = next((i for i in range(len(items) - 1, -1, -1) if _has_turn_tokens(items[i])), None)
        if last is None:
            return None
        turn = items[last]
        assert isinstance(turn, Message | FunctionCall | Reasoning)
        prompt, generated = list(turn.prompt_token_ids or []), list(turn.generation_token_ids or [])
        if not generated or generated[-1] not in self.stop_ids or not all(0 <= t < self.vocab_size for t in prompt):
            return None
        end = last + 1  # the turn's other items (tool calls after its text) carry no token data of their own
        while end < len(items) and _is_generated(items[end]) and not _has_turn_tokens(items[end]):
            end += 1
        upto = params.model_copy(update={"input": items[:end]})
        head = self.render(chat_messages(upto, self.system_hint), tools, prompt=False)
        stop_text = self.decode(generated[-1:])
        cut = head.rfind(stop_text)
        if cut < 0 or not full.startswith(head):
            log.warning("the chat template does not extend the earlier turn; the prompt is rendered afresh")
            return None
        bridge = head[cut + len(stop_text) :]
        return prompt + generated + self.encode(bridge + full[len(head) :])

    def response(self, gen: Generation, params: ResponseCreateParams, label: str) -> Response:
        """The Response of one generation: the first item carries the turn's token data."""
        names = [t.name for t in _offered(params)]
        content, calls = parse_calls(gen.text, names) if names else (gen.text, [])
        status = "completed" if gen.finished else "incomplete"
        tokens: dict[str, Any] = {
            "prompt_token_ids": gen.prompt_ids,
            "generation_token_ids": gen.token_ids,
            "generation_log_probs": gen.log_probs,
        }
        items: list[Item] = []
        if content or not calls:
            text = OutputText(text=content, annotations=[])
            items.append(
                Message(type="message", id=_new_id("msg"), role="assistant", status=status, content=[text], **tokens)
            )
            tokens = {}
        for call in calls:
            items.append(
                FunctionCall(
                    call_id=_new_id("call"), name=call.name, arguments=call.arguments, id=_new_id("fc"),
                    status="completed", **tokens,
                )
            )  # fmt: skip
            tokens = {}
        n_in, n_out = len(gen.prompt_ids), len(gen.token_ids)
        return Response(
            id=_new_id("resp"),
            created_at=time.time(),
            model=label,
            status=status,
            output=items,
            usage=Usage(input_tokens=n_in, output_tokens=n_out, total_tokens=n_in + n_out),
            incomplete_details=None if gen.finished else IncompleteDetails(reason="max_output_tokens"),
        )


def parse_calls(text: str, names: list[str]) -> tuple[str, list[ParsedCall]]:
    """The text outside tool calls and the calls: `<tool_call>` blocks, else a reply that is one bare JSON object
    {"name": <an offered tool>, "arguments": {...}}."""
    content, calls = parse_tool_calls(text)
    if calls:
        return content, calls
    body = text.strip()
    fenced = _FENCE.match(body)
    body = fenced.group(1) if fenced else body
    if not body.startswith("{"):
        return text, []
    try:
        obj, end = json.JSONDecoder().raw_decode(body)
    except ValueError:
        return text, []
    if body[end:].strip() or not isinstance(obj, dict) or obj.get("name") not in names:
        return text, []
    arguments = obj.get("arguments", obj.get("parameters", {}))
    return "", [ParsedCall(obj["name"], arguments if isinstance(arguments, str) else json.dumps(arguments))]


def _offered(params: ResponseCreateParams) -> list[Any]:
    """The function tools the model may call (none under tool_choice "none")."""
    return [] if params.tool_choice == "none" else params.function_tools


def _is_generated(item: Item) -> bool:
    return isinstance(item, FunctionCall | Reasoning) or (isinstance(item, Message) and item.role == "assistant")


def _has_turn_tokens(item: Item) -> bool:
    return (
        _is_generated(item)
        and isinstance(item, Message | FunctionCall | Reasoning)
        and item.has_tokens
        and item.prompt_token_ids is not None
    )


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"
