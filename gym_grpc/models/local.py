"""The embedded default model: a GGUF run by llama.cpp (llama-cpp-python) on CPU, in this process.

A turn renders the request with the GGUF's chat template (`chat_template.py`), samples with a GBNF grammar chosen
from `tool_choice`, and parses `<tool_call>` blocks into `function_call` items:

- "required" or {"type": "function", "name": ...}: the grammar forces one or more tool calls of the offered (or the
  named) tools, arguments a JSON object; "none" or no tools: text only; "auto": one grammar allowing either, the
  model picks by its first token.
- Policy shaping for tiny models (config, on by default, see `LocalModelConfig`): `first_turn_tool_choice="required"`
  treats "auto" as "required" until the input holds a tool output; `text_grammar="plain"` keeps text turns free of
  JSON and markup; `system_hint` appends a line to the system prompt.

Token data: every response's first output item carries `prompt_token_ids` (the exact prompt), `generation_token_ids`
(every sampled token, the closing end-of-turn token included) and `generation_log_probs`: log-softmax of the model's
raw logits for the sampled token, that is log p_model(token | prefix) at temperature 1, before the grammar, the
temperature and top_p. Under a grammar, tokens the grammar forces (the tool-call tags) are real sampled tokens with
their real model log-probs. When a turn yields text and calls, or several calls, only the first item has the data.

Concurrency: llama.cpp is not thread-safe per model, so each of `workers` model instances runs in its own thread
(a private executor); the event loop only awaits. Cancelling `create` sets a flag that the generating thread checks
after every token. The model loads lazily on the first call (or on `load()`), in a worker thread, so the server's
health check never waits on it.
"""

from __future__ import annotations

import asyncio
import logging
import os
import queue
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from gym_grpc.config.schema import LocalModelConfig
from gym_grpc.errors import ModelError
from gym_grpc.models.chat_template import (
    ChatTemplate,
    Markers,
    Mode,
    build_grammar,
    chat_messages,
    choose_mode,
    has_tool_output,
    parse_tool_calls,
    tool_specs,
)
from gym_grpc.models.gguf import model_label, resolve_model_path
from gym_grpc.models.token_history import reuse_sampled
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


class _CancelledError(Exception):
    """The caller went away; the result is dropped."""


@dataclass(frozen=True)
class Generation:
    prompt_ids: list[int]
    token_ids: list[int]
    log_probs: list[float]
    text: str  # the generated text, the end-of-turn token left out
    finished: bool  # ended by the model (end of turn), not by the token limit


def _new_id(prefix: str) -> str:
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


