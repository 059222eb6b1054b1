"""Request, response, stream-chunk and tool values shared by every layer.

The canonical message format is OpenAI-style chat messages. Values are validated once, when
they are built from user input; the runtime passes them between actors without copying and
never mutates them.
"""

from __future__ import annotations

import json
from enum import Enum
from typing import Any, Literal

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    field_validator,
    model_validator,
)

__all__ = [
    "ProviderType",
    "ProviderCapability",
    "FinishReason",
    "MCPTool",
    "FunctionCall",
    "MessageToolCall",
    "TextPart",
    "ImageURL",
    "ImagePart",
    "Message",
    "AIRequest",
    "ToolCall",
    "ToolCallDelta",
    "Usage",
    "AIResponse",
    "StreamChunk",
    "ProviderSelection",
]


class ProviderType(str, Enum):
    """The wire protocol a provider speaks."""

    ANTHROPIC = "anthropic"
    OPENAI = "openai"
    GOOGLE = "google"
    OPENAI_COMPATIBLE = "openai_compatible"


class ProviderCapability(str, Enum):
    """What a model can do; the catalog lists these per model."""

    TEXT = "text"
    STREAMING = "streaming"
    TOOLS = "tools"
    PARALLEL_TOOLS = "parallel_tools"
    VISION = "vision"
    JSON_MODE = "json_mode"
    SYSTEM_PROMPT = "system_prompt"
    REASONING = "reasoning"


FinishReason = Literal["stop", "length", "tool_calls", "content_filter", "error"]

_FROZEN = ConfigDict(frozen=True, extra="forbid")
MAX_SCHEMA_DEPTH = 128  # JSON levels in a tool's inputSchema


class MCPTool(BaseModel):
    """An MCP tool definition (``inputSchema`` as MCP spells it; ``input_schema`` accepted)."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    name: str = Field(min_length=1, max_length=128)
    description: str = ""
    inputSchema: dict[str, Any] = Field(
        default_factory=lambda: {"type": "object", "properties": {}},
        validation_alias=AliasChoices("inputSchema", "input_schema", "parameters"),
    )

    @field_validator("description", mode="before")
    @classmethod
    def _none_description(cls, value: Any) -> Any:
        return "" if value is None else value

    @field_validator("inputSchema")
    @classmethod
    def _bounded_depth(cls, value: dict[str, Any]) -> dict[str, Any]:
        # Real tool schemas nest a handful of levels; a pathological one would blow the
        # stack in every translator. Walk iteratively so the check itself cannot.
        stack: list[tuple[Any, int]] = [(value, 1)]
        while stack:
            node, depth = stack.pop()
            if depth > MAX_SCHEMA_DEPTH:
                raise ValueError(f"nested deeper than {MAX_SCHEMA_DEPTH} levels")
            children = node.values() if isinstance(node, dict) else node
            stack.extend((child, depth + 1) for child in children if isinstance(child, dict | list))
        return value


# --- messages ------------------------------------------------------------------------------


class FunctionCall(BaseModel):
    """The ``function`` member of an OpenAI-style tool call: arguments are a JSON string."""

    model_config = _FROZEN

    name: str = Field(min_length=1)
    arguments: str = "{}"

    @field_validator("arguments", mode="before")
    @classmethod
    def _dict_arguments(cls, value: Any) -> Any:
        # Accept a dict for convenience; the canonical form is the JSON string OpenAI sends.
        if isinstance(value, dict):
            return json.dumps(value, separators=(",", ":"))
        return value


class MessageToolCall(BaseModel):
    """A tool call inside an assistant message (OpenAI shape).

    ``provider_data`` carries provider-opaque values that must round-trip unchanged, e.g.
    ``{"thoughtSignature": "..."}`` for Gemini.
    """

    model_config = _FROZEN

    id: str = Field(min_length=1)
    type: Literal["function"] = "function"
    function: FunctionCall
    provider_data: dict[str, Any] | None = None


class TextPart(BaseModel):
    model_config = _FROZEN

    type: Literal["text"] = "text"
    text: str


class ImageURL(BaseModel):
    model_config = _FROZEN

    url: str = Field(min_length=1)
    detail: Literal["auto", "low", "high"] | None = None


class ImagePart(BaseModel):
    """An image as a URL or a ``data:<mime>;base64,<data>`` URL."""

    model_config = _FROZEN

    type: Literal["image_url"] = "image_url"
    image_url: ImageURL


ContentPart = TextPart | ImagePart


class Message(BaseModel):
    """One OpenAI-style chat message."""

    model_config = _FROZEN

    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[ContentPart] | None = None
    name: str | None = None
    tool_calls: tuple[MessageToolCall, ...] | None = None
    tool_call_id: str | None = None
    provider_data: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _check_role_fields(self) -> Message:
        if self.role == "tool":
            if not self.tool_call_id:
                raise ValueError("a 'tool' message needs 'tool_call_id'")
        elif self.tool_call_id is not None:
            raise ValueError(
                f"'tool_call_id' is only allowed on 'tool' messages, not '{self.role}'"
            )
        if self.tool_calls and self.role != "assistant":
            raise ValueError("'tool_calls' is only allowed on 'assistant' messages")
        if self.role in ("system", "developer", "user") and self.content is None:
            raise ValueError(f"a '{self.role}' message needs 'content'")
        if self.role == "assistant" and self.content is None and not self.tool_calls:
            raise ValueError("an 'assistant' message needs 'content' or 'tool_calls'")
        return self

    def text(self) -> str:
        """The message's text, with image parts left out."""
        if self.content is None:
            return ""
        if isinstance(self.content, str):
            return self.content
        return "".join(part.text for part in self.content if isinstance(part, TextPart))

    def has_images(self) -> bool:
        return isinstance(self.content, list) and any(
            isinstance(part, ImagePart) for part in self.content
        )


