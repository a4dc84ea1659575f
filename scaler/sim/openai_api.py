"""The OpenAI-compatible surface of a simulated vLLM pod: parsing requests and shaping responses.

Pure functions. Token counts are estimated (about four characters per token, plus the chat
template's few tokens per message); generated text is filler, one word per token.
"""

from __future__ import annotations

import math
import random
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

CHAT_TOKENS_PER_MESSAGE = 5  # <|im_start|>role\n ... <|im_end|>\n
CHAT_REPLY_PRIMER = 3  # <|im_start|>assistant\n
COMPLETION_DEFAULT_MAX_TOKENS = 16  # OpenAI's and vLLM's default for /v1/completions
_WORDS = ("red", "amber", "gold", "green", "teal", "blue", "indigo", "violet", "and", "the", "light", "sings")


class ApiError(Exception):
    """A request vLLM would refuse; carries the HTTP status and OpenAI error type."""

    def __init__(self, message: str, status: int = 400, kind: str = "BadRequestError") -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind

    def body(self) -> dict[str, Any]:
        return {"object": "error", "message": str(self), "type": self.kind, "param": None, "code": self.status}


@dataclass(frozen=True, slots=True)
class ApiRequest:
    chat: bool
    model: str
    prompt_tokens: int
    max_tokens: int | None  # None: up to max_model_len
    min_tokens: int = 0
    ignore_eos: bool = False
    stream: bool = False
    include_usage: bool = False
    kv_transfer_params: Mapping[str, Any] | None = None

    @property
    def remote_prefill(self) -> bool:
        """P/D decode side: the prompt's KV is pulled from the prefill pod named in kv_transfer_params."""
        return bool(self.kv_transfer_params and self.kv_transfer_params.get("do_remote_prefill"))

    @property
    def remote_decode(self) -> bool:
        """P/D prefill side: compute the prompt, keep its KV for a decode pod to pull."""
        return bool(self.kv_transfer_params and self.kv_transfer_params.get("do_remote_decode"))


def count_tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


def parse_request(body: Any, chat: bool, served_model: str) -> ApiRequest:
    if not isinstance(body, dict):
        raise ApiError("the request body must be a JSON object")
    model = body.get("model", served_model)
    if model != served_model:
        raise ApiError(f"The model `{model}` does not exist.", 404, "NotFoundError")
    prompt_tokens = _chat_prompt_tokens(body) if chat else _completion_prompt_tokens(body)
    max_tokens = body.get("max_completion_tokens", body.get("max_tokens")) if chat else body.get("max_tokens")
    if max_tokens is None and not chat:
        max_tokens = COMPLETION_DEFAULT_MAX_TOKENS
    if max_tokens is not None and (not isinstance(max_tokens, int) or max_tokens < 1):
        raise ApiError("max_tokens must be a positive integer")
    min_tokens = body.get("min_tokens", 0)
    if not isinstance(min_tokens, int) or min_tokens < 0:
        raise ApiError("min_tokens must be a non-negative integer")
    stream_options = body.get("stream_options") or {}
    kv = body.get("kv_transfer_params")
    return ApiRequest(
        chat=chat,
        model=model,
        prompt_tokens=prompt_tokens,
        max_tokens=max_tokens,
        min_tokens=min_tokens,
        ignore_eos=bool(body.get("ignore_eos", False)),
        stream=bool(body.get("stream", False)),
        include_usage=bool(isinstance(stream_options, dict) and stream_options.get("include_usage")),
        kv_transfer_params=kv if isinstance(kv, dict) else None,
    )


def _chat_prompt_tokens(body: Mapping[str, Any]) -> int:
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise ApiError("messages must be a non-empty list")
    total = CHAT_REPLY_PRIMER
    for message in messages:
        if not isinstance(message, dict):
            raise ApiError("each message must be an object")
        content = message.get("content", "")
        if isinstance(content, list):  # content parts: count the text ones
            content = " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
        total += CHAT_TOKENS_PER_MESSAGE + count_tokens(str(content))
    return total


def _completion_prompt_tokens(body: Mapping[str, Any]) -> int:
    prompt = body.get("prompt")
    if isinstance(prompt, str) and prompt:
        return count_tokens(prompt)
    if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
        return len(prompt)  # token ids
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        return count_tokens(prompt[0])
    raise ApiError("prompt must be a non-empty string, a list of token ids, or a one-string list")


def output_plan(request: ApiRequest, rng: random.Random, median: float, max_model_len: int) -> tuple[int, str]:
    """How many tokens to generate and why it stops: at max_tokens ("length") or at a drawn EOS ("stop")."""
    room = max_model_len - request.prompt_tokens
    if room < 1:
        raise ApiError(
            f"This model's maximum context length is {max_model_len} tokens; the prompt has {request.prompt_tokens}"
        )
    limit = min(request.max_tokens or room, room)
    if request.ignore_eos:
        return limit, "length"
    natural = max(1, request.min_tokens, round(rng.lognormvariate(math.log(median), 0.7)))
    return (limit, "length") if natural >= limit else (natural, "stop")


def text_for(first: int, count: int) -> str:
    """Filler text for tokens first..first+count-1, one word each, the same for the same positions."""
    return "".join(" " + _WORDS[i % len(_WORDS)] for i in range(first, first + count))


def usage(prompt_tokens: int, completion_tokens: int) -> dict[str, int]:
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion_tokens,
        "total_tokens": prompt_tokens + completion_tokens,
    }


def response_body(
    request: ApiRequest, request_id: str, created: int, tokens: int, finish_reason: str
) -> dict[str, Any]:
    choice: dict[str, Any]
    if request.chat:
        message = {"role": "assistant", "content": text_for(0, tokens).lstrip()}
        choice = {"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason}
    else:
        choice = {"index": 0, "text": text_for(0, tokens), "logprobs": None, "finish_reason": finish_reason}
    return {
        "id": request_id,
        "object": "chat.completion" if request.chat else "text_completion",
        "created": created,
        "model": request.model,
        "choices": [choice],
        "usage": usage(request.prompt_tokens, tokens),
    }


def stream_chunk(
    request: ApiRequest,
    request_id: str,
    created: int,
    first: int,
    count: int,
    finish_reason: str | None = None,
    role: bool = False,
) -> dict[str, Any]:
    """One SSE chunk carrying tokens first..first+count-1 (none for the role or final chunk)."""
    text = text_for(first, count)
    choice: dict[str, Any]
    if request.chat:
        delta: dict[str, Any] = {"role": "assistant", "content": ""} if role else {"content": text}
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason}
    return {
        "id": request_id,
        "object": "chat.completion.chunk" if request.chat else "text_completion",
        "created": created,
        "model": request.model,
        "choices": [choice],
    }


def usage_chunk(request: ApiRequest, request_id: str, created: int, tokens: int) -> dict[str, Any]:
    return {
        "id": request_id,
        "object": "chat.completion.chunk" if request.chat else "text_completion",
        "created": created,
        "model": request.model,
        "choices": [],
        "usage": usage(request.prompt_tokens, tokens),
    }


def models_body(model: str, created: int, max_model_len: int) -> dict[str, Any]:
    entry = {
        "id": model,
        "object": "model",
        "created": created,
        "owned_by": "vllm",
        "root": model,
        "parent": None,
        "max_model_len": max_model_len,
    }
    return {"object": "list", "data": [entry]}