class _Engine:
    """One llama.cpp model instance; one thread at a time uses it (the pool hands it out)."""

    def __init__(self, config: LocalModelConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self._llm: Any = None
        self._grammars: dict[str, Any] = {}

    @property
    def loaded(self) -> bool:
        return self._llm is not None

    def ensure_loaded(self) -> None:
        with self._lock:
            if self._llm is None:
                self._load()

    def _load(self) -> None:
        cfg = self.config
        try:
            import llama_cpp
            import llama_cpp.llama_grammar
        except ImportError:
            raise ModelError("llama-cpp-python is not installed: run `make local-model`") from None
        path = resolve_model_path(cfg.model, cfg.model_path, cfg.cache_dir)
        threads = cfg.n_threads or max(1, (os.cpu_count() or 1) // cfg.workers)
        t0 = time.perf_counter()
        try:
            llm = llama_cpp.Llama(
                model_path=str(path),
                n_ctx=cfg.n_ctx,
                n_batch=min(512, cfg.n_ctx),
                n_threads=threads,
                n_threads_batch=threads,
                logits_all=False,
                verbose=False,
            )
        except Exception as exc:
            raise ModelError(f"cannot load {path}: {exc}") from exc
        self._log_prob = _logits_reader(llm)
        vocab = llm._model.vocab

        def is_eog(token: int) -> bool:
            return bool(llama_cpp.llama_vocab_is_eog(vocab, token))

        self._eog: Callable[[int], bool] = is_eog
        self._grammar_type = llama_cpp.llama_grammar.LlamaGrammar
        self._default_seed = int(llama_cpp.LLAMA_DEFAULT_SEED)
        meta = llm.metadata
        bos = _token_text(llm, llm.token_bos())
        self._add_bos = meta.get("tokenizer.ggml.add_bos_token") == "true"
        self._bos = bos
        self.template = ChatTemplate(
            meta.get("tokenizer.chat_template"), bos_token=bos, eos_token=_token_text(llm, llm.token_eos())
        )
        self.markers = Markers(_special_id(llm, "<tool_call>"), _special_id(llm, "</tool_call>"))
        self._llm = llm
        log.info(
            "loaded %s in %.1fs (%d threads, n_ctx %d%s)",
            path.name,
            time.perf_counter() - t0,
            threads,
            cfg.n_ctx,
            ", fallback tool template" if self.template.fallback else "",
        )

    def close(self) -> None:
        with self._lock:
            if self._llm is not None:
                self._llm.close()
                self._llm = None

    # --- one turn (in the engine's thread) ---------------------------------------------------------------------

    def respond(self, params: ResponseCreateParams, stop: threading.Event, label: str) -> Response:
        self.ensure_loaded()
        cfg = self.config
        tools = params.function_tools
        mode, names = choose_mode(
            params.tool_choice,
            tools,
            tool_output_seen=has_tool_output(params),
            first_turn=cfg.first_turn_tool_choice,
        )
        offered = [t for t in tools if t.name in names] if mode != "none" else tools
        prompt = self.template.render(chat_messages(params, cfg.system_hint), tool_specs(offered) or None)
        grammar = build_grammar(
            mode, names, self.markers, text=cfg.text_grammar, parallel=params.parallel_tool_calls is not False
        )
        gen = self.generate(
            prompt,
            history=sampled_turns(params) if cfg.reuse_sampled_tokens else (),
            grammar=grammar,
            temperature=cfg.temperature if params.temperature is None else params.temperature,
            top_p=cfg.top_p if params.top_p is None else params.top_p,
            max_tokens=params.max_output_tokens or cfg.max_output_tokens,
            seed=params.seed,
            stop=stop,
        )
        return _response(gen, mode, label)

    def generate(
        self,
        prompt: str,
        *,
        history: Sequence[tuple[Sequence[int], Sequence[int]]] = (),
        grammar: str | None,
        temperature: float,
        top_p: float,
        max_tokens: int,
        seed: int | None,
        stop: threading.Event,
    ) -> Generation:
        llm = self._llm
        add_bos = self._add_bos and not (self._bos and prompt.startswith(self._bos))
        prompt_ids = [int(t) for t in llm.tokenize(prompt.encode(), add_bos=add_bos, special=True)]
        prompt_ids = reuse_sampled(prompt_ids, history, self._eog)  # the model sees what it sampled, token for token
        room = self.config.n_ctx - len(prompt_ids)
        if room <= 0:
            raise ModelError(f"the prompt has {len(prompt_ids)} tokens, over n_ctx={self.config.n_ctx}")
        limit = min(max_tokens, room)
        llm.set_seed(self._default_seed if seed is None else seed % self._default_seed)
        compiled = self._grammar(grammar) if grammar else None
        ids: list[int] = []
        log_probs: list[float] = []
        finished = False
        tokens = llm.generate(
            prompt_ids,
            top_k=0,
            top_p=top_p,
            min_p=0.0,
            typical_p=1.0,
            temp=temperature,
            repeat_penalty=1.0,
            grammar=compiled,
        )
        try:
            for token in tokens:
                if stop.is_set():
                    raise _CancelledError
                ids.append(int(token))
                log_probs.append(self._log_prob(int(token)))
                if self._eog(int(token)):
                    finished = True
                    break
                if len(ids) >= limit:
                    break
        finally:
            tokens.close()
        body = ids[:-1] if finished else ids
        text = llm.detokenize(body, special=True).decode("utf-8", errors="replace")
        return Generation(prompt_ids, ids, log_probs, text, finished)

    def _grammar(self, source: str) -> Any:
        compiled = self._grammars.get(source)
        if compiled is None:
            compiled = self._grammar_type.from_string(source, verbose=False)
            if len(self._grammars) > 64:
                self._grammars.clear()
            self._grammars[source] = compiled
        return compiled


def sampled_turns(params: ResponseCreateParams) -> list[tuple[list[int], list[int]]]:
    """(prompt ids, generated ids) of the earlier turns in the conversation, from their items' token data."""
    return [
        (item.prompt_token_ids, item.generation_token_ids)
        for item in params.items
        if isinstance(item, Message | FunctionCall | Reasoning) and item.prompt_token_ids and item.generation_token_ids
    ]


def _logits_reader(llm: Any) -> Callable[[int], float]:
    """log p(token) under the model's raw logits of the last decoded position: computed in float64, handed out at
    float32 precision (the logits' own, and the wire's: `TokenData.generation_log_probs` is `repeated float`)."""
    import numpy as np

    n_vocab = llm.n_vocab()

    def log_prob(token: int) -> float:
        logits = np.ctypeslib.as_array(llm._ctx.get_logits_ith(-1), shape=(n_vocab,)).astype(np.float64)
        top = logits.max()
        return float(np.float32(logits[token] - top - np.log(np.exp(logits - top).sum())))

    return log_prob


def _token_text(llm: Any, token: int) -> str:
    if token < 0:
        return ""
    return str(llm.detokenize([token], special=True).decode("utf-8", errors="replace"))


def _special_id(llm: Any, text: str) -> int | None:
    """The id of `text` when the vocabulary has it as one special token."""
    ids = llm.tokenize(text.encode(), add_bos=False, special=True)
    plain = llm.tokenize(text.encode(), add_bos=False, special=False)
    return int(ids[0]) if len(ids) == 1 and len(plain) > 1 else None


def _response(gen: Generation, mode: Mode, label: str) -> Response:
    status = "completed" if gen.finished else "incomplete"
    content, calls = parse_tool_calls(gen.text) if mode != "none" else (gen.text, [])
    tokens: dict[str, Any] = {
        "prompt_token_ids": gen.prompt_ids,
        "generation_token_ids": gen.token_ids,
        "generation_log_probs": gen.log_probs,
    }
    items: list[Item] = []
    if content or not calls:
        text = OutputText(text=content if calls else gen.text, annotations=[])
        items.append(
            Message(type="message", id=_new_id("msg"), role="assistant", status=status, content=[text], **tokens)
        )
        tokens = {}
    for call in calls:
        items.append(
            FunctionCall(
                call_id=_new_id("call"),
                name=call.name,
                arguments=call.arguments,
                id=_new_id("fc"),
                status="completed",
                **tokens,
            )
        )
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


class LocalModel:
    """The `ModelClient` of the embedded model (see the module docstring)."""

    def __init__(self, name: str, config: LocalModelConfig) -> None:
        self.name = name
        self.config = config
        self.label = model_label(config.model, config.model_path)
        self._engines = [_Engine(config) for _ in range(config.workers)]
        self._free: queue.SimpleQueue[_Engine] = queue.SimpleQueue()
        for engine in self._engines:
            self._free.put(engine)
        self._executor = ThreadPoolExecutor(max_workers=config.workers, thread_name_prefix=f"llama-{name}")
        self._active: set[threading.Event] = set()
        self._closed = False

    @property
    def loaded(self) -> bool:
        return all(engine.loaded for engine in self._engines)

    async def load(self) -> None:
        """Load every model instance now (else the first call does). Raises ModelError."""
        for engine in self._engines:
            await asyncio.to_thread(engine.ensure_loaded)

    async def create(self, params: ResponseCreateParams, *, sticky_key: str | None = None) -> Response:
        if self._closed:
            raise ModelError(f"model {self.name!r} is closed")
        stop = threading.Event()
        self._active.add(stop)
        future = asyncio.get_running_loop().run_in_executor(self._executor, self._run, params, stop)
        future.add_done_callback(_consume)
        try:
            return await asyncio.shield(future)
        except asyncio.CancelledError:
            stop.set()
            future.cancel()
            raise
        finally:
            self._active.discard(stop)

    def _run(self, params: ResponseCreateParams, stop: threading.Event) -> Response:
        if stop.is_set():
            raise _CancelledError
        engine = self._free.get()
        try:
            return engine.respond(params, stop, self.label)
        except (ModelError, _CancelledError):
            raise
        except Exception as exc:
            log.exception("the embedded model failed")
            raise ModelError(f"the embedded model failed: {type(exc).__name__}: {exc}") from exc
        finally:
            self._free.put(engine)

    async def aclose(self) -> None:
        if self._closed:
            return
        self._closed = True
        for stop in list(self._active):
            stop.set()
        await asyncio.to_thread(self._executor.shutdown, wait=True, cancel_futures=True)
        for engine in self._engines:
            engine.close()


def _consume(future: asyncio.Future[Response]) -> None:
    """Retrieve a dropped result's exception, so asyncio does not log it as never retrieved."""
    if not future.cancelled():
        future.exception()