class AIRequest(BaseModel):
    """A chat request in the router's one format."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    model: str | None = None
    messages: tuple[Message, ...]
    tools: tuple[MCPTool, ...] = ()
    tool_choice: str | None = None
    max_tokens: int | None = Field(default=None, gt=0)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    stop: str | tuple[str, ...] | None = None
    stream: bool = False
    budget_limit: float | None = Field(default=None, ge=0)
    metadata: dict[str, Any] = Field(default_factory=dict)

    @field_validator("messages")
    @classmethod
    def _non_empty(cls, value: tuple[Message, ...]) -> tuple[Message, ...]:
        if not value:
            raise ValueError("must contain at least one message")
        return value

    @model_validator(mode="after")
    def _check_conversation(self) -> AIRequest:
        open_calls: set[str] = set()
        for index, message in enumerate(self.messages):
            if message.role == "assistant" and message.tool_calls:
                open_calls.update(call.id for call in message.tool_calls)
            elif message.role == "tool" and message.tool_call_id not in open_calls:
                raise ValueError(
                    f"messages[{index}].tool_call_id: '{message.tool_call_id}' answers no "
                    "earlier assistant tool call"
                )
        if not any(m.role in ("user", "assistant", "tool") for m in self.messages):
            raise ValueError("messages: needs at least one user message, not only system ones")
        names = [tool.name for tool in self.tools]
        if len(set(names)) != len(names):
            raise ValueError("tools: tool names must be unique")
        choice = self.tool_choice
        if choice not in (None, "auto", "none", "required") and choice not in names:
            raise ValueError(
                f"tool_choice: '{choice}' is neither auto/none/required nor the name of a tool"
            )
        return self

    def has_images(self) -> bool:
        return any(message.has_images() for message in self.messages)

    def with_tools(self, tools: list[MCPTool] | tuple[MCPTool, ...] | None) -> AIRequest:
        """This request with ``tools`` added (the manager's ``tools=`` argument)."""
        if not tools:
            return self
        return self.model_copy(update={"tools": self.tools + tuple(tools)})


# --- responses -----------------------------------------------------------------------------


class ToolCall(BaseModel):
    """A tool call the model made, with parsed arguments."""

    model_config = _FROZEN

    id: str
    name: str
    arguments: dict[str, Any] = Field(default_factory=dict)
    provider_data: dict[str, Any] | None = None

    def to_message_tool_call(self) -> MessageToolCall:
        return MessageToolCall(
            id=self.id,
            function=FunctionCall(name=self.name, arguments=json.dumps(self.arguments)),
            provider_data=self.provider_data,
        )


class ToolCallDelta(BaseModel):
    """A piece of a streamed tool call; ``index`` is stable across the whole stream."""

    model_config = _FROZEN

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""
    provider_data: dict[str, Any] | None = None


class Usage(BaseModel):
    """Token counts as billed. ``input_tokens`` includes ``cached_input_tokens``."""

    model_config = _FROZEN

    input_tokens: int = Field(default=0, ge=0)
    output_tokens: int = Field(default=0, ge=0)
    cached_input_tokens: int = Field(default=0, ge=0)
    total_tokens: int = Field(default=0, ge=0)

    @model_validator(mode="after")
    def _fill_total(self) -> Usage:
        if not self.total_tokens and (self.input_tokens or self.output_tokens):
            object.__setattr__(self, "total_tokens", self.input_tokens + self.output_tokens)
        return self


class AIResponse(BaseModel):
    """A complete answer from one provider."""

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    content: str = ""
    tool_calls: tuple[ToolCall, ...] = ()
    finish_reason: FinishReason = "stop"
    usage: Usage = Field(default_factory=Usage)
    cost: float = 0.0
    provider: ProviderType | None = None
    provider_name: str = ""
    model: str = ""
    latency_ms: float = 0.0
    request_id: str | None = None
    raw: dict[str, Any] | None = None
    provider_data: dict[str, Any] | None = None

    def to_message(self) -> dict[str, Any]:
        """The assistant message to append for the next turn (OpenAI shape)."""
        message: dict[str, Any] = {"role": "assistant", "content": self.content or None}
        if self.tool_calls:
            message["tool_calls"] = [
                call.to_message_tool_call().model_dump(exclude_none=True)
                for call in self.tool_calls
            ]
        if self.provider_data:
            message["provider_data"] = self.provider_data
        return message


class StreamChunk(BaseModel):
    """One piece of a streamed answer.

    The final chunk has ``is_complete=True`` with ``finish_reason``, ``usage`` and ``cost``.
    An error chunk has ``is_complete=True``, ``finish_reason="error"`` and ``error`` set; a
    stream never ends without one of the two.
    """

    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    content: str | None = None
    tool_call_deltas: tuple[ToolCallDelta, ...] = ()
    is_complete: bool = False
    finish_reason: FinishReason | None = None
    usage: Usage | None = None
    cost: float | None = None
    error: str | None = None
    error_type: str | None = None
    provider: ProviderType | None = None
    provider_name: str | None = None
    model: str | None = None
    request_id: str | None = None
    # On the final chunk: provider-opaque data for the next turn (Gemini's text thoughtSignature).
    provider_data: dict[str, Any] | None = None


class ProviderSelection(BaseModel):
    """Constraints on which providers may serve a request."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    required_capabilities: tuple[ProviderCapability, ...] = ()
    preferred_providers: tuple[str, ...] = ()
    exclude_providers: tuple[str, ...] = ()
    max_cost_per_request: float | None = Field(default=None, ge=0)
    require_streaming: bool = False
    require_tools: bool = False

    @field_validator("preferred_providers", "exclude_providers", mode="before")
    @classmethod
    def _provider_names(cls, value: Any) -> Any:
        # Accept ProviderType members as well as instance names.
        if isinstance(value, list | tuple):
            return tuple(v.value if isinstance(v, ProviderType) else v for v in value)
        return value
