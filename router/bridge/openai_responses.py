"""The OpenAI Responses door: ``POST /v1/responses``, plain and streamed as OpenAI's semantic
events, so the ``openai`` SDK's ``client.responses`` works against the bridge by base URL
alone, with any provider behind. Stateless: nothing is stored, so ``previous_response_id`` is
refused and every turn sends its whole conversation as ``input``.

Pure translations first (a Responses body to an ``AIRequest``; an answer to a ``response``
object; the router's chunks to ``response.*`` events; a failure to OpenAI's error envelope),
then :class:`ResponsesDoor`, which runs them.
"""

from __future__ import annotations

import json
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from router.bridge.errors import BodyError, Failure, snake_case, validation_error
from router.bridge.openai_chat import failure_body as chat_failure_body
from router.bridge.streaming import Events
from router.bridge.wire import Request, Response, Route, served_by
from router.ids import random_hex
from router.models import AIRequest, AIResponse, StreamChunk, Usage

if TYPE_CHECKING:
    from router.bridge.app import BridgeApp

__all__ = [
    "ResponseEvents",
    "ResponsesDoor",
    "failure_body",
    "response_object",
    "responses_request",
]

_KNOWN = frozenset(
    {"model", "input", "instructions", "tools", "tool_choice", "max_output_tokens", "stream"}
    | {"temperature", "top_p", "metadata", "text", "reasoning", "store", "parallel_tool_calls"}
    | {"include", "user", "safety_identifier", "prompt_cache_key", "service_tier", "truncation"}
    | {"top_logprobs", "background", "max_tool_calls", "stream_options", "previous_response_id"}
    | {"conversation", "prompt", "prompt_cache_retention"}
)
_REFUSED = {
    "previous_response_id": "the bridge keeps no responses (store is always false); "
    "send the whole conversation as 'input'",
    "conversation": "conversations are not supported: the bridge keeps no state",
    "prompt": "stored prompts are not supported by the router",
    "background": "background responses are not supported by the router",
}


# --- request -------------------------------------------------------------------------------


def responses_request(body: Mapping[str, Any]) -> AIRequest:
    """A Responses body as an ``AIRequest``; :class:`BodyError` names the wrong parameter."""
    for key in body:
        if key not in _KNOWN:
            raise BodyError(f"Unknown parameter: '{key}'.", key)
        if key in _REFUSED and body[key] not in (None, False):
            raise BodyError(f"'{key}': {_REFUSED[key]}", key)
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise BodyError("Missing required parameter: 'model'.", "model")
    if "input" not in body:
        raise BodyError("Missing required parameter: 'input'.", "input")
    request: dict[str, Any] = {"model": model, "messages": []}
    instructions = body.get("instructions")
    if instructions is not None:
        if not isinstance(instructions, str):
            raise BodyError("'instructions' must be a string", "instructions")
        request["messages"].append({"role": "system", "content": instructions})
    request["messages"].extend(_input(body["input"]))
    if body.get("tools"):
        request["tools"] = _tools(body["tools"])
    if body.get("tool_choice") is not None:
        request["tool_choice"] = _tool_choice(body["tool_choice"])
    maximum = body.get("max_output_tokens")
    if maximum is not None:
        if isinstance(maximum, bool) or not isinstance(maximum, int) or maximum < 16:
            raise BodyError(
                "Invalid 'max_output_tokens': integer below minimum value 16.", "max_output_tokens"
            )
        request["max_tokens"] = maximum
    for name in ("temperature", "top_p"):
        if body.get(name) is not None:
            request[name] = body[name]
    if body.get("metadata") is not None:
        request["metadata"] = body["metadata"]
    request["stream"] = body.get("stream") is True
    response_format = _text_format(body.get("text"))
    if response_format is not None:
        request["response_format"] = response_format
    reasoning = _reasoning(body.get("reasoning"))
    if reasoning is not None:
        request["reasoning"] = reasoning
    for name, key in (
        ("parallel_tool_calls", "parallel_tool_calls"),
        ("prompt_cache_key", "prompt_cache_key"),
        ("prompt_cache_retention", "prompt_cache_retention"),
        ("service_tier", "service_tier"),
        ("safety_identifier", "user"),
        ("user", "user"),
    ):
        if body.get(name) is not None:
            request[key] = body[name]
    try:
        return AIRequest.model_validate(request)
    except ValidationError as error:
        raise validation_error(error) from None


