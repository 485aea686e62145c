"""Domain types of the Responses-API data model: pydantic models whose fields are the JSON keys users know.

Every model keeps unknown keys (`extra="allow"`) and dumps only the keys that were set (`to_json`), so a JSON object
validated here and dumped again is unchanged. Items and parts of types the contract does not model validate as
`RawItem` / `RawPart` and travel verbatim.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, ConfigDict, Discriminator, Field, Tag, model_validator

Role = Literal["user", "assistant", "system", "developer"]
ItemStatus = Literal["in_progress", "completed", "incomplete"]
ResponseStatus = Literal["completed", "incomplete", "failed", "in_progress", "cancelled", "queued"]


class JsonModel(BaseModel):
    """A JSON object with typed keys; unknown keys are kept."""

    model_config = ConfigDict(extra="allow")

    def to_json(self) -> dict[str, Any]:
        """The JSON object: the keys that were set, unknown keys included."""
        return self.model_dump(mode="json", exclude_unset=True)


class _TypedModel(JsonModel):
    """A JSON object with a "type" discriminator that is always written, also when left at its default."""

    type: str

    @model_validator(mode="after")
    def _always_write_type(self) -> Self:
        self.model_fields_set.add("type")
        return self


# --- content parts -------------------------------------------------------------------------------------------------


class InputText(_TypedModel):
    type: Literal["input_text"] = "input_text"
    text: str


class OutputText(_TypedModel):
    type: Literal["output_text"] = "output_text"
    text: str
    annotations: list[Any] = Field(default_factory=list)  # pass annotations=[] when building one to write it


class Refusal(_TypedModel):
    type: Literal["refusal"] = "refusal"
    refusal: str


class RawPart(_TypedModel):
    """A content part of a type the contract does not model (for example "input_image")."""


def _part_tag(value: Any) -> str:
    kind = value.get("type") if isinstance(value, dict) else getattr(value, "type", None)
    return kind if kind in ("input_text", "output_text", "refusal") else "raw"


ContentPart = Annotated[
    Annotated[InputText, Tag("input_text")]
    | Annotated[OutputText, Tag("output_text")]
    | Annotated[Refusal, Tag("refusal")]
    | Annotated[RawPart, Tag("raw")],
    Discriminator(_part_tag),
]


# --- items ---------------------------------------------------------------------------------------------------------


class TokenFields(BaseModel):
    """Token data of a generated item (NeMo Gym's training item keys), aligned 1:1 when present."""

    prompt_token_ids: list[int] | None = None
    generation_token_ids: list[int] | None = None
    generation_log_probs: list[float] | None = None
    policy_version: int | None = None  # the policy version that generated the item (StreamRollouts)

    @model_validator(mode="after")
    def _aligned(self) -> Self:
        ids, logps = self.generation_token_ids, self.generation_log_probs
        if (ids is None) != (logps is None) or (ids is not None and logps is not None and len(ids) != len(logps)):
            raise ValueError("generation_token_ids and generation_log_probs must be given together, 1:1")
        return self

    @property
    def has_tokens(self) -> bool:
        return self.generation_token_ids is not None


class Message(JsonModel, TokenFields):
    """A message item; `type` is None in the short form {"role": ..., "content": ...}."""

    type: Literal["message"] | None = None
    id: str | None = None
    role: Role
    content: str | list[ContentPart]
    status: ItemStatus | None = None

    @property
    def text(self) -> str:
        """The message's text: the string content, or its text parts joined."""
        if isinstance(self.content, str):
            return self.content
        return "".join(p.text for p in self.content if isinstance(p, (InputText, OutputText)))


class FunctionCall(_TypedModel, TokenFields):
    type: Literal["function_call"] = "function_call"
    id: str | None = None
    call_id: str
    name: str
    arguments: str
    status: ItemStatus | None = None


class FunctionCallOutput(_TypedModel):
    type: Literal["function_call_output"] = "function_call_output"
    id: str | None = None
    call_id: str
    output: str | list[Any]
    status: ItemStatus | None = None


class SummaryText(_TypedModel):
    type: Literal["summary_text"] = "summary_text"
    text: str


class ReasoningText(_TypedModel):
    type: Literal["reasoning_text"] = "reasoning_text"
    text: str


class Reasoning(_TypedModel, TokenFields):
    type: Literal["reasoning"] = "reasoning"
    id: str | None = None
    summary: list[SummaryText] = Field(default_factory=list)
    content: list[ReasoningText] | None = None
    encrypted_content: str | None = None
    status: ItemStatus | None = None

    @model_validator(mode="after")
    def _always_write_summary(self) -> Self:
        self.model_fields_set.add("summary")
        return self


class RawItem(_TypedModel):
    """An item of a type the contract does not model (for example "web_search_call")."""


def _item_tag(value: Any) -> str:
    if isinstance(value, dict):
        kind = value.get("type")
        if kind is None and "role" in value:
            return "message"
    else:
        kind = getattr(value, "type", None)
        if kind is None and isinstance(value, Message):
            return "message"
    return kind if kind in ("message", "function_call", "function_call_output", "reasoning") else "raw"


Item = Annotated[
    Annotated[Message, Tag("message")]
    | Annotated[FunctionCall, Tag("function_call")]
    | Annotated[FunctionCallOutput, Tag("function_call_output")]
    | Annotated[Reasoning, Tag("reasoning")]
    | Annotated[RawItem, Tag("raw")],
    Discriminator(_item_tag),
]


# --- tools and params ----------------------------------------------------------------------------------------------


class FunctionTool(_TypedModel):
    type: Literal["function"] = "function"
    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None


class RawTool(_TypedModel):
    """A tool of a type the contract does not model (for example "web_search")."""


Tool = Annotated[
    Annotated[FunctionTool, Tag("function")] | Annotated[RawTool, Tag("raw")],
    Discriminator(lambda v: "function" if (v.get("type") if isinstance(v, dict) else v.type) == "function" else "raw"),
]


class ReasoningParams(JsonModel):
    effort: str | None = None
    summary: str | None = None


class ResponseCreateParams(JsonModel):
    """`responses_create_params`: what the agent sends the model (its input grows over an episode)."""

    input: str | list[Item] = Field(default_factory=list)
    instructions: str | None = None
    tools: list[Tool] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = Field(default=None, ge=1)
    model: str | None = None
    metadata: dict[str, str] | None = None
    reasoning: ReasoningParams | None = None
    seed: int | None = None

    @property
    def items(self) -> list[Item]:
        """The input as items (a plain-string input is one user message)."""
        if isinstance(self.input, str):
            return [Message(role="user", content=self.input)]
        return list(self.input)

    @property
    def function_tools(self) -> list[FunctionTool]:
        return [t for t in self.tools or [] if isinstance(t, FunctionTool)]


# --- responses -----------------------------------------------------------------------------------------------------


class InputTokensDetails(JsonModel):
    cached_tokens: int = 0
    cache_write_tokens: int | None = None


class OutputTokensDetails(JsonModel):
    reasoning_tokens: int = 0


class Usage(JsonModel):
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    input_tokens_details: InputTokensDetails | None = None
    output_tokens_details: OutputTokensDetails | None = None

    @model_validator(mode="after")
    def _always_write_counts(self) -> Self:
        self.model_fields_set.update(("input_tokens", "output_tokens", "total_tokens"))
        return self

    def __add__(self, other: Usage) -> Usage:
        """The sum; the details objects are summed when either side has one."""
        total = Usage(
            input_tokens=self.input_tokens + other.input_tokens,
            output_tokens=self.output_tokens + other.output_tokens,
            total_tokens=self.total_tokens + other.total_tokens,
        )
        mine, theirs = self.input_tokens_details, other.input_tokens_details
        if mine is not None or theirs is not None:
            cached = (mine.cached_tokens if mine else 0) + (theirs.cached_tokens if theirs else 0)
            writes = [
                d.cache_write_tokens for d in (mine, theirs) if d is not None and d.cache_write_tokens is not None
            ]
            total.input_tokens_details = InputTokensDetails(cached_tokens=cached)
            if writes:
                total.input_tokens_details.cache_write_tokens = sum(writes)
        out_mine, out_theirs = self.output_tokens_details, other.output_tokens_details
        if out_mine is not None or out_theirs is not None:
            reasoning = (out_mine.reasoning_tokens if out_mine else 0) + (
                out_theirs.reasoning_tokens if out_theirs else 0
            )
            total.output_tokens_details = OutputTokensDetails(reasoning_tokens=reasoning)
        return total


class IncompleteDetails(JsonModel):
    reason: str


class ResponseError(JsonModel):
    code: str
    message: str


class Response(JsonModel):
    """A model response; in a rollout, every output item of the episode."""

    id: str
    object: Literal["response"] | None = None
    created_at: float | None = None
    model: str | None = None
    status: ResponseStatus | None = None
    output: list[Item] = Field(default_factory=list)
    usage: Usage | None = None
    incomplete_details: IncompleteDetails | None = None
    error: ResponseError | None = None
    # What the request set, echoed as the API does (see `protocol.complete`).
    instructions: str | None = None
    tools: list[Tool] | None = None
    tool_choice: Any = None
    parallel_tool_calls: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    max_output_tokens: int | None = None

    @model_validator(mode="after")
    def _always_write_output(self) -> Self:
        self.model_fields_set.update(("id", "output"))
        return self

    @property
    def function_calls(self) -> list[FunctionCall]:
        return [i for i in self.output if isinstance(i, FunctionCall)]

    @property
    def final_answer(self) -> str:
        """The text of the last assistant message that comes after every tool output: the agent's final answer
        ("" when the episode ended on a tool call or its output)."""
        for item in reversed(self.output):
            if isinstance(item, Message) and item.role == "assistant":
                return item.text
            if isinstance(item, FunctionCallOutput):
                return ""
        return ""

    @property
    def output_text(self) -> str:
        """The text of the assistant messages, joined (like the OpenAI SDK's `output_text`)."""
        return "".join(i.text for i in self.output if isinstance(i, Message) and i.role == "assistant")