def _text_format(text: Any) -> dict[str, Any] | None:
    """``text.format`` as the router's ``response_format`` (None for plain text)."""
    if text is None:
        return None
    fmt = text.get("format") if isinstance(text, dict) else None
    if fmt is None or (isinstance(fmt, dict) and fmt.get("type") == "text"):
        return None
    if isinstance(fmt, dict) and fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if isinstance(fmt, dict) and fmt.get("type") == "json_schema":
        if not isinstance(fmt.get("schema"), dict):
            raise BodyError("Missing required parameter: 'text.format.schema'.", "text.format")
        schema = {"name": fmt.get("name") or "response", "schema": fmt["schema"]}
        if fmt.get("strict") is not None:
            schema["strict"] = fmt["strict"]
        if fmt.get("description"):
            schema["description"] = fmt["description"]
        return {"type": "json_schema", "json_schema": schema}
    raise BodyError(
        "Invalid 'text.format': expected type 'text', 'json_object' or 'json_schema'.",
        "text.format",
    )


def _reasoning(reasoning: Any) -> dict[str, Any] | None:
    """``reasoning.effort`` (and whether a ``summary`` is wanted) as the router's reasoning."""
    if reasoning is None:
        return None
    if not isinstance(reasoning, dict):
        raise BodyError("'reasoning' must be an object", "reasoning")
    summary = reasoning.get("summary") or reasoning.get("generate_summary")
    if reasoning.get("effort") is None and summary is None:
        return None
    return {"effort": reasoning.get("effort"), "include_thoughts": summary is not None}


def _input(value: Any) -> list[dict[str, Any]]:
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    if not isinstance(value, list) or not value:
        raise BodyError("'input' must be a string or a non-empty list of items", "input")
    messages: list[dict[str, Any]] = []
    for i, item in enumerate(value):
        where = f"input[{i}]"
        if not isinstance(item, dict):
            raise BodyError(f"Invalid '{where}': expected an object.", where)
        kind = item.get("type") or "message"
        if kind == "message":
            message = _message(item, where)
            last = messages[-1] if messages else None
            if last is not None and "pending" in last and message["role"] == "assistant":
                data = last.pop("pending")["provider_data"]
                message["provider_data"] = {**data, **message.get("provider_data", {})}
                messages[-1] = message
                continue
            messages.append(message)
        elif kind == "function_call":
            call = _function_call(item, where)
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant":
                if "pending" in last:
                    last["provider_data"] = last.pop("pending")["provider_data"]
                last.setdefault("tool_calls", []).append(call)  # parallel calls: one turn
                last["content"] = last["content"] or None
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        elif kind == "function_call_output":
            call_id = item.get("call_id")
            if not isinstance(call_id, str) or not call_id:
                raise BodyError(f"Missing required parameter: '{where}.call_id'.", where)
            output = _text_of(item.get("output"), f"{where}.output")
            messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
        elif kind == "reasoning":
            # Its text is not sent on; what the provider needs back (Anthropic's signed
            # thinking blocks) rides on the item and belongs to the assistant turn after it.
            if isinstance(item.get("provider_data"), dict):
                messages.append({"role": "assistant", "content": None, "pending": item})
        else:
            raise BodyError(f"Invalid '{where}.type': '{kind}' items are not supported.", where)
    # A reasoning item no assistant turn followed has nothing to attach to.
    return [message for message in messages if "pending" not in message]


def _message(item: Mapping[str, Any], where: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ("user", "system", "developer", "assistant"):
        raise BodyError(
            f"Invalid value for '{where}.role': expected user, system, developer or assistant.",
            f"{where}.role",
        )
    content = item.get("content")
    if isinstance(content, str):
        message: dict[str, Any] = {"role": role, "content": content}
    elif isinstance(content, list):
        parts = [_part(part, f"{where}.content[{j}]") for j, part in enumerate(content)]
        parts = [p for p in parts if p is not None]
        if all(p["type"] == "text" for p in parts):
            message = {"role": role, "content": "".join(p["text"] for p in parts)}
        else:
            message = {"role": role, "content": parts}
    else:
        raise BodyError(f"Missing required parameter: '{where}.content'.", f"{where}.content")
    if item.get("provider_data"):
        message["provider_data"] = item["provider_data"]
    return message


def _part(part: Any, where: str) -> dict[str, Any] | None:
    kind = part.get("type") if isinstance(part, dict) else None
    if kind in ("input_text", "output_text", "text"):
        if not isinstance(part.get("text"), str):
            raise BodyError(f"Missing required parameter: '{where}.text'.", where)
        return {"type": "text", "text": part["text"]}
    if kind == "input_image" and isinstance(part.get("image_url"), str):
        image: dict[str, Any] = {"url": part["image_url"]}
        if part.get("detail") in ("low", "high", "auto"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "refusal":
        return None
    raise BodyError(f"Invalid '{where}.type': '{kind}' content is not supported.", where)


def _text_of(value: Any, where: str) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, list):
        parts = [_part(part, f"{where}[{j}]") for j, part in enumerate(value)]
        return "".join(p["text"] for p in parts if p is not None and p["type"] == "text")
    raise BodyError(f"Invalid '{where}': expected a string or a list of content.", where)


def _function_call(item: Mapping[str, Any], where: str) -> dict[str, Any]:
    call_id, name = item.get("call_id"), item.get("name")
    if not isinstance(call_id, str) or not isinstance(name, str):
        raise BodyError(f"Missing required parameter: '{where}.call_id' or 'name'.", where)
    arguments = item.get("arguments", "{}")
    if not isinstance(arguments, str):
        raise BodyError(f"Invalid '{where}.arguments': expected a JSON string.", where)
    call: dict[str, Any] = {
        "id": call_id,
        "type": "function",
        "function": {"name": name, "arguments": arguments or "{}"},
    }
    if item.get("provider_data"):
        call["provider_data"] = item["provider_data"]
    return call


def _tools(value: Any) -> list[dict[str, Any]]:
    if not isinstance(value, list):
        raise BodyError("Invalid 'tools': expected an array.", "tools")
    tools = []
    for i, tool in enumerate(value):
        kind = tool.get("type") if isinstance(tool, dict) else None
        if kind != "function":
            raise BodyError(
                f"Invalid 'tools[{i}].type': only function tools are supported by the router "
                f"(got '{kind}').",
                f"tools[{i}].type",
            )
        if not isinstance(tool.get("name"), str) or not tool["name"]:
            raise BodyError(f"Missing required parameter: 'tools[{i}].name'.", f"tools[{i}].name")
        tools.append(
            {
                "name": tool["name"],
                "description": tool.get("description") or "",
                "inputSchema": tool.get("parameters") or {"type": "object", "properties": {}},
            }
        )
    return tools


def _tool_choice(value: Any) -> str:
    if value in ("auto", "none", "required"):
        return value
    if isinstance(value, dict) and value.get("type") == "function" and value.get("name"):
        return str(value["name"])
    raise BodyError(
        "Invalid 'tool_choice': expected 'auto', 'none', 'required' or "
        "{'type': 'function', 'name': ...}.",
        "tool_choice",
    )


# --- answer --------------------------------------------------------------------------------


def _id(prefix: str) -> str:
    return f"{prefix}_{random_hex()}"


def usage_body(usage: Usage | None) -> dict[str, Any]:
    usage = usage or Usage()
    return {
        "input_tokens": usage.input_tokens,
        "input_tokens_details": {
            "cached_tokens": usage.cached_input_tokens,
            "cache_write_tokens": 0,
        },
        "output_tokens": usage.output_tokens,
        "output_tokens_details": {"reasoning_tokens": usage.reasoning_tokens},
        "total_tokens": usage.total_tokens or usage.input_tokens + usage.output_tokens,
    }


def _text_item(item_id: str, text: str, status: str, provider_data: Any = None) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "message",
        "id": item_id,
        "status": status,
        "role": "assistant",
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}]
        if status == "completed"
        else [],
    }
    if provider_data:
        item["provider_data"] = provider_data  # send the item back as received
    return item


def _call_item(
    item_id: str, call_id: str, name: str, arguments: str, status: str, provider_data: Any
) -> dict[str, Any]:
    item: dict[str, Any] = {
        "type": "function_call",
        "id": item_id,
        "call_id": call_id,
        "name": name,
        "arguments": arguments,
        "status": status,
    }
    if provider_data:
        item["provider_data"] = provider_data  # Gemini's thought signature, for the next turn
    return item


def response_object(
    request: AIRequest,
    *,
    response_id: str,
    created: int,
    status: str,
    output: list[dict[str, Any]],
    usage: Usage | None = None,
    model: str | None = None,
    finish: str | None = None,
    error: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """A ``response`` object (the plain answer, and the snapshot streamed events carry)."""
    incomplete = {"reason": "max_output_tokens"} if finish == "length" else None
    if incomplete and status == "completed":
        status = "incomplete"
    system = next((m for m in request.messages if m.role == "system"), None)
    return {
        "id": response_id,
        "object": "response",
        "created_at": created,
        "status": status,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": system.text() if system is not None else None,
        "max_output_tokens": request.max_tokens,
        "model": model or request.model or "",
        "output": output,
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "reasoning": {
            "effort": request.reasoning.effort if request.reasoning else None,
            "summary": "auto" if request.reasoning and request.reasoning.include_thoughts else None,
        },
        "store": False,
        "temperature": request.temperature,
        "text": {"format": _format_echo(request)},
        "tool_choice": request.tool_choice or "auto",
        "tools": [
            {
                "type": "function",
                "name": tool.name,
                "description": tool.description,
                "parameters": tool.inputSchema,
                "strict": False,
            }
            for tool in request.tools
        ],
        "top_p": request.top_p,
        "truncation": "disabled",
        "usage": usage_body(usage) if status != "in_progress" else None,
        "metadata": dict(request.metadata),
    }


def _format_echo(request: AIRequest) -> dict[str, Any]:
    fmt = request.response_format
    if fmt is None or fmt.json_schema is None:
        return {"type": fmt.type if fmt is not None else "text"}
    schema = fmt.json_schema
    return {
        "type": "json_schema",
        "name": schema.name,
        "schema": schema.json_schema,
        "strict": bool(schema.strict),
        "description": schema.description,
    }


def _reasoning_item(item_id: str, text: str, provider_data: Any = None) -> dict[str, Any]:
    summary = [{"type": "summary_text", "text": text}] if text else []
    item = {"type": "reasoning", "id": item_id, "summary": summary, "status": "completed"}
    if provider_data:
        item["provider_data"] = provider_data  # Anthropic's signed thinking, for the next turn
    return item


def _split(provider_data: Any) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """(what goes on the reasoning item, what goes on the message item)."""
    data = dict(provider_data or {})
    blocks = data.pop("thinking_blocks", None)
    return ({"thinking_blocks": blocks} if blocks else None), (data or None)


def answer_output(response: AIResponse) -> list[dict[str, Any]]:
    """The ``output`` items of one answer: a message (when there is text), function calls."""
    output: list[dict[str, Any]] = []
    thinking, opaque = _split(response.provider_data)
    if response.reasoning or thinking:
        output.append(_reasoning_item(_id("rs"), response.reasoning or "", thinking))
    if response.content or not response.tool_calls:
        item = _text_item(_id("msg"), response.content, "completed", opaque)
        output.append(item)
    for call in response.tool_calls:
        arguments = json.dumps(call.arguments, ensure_ascii=False)
        item = _call_item(_id("fc"), call.id, call.name, arguments, "completed", call.provider_data)
        output.append(item)
    return output


class ResponseEvents(Events):
    """The router's chunks as the Responses stream: ``response.created``,
    ``response.in_progress``, per output item ``output_item.added`` ... ``output_item.done``
    (text: ``content_part.added``, ``output_text.delta``, ``output_text.done``,
    ``content_part.done``; calls: ``function_call_arguments.delta`` / ``.done``), then
    ``response.completed`` (or ``response.incomplete``) with usage. A failure is an ``error``
    event followed by ``response.failed``. ``response.created`` and ``response.in_progress`` go
    out as soon as a provider accepts the stream, as OpenAI sends them before any output.
    """

    opens_early = True

    def __init__(self, secrets: Any, request: AIRequest) -> None:
        super().__init__(secrets)
        self._request = request
        self._id = _id("resp")
        self._created = int(time.time())
        self._sequence = 0
        self._model: str | None = None
        self._output: list[dict[str, Any]] = []  # finished items
        self._open: dict[str, Any] | None = None  # the item being streamed
        self._calls: dict[int, dict[str, Any]] = {}  # router tool index -> open call state

    def _event(self, kind: str, **fields: Any) -> str:
        obj = {"type": kind, "sequence_number": self._sequence, **fields}
        self._sequence += 1
        return f"event: {kind}\ndata: {self.dumps(obj)}\n\n"

    def _snapshot(self, status: str, **extra: Any) -> dict[str, Any]:
        return response_object(
            self._request,
            response_id=self._id,
            created=self._created,
            status=status,
            output=list(self._output),
            model=self._model,
            **extra,
        )

    def _close(self) -> list[str]:
        item, self._open = self._open, None
        if item is None:
            return []
        index = len(self._output)
        if item["type"] == "reasoning":
            text = item["text"]
            done = _reasoning_item(item["id"], text)
            at = {"item_id": item["id"], "output_index": index, "summary_index": 0}
            part = {"type": "summary_text", "text": text}
            out = [
                self._event("response.reasoning_summary_text.done", text=text, **at),
                self._event("response.reasoning_summary_part.done", part=part, **at),
            ]
        elif item["type"] == "message":
            text = item.pop("text")
            done = _text_item(item["id"], text, "completed")
            part = done["content"][0]
            out = [
                self._event(
                    "response.output_text.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    text=text,
                    logprobs=[],
                ),
                self._event(
                    "response.content_part.done",
                    item_id=item["id"],
                    output_index=index,
                    content_index=0,
                    part=part,
                ),
            ]
        else:
            item["arguments"] = item["arguments"] or "{}"  # a call without arguments
            done = _call_item(
                item["id"],
                item["call_id"],
                item["name"],
                item["arguments"],
                "completed",
                item.get("provider_data"),
            )
            out = [
                self._event(
                    "response.function_call_arguments.done",
                    item_id=item["id"],
                    output_index=index,
                    name=item["name"],
                    arguments=item["arguments"],
                )
            ]
        self._output.append(done)
        out.append(self._event("response.output_item.done", output_index=index, item=done))
        return out

    def _open_text(self) -> list[str]:
        out = self._close()
        item_id = _id("msg")
        self._open = {"type": "message", "id": item_id, "text": ""}
        index = len(self._output)
        added = _text_item(item_id, "", "in_progress")
        part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
        return [
            *out,
            self._event("response.output_item.added", output_index=index, item=added),
            self._event(
                "response.content_part.added",
                item_id=item_id,
                output_index=index,
                content_index=0,
                part=part,
            ),
        ]

    def _open_reasoning(self) -> list[str]:
        out = self._close()
        item_id = _id("rs")
        self._open = {"type": "reasoning", "id": item_id, "text": ""}
        index = len(self._output)
        added = {"type": "reasoning", "id": item_id, "summary": [], "status": "in_progress"}
        part = {"type": "summary_text", "text": ""}
        return [
            *out,
            self._event("response.output_item.added", output_index=index, item=added),
            self._event(
                "response.reasoning_summary_part.added",
                item_id=item_id,
                output_index=index,
                summary_index=0,
                part=part,
            ),
        ]

    def prelude(self, model: str | None) -> bytes:
        return "".join(self._start(model)).encode()

    def _start(self, model: str | None) -> list[str]:
        if self._sequence:
            return []
        self._model = model or self._request.model
        created = self._snapshot("in_progress")
        return [
            self._event("response.created", response=created),
            self._event("response.in_progress", response=created),
        ]

    def chunk(self, chunk: StreamChunk) -> bytes:
        out = self._start(chunk.model)
        if chunk.reasoning:
            if self._open is None or self._open["type"] != "reasoning":
                out += self._open_reasoning()
            assert self._open is not None
            self._open["text"] += chunk.reasoning
            out.append(
                self._event(
                    "response.reasoning_summary_text.delta",
                    item_id=self._open["id"],
                    output_index=len(self._output),
                    summary_index=0,
                    delta=chunk.reasoning,
                )
            )
        if chunk.content:
            if self._open is None or self._open["type"] != "message":
                out += self._open_text()
            assert self._open is not None
            self._open["text"] += chunk.content
            out.append(
                self._event(
                    "response.output_text.delta",
                    item_id=self._open["id"],
                    output_index=len(self._output),
                    content_index=0,
                    delta=chunk.content,
                    logprobs=[],
                )
            )
        for delta in chunk.tool_call_deltas:
            call = self._calls.get(delta.index)
            if call is None:
                out += self._close()
                call = {
                    "type": "function_call",
                    "id": _id("fc"),
                    "call_id": delta.id or _id("call"),
                    "name": delta.name or "",
                    "arguments": "",
                    "provider_data": delta.provider_data,
                }
                self._calls[delta.index] = self._open = call
                added = _call_item(
                    call["id"],
                    call["call_id"],
                    call["name"],
                    "",
                    "in_progress",
                    call["provider_data"],
                )
                index = len(self._output)
                out.append(
                    self._event("response.output_item.added", output_index=index, item=added)
                )
            if delta.arguments:
                call["arguments"] += delta.arguments
                out.append(
                    self._event(
                        "response.function_call_arguments.delta",
                        item_id=call["id"],
                        output_index=len(self._output),
                        delta=delta.arguments,
                    )
                )
        if chunk.is_complete:
            if not self._output and self._open is None:
                out += self._open_text()  # an empty answer is still one (empty) message
            out += self._close()
            self._attach(chunk.provider_data)
            self._model = chunk.model or self._model
            final = self._snapshot("completed", usage=chunk.usage, finish=chunk.finish_reason)
            kind = (
                "response.incomplete" if final["status"] == "incomplete" else "response.completed"
            )
            out.append(self._event(kind, response=final))
        return "".join(out).encode()

    def _attach(self, provider_data: Any) -> None:
        """The final chunk's opaque data onto the finished items of the final snapshot."""
        thinking, opaque = _split(provider_data)
        for item in self._output:
            if thinking and item["type"] == "reasoning":
                item["provider_data"], thinking = thinking, None
            elif opaque and item["type"] == "message":
                item["provider_data"], opaque = opaque, None
        if thinking:  # thinking without a summary still goes back with the next turn
            self._output.insert(0, _reasoning_item(_id("rs"), "", thinking))

    def error(self, error: dict[str, Any]) -> bytes:
        code = snake_case(str(error.get("type") or "RouterError"))
        message = str(error.get("message") or "the stream failed")
        out = ""
        if self._sequence == 0:
            out += self._event("response.created", response=self._snapshot("in_progress"))
        out += self._event("error", code=code, message=message, param=None)
        failed = self._snapshot("failed", error={"code": code, "message": message})
        out += self._event("response.failed", response=failed)
        return self.secrets.scrub(out).encode()


# --- errors --------------------------------------------------------------------------------


def failure_body(failure: Failure) -> dict[str, Any]:
    """OpenAI's error envelope (the chat door's), with the Responses API's
    ``unknown_parameter`` code for a parameter it does not know."""
    body = chat_failure_body(failure)
    if failure.kind == "InvalidRequestError" and str(failure.message).startswith("Unknown param"):
        body["error"]["code"] = "unknown_parameter"
    return body


# --- the door ------------------------------------------------------------------------------


class ResponsesDoor:
    """``POST /v1/responses``."""

    name = "openai_responses"

    def __init__(self, bridge: BridgeApp) -> None:
        self.bridge = bridge

    def routes(self) -> list[Route]:
        return [Route("/v1/responses", {"POST": self.create}, "auth", self)]

    def failure_body(self, failure: Failure) -> dict[str, Any]:
        return failure_body(failure)

    def create(self, request: Request) -> Response:
        bridge = self.bridge
        ai_request = responses_request(request.json())
        ai_request, options = bridge.with_router_headers(request, ai_request, {})
        if ai_request.stream:
            events = ResponseEvents(bridge.secrets, ai_request)
            return bridge.stream("responses", ai_request, options, events)
        response = bridge.answer("responses", ai_request, options)
        body = response_object(
            ai_request,
            response_id=_id("resp"),
            created=int(time.time()),
            status="completed",
            output=answer_output(response),
            usage=response.usage,
            model=response.model,
            finish=response.finish_reason,
        )
        return bridge.json(200, body, served_by(response), scrub=False)
