"""`provider: "hf"`: local Hugging Face transformers models, run in this process.

``name`` is a model folder (written by ``save_pretrained``; a relative path is
relative to the flow file's folder) or a hub id already in the local Hugging
Face cache. Nothing is ever downloaded: models load with
``local_files_only=True``, and a model that is not on disk is a ProviderError
(not retryable) that says how to get it.

Requests:

- The prompt is the tokenizer's chat template
  (``apply_chat_template(messages, add_generation_prompt=True)``) when it has
  one, else a plain transcript: one ``role: content`` line per message, then
  ``assistant:``.
- ``max_tokens`` → ``max_new_tokens`` (default 256, capped to what fits in
  the model's context). ``temperature`` 0 or unset → greedy decoding
  (``do_sample=False``); above 0 → sampling at that temperature.
- ``options``: fmflow's own keys are ``device`` (``"cpu"``, the default;
  ``"cuda"``/``"cuda:N"`` when CUDA is available, else an error; ``"mps"``),
  ``dtype`` (``"float16"``, ``"bfloat16"``, ``"float32"``, ``"auto"``),
  ``trust_remote_code`` (false unless set), ``seed`` (seeds torch before the
  call, for reproducible sampling) and ``cost`` (USD per 1M tokens, see
  costs.py; a local model is otherwise priced "unknown"). Every other key is
  passed to ``generate`` when it is a generation setting (``top_p``,
  ``top_k``, ``repetition_penalty``, ``num_beams``, ``stop_strings``…);
  an unknown key is an error rather than silently ignored.
- ``json_schema`` has no native support (``supports_structured_output`` is
  False): the prompt text already asks for JSON and the runtime parses it.
  Tools are not offered to the model.

Concurrency: loading and generation run in worker threads
(``asyncio.to_thread``), so the event loop keeps serving other calls. One
model and tokenizer are loaded per (folder or hub id, device, dtype) and shared
by every call in the process, whichever event loop it runs on; the first
calls load it once under a lock (the others wait for it). Calls to one model
are serialised by a lock around ``generate`` (models are not thread-safe).
A cancelled call (a `timeout:`) stops its generation at the next token.

Streaming: when ``request.on_text`` is set, a ``transformers.TextStreamer``
(the base of TextIteratorStreamer; its ``on_finalized_text`` hook, without the
iterator's queue) hands each decoded piece to the event loop with
``call_soon_threadsafe``, so ``on_text`` runs on the loop's thread, in order,
before the call returns. The pieces join to the reply's text.

torch and transformers are imported at the first call (in a worker thread),
never when fmflow is imported or a flow is checked.
"""

from __future__ import annotations

import asyncio
import os
import re
import threading
from dataclasses import dataclass, field
from typing import Any, Callable

from . import register_provider
from .base import ChatRequest, ChatResponse, ModelConfig, Provider, ProviderError
from .costs import CostError, cost_of

__all__ = ["HFProvider", "DEFAULT_MAX_NEW_TOKENS", "prompt_text"]

DEFAULT_MAX_NEW_TOKENS = 256
# Option keys fmflow reads itself; every other key goes to generate().
_OWN_OPTIONS = frozenset({"device", "dtype", "trust_remote_code", "seed", "cost"})
# generate() arguments that are not GenerationConfig attributes but are fine to pass.
_EXTRA_GENERATE_KWARGS = frozenset({"stop_strings", "bad_words_ids"})
# Set by the provider, not by options.
_RESERVED = frozenset({"max_new_tokens", "do_sample", "temperature", "streamer", "stopping_criteria",
                       "input_ids", "attention_mask", "tokenizer"})
_DTYPES = ("auto", "float32", "float16", "bfloat16")
_HUB_ID = re.compile(r"^[A-Za-z0-9][\w.-]*(/[\w.-]+)?$")


@dataclass
class _Loaded:
    model: Any
    tokenizer: Any
    where: str                     # folder or hub id, for messages
    context: int | None            # the model's maximum positions, when it has one
    generate_lock: threading.Lock = field(default_factory=threading.Lock)


def prompt_text(tokenizer: Any, messages: list[dict[str, Any]]) -> tuple[str, bool]:
    """The prompt for ``messages``, and whether it came from the tokenizer's chat template.

    Without a template: ``role: content`` lines, then ``assistant:`` for the reply.
    """
    plain = [{"role": str(m.get("role") or "user"), "content": str(m.get("content") or "")} for m in messages]
    if getattr(tokenizer, "chat_template", None):
        try:
            return tokenizer.apply_chat_template(plain, add_generation_prompt=True, tokenize=False), True
        except Exception as first:  # noqa: BLE001 - jinja raises its own errors
            # Some templates refuse a system message: fold it into the first user message.
            if plain and plain[0]["role"] == "system" and len(plain) > 1 and plain[1]["role"] == "user":
                merged = [{"role": "user", "content": f"{plain[0]['content']}\n\n{plain[1]['content']}"}]
                try:
                    return tokenizer.apply_chat_template(merged + plain[2:], add_generation_prompt=True,
                                                         tokenize=False), True
                except Exception:  # noqa: BLE001
                    pass
            raise ProviderError(f"the model's chat template failed: {first}") from None
    lines = [f"{m['role']}: {m['content']}" for m in plain]
    lines.append("assistant:")
    return "\n".join(lines), False


class HFProvider(Provider):
    name = "hf"
    supports_structured_output = False
    supports_tools = False  # tools reach the model as text (runtime/tool_text.py)

    def __init__(self) -> None:
        self._models: dict[tuple[str, str, str], _Loaded] = {}
        self._load_locks: dict[tuple[str, str, str], threading.Lock] = {}
        self._lock = threading.Lock()  # guards the two dicts; runs may share the provider across loops
        self.loads = 0                 # models loaded so far (tests check sharing)

    # -- public ---------------------------------------------------------------

    async def complete(self, config: ModelConfig, request: ChatRequest) -> ChatResponse:
        options = {**config.options, **request.options}
        key, where, is_path = self._key(config, options)
        loaded = self._models.get(key)
        if loaded is None:
            loaded = await asyncio.to_thread(self._get, key, where, is_path, config, options)
        gen_kwargs, seed = self._generation_settings(config, request, options)

        emit: Callable[[str], None] | None = None
        if request.on_text is not None:
            loop, on_text = asyncio.get_running_loop(), request.on_text

            def forward(piece: str) -> None:
                try:
                    loop.call_soon_threadsafe(on_text, piece)
                except RuntimeError:  # the loop closed while the thread finished: nobody listens
                    pass

            emit = forward

        stop = threading.Event()
        try:
            text, n_in, n_out = await asyncio.to_thread(self._generate, loaded, config, request.messages,
                                                        gen_kwargs, seed, emit, stop)
        except asyncio.CancelledError:
            stop.set()  # the worker thread stops generating at its next token
            raise
        try:
            cost = cost_of(options, [], n_in, n_out, where=f"hf model '{config.name}'")
        except CostError as error:
            raise ProviderError(str(error)) from None
        return ChatResponse(text=text, tokens_in=n_in, tokens_out=n_out, cost=cost,
                            model=config.model or config.name)

    async def aclose(self) -> None:
        with self._lock:
            loaded, self._models = list(self._models.values()), {}
            self._load_locks.clear()
        if not loaded:
            return
        cuda = any(str(getattr(item.model, "device", "cpu")).startswith("cuda") for item in loaded)
        del loaded
        import gc

        gc.collect()
        if cuda:
            import torch

            torch.cuda.empty_cache()

    # -- loading ----------------------------------------------------------------

    def _key(self, config: ModelConfig, options: dict[str, Any]) -> tuple[tuple[str, str, str], str, bool]:
        """((folder or hub id, device, dtype), what to load, whether it is a folder)."""
        name = (config.model or "").strip()
        if not name:
            raise ProviderError(f"hf model '{config.name}' needs `name:`: a model folder or a hub id "
                                f"in the local Hugging Face cache")
        device = str(options.get("device") or "cpu").strip().lower()
        dtype = str(options.get("dtype") or "float32").strip().lower()
        if dtype not in _DTYPES:
            raise ProviderError(f"hf model '{config.name}': dtype '{dtype}' is not one of {', '.join(_DTYPES)}")
        expanded = os.path.expanduser(name)
        base = os.path.dirname(config.source) if config.source else os.getcwd()
        folder = os.path.normpath(expanded if os.path.isabs(expanded) else os.path.join(base, expanded))
        is_path = (os.path.isdir(folder) or os.path.isabs(expanded) or name.startswith((".", "~"))
                   or "\\" in name or not _HUB_ID.match(name))
        where = folder if is_path else name
        return (where, device, dtype), where, is_path

    def _get(self, key: tuple[str, str, str], where: str, is_path: bool, config: ModelConfig,
             options: dict[str, Any]) -> _Loaded:
        """The shared model for ``key``, loaded by the first caller (in a worker thread)."""
        with self._lock:
            loaded = self._models.get(key)
            if loaded is not None:
                return loaded
            lock = self._load_locks.setdefault(key, threading.Lock())
        with lock:  # concurrent first calls wait here for the one that loads
            with self._lock:
                loaded = self._models.get(key)
            if loaded is None:
                loaded = self._load(key, where, is_path, config, options)
                with self._lock:
                    self._models[key] = loaded
                    self.loads += 1
        return loaded

    def _load(self, key: tuple[str, str, str], where: str, is_path: bool, config: ModelConfig,
              options: dict[str, Any]) -> _Loaded:
        label = f"hf model '{config.name}'"
        if is_path:
            if not os.path.isdir(where):
                raise ProviderError(
                    f"{label}: '{config.model}' was not found locally: there is no folder '{where}'. "
                    f"Give the folder of a model saved with save_pretrained() (relative to the flow file's "
                    f"folder, or absolute), or the id of a model already in the Hugging Face cache "
                    f"(get one once with `hf download <id>`); fmflow never downloads models")
            if not os.path.isfile(os.path.join(where, "config.json")):
                raise ProviderError(f"{label}: the folder '{where}' holds no transformers model "
                                    f"(no config.json); save one there with save_pretrained()")

        import torch
        import transformers

        _, device, dtype = key
        if device.startswith("cuda"):
            if not torch.cuda.is_available():
                raise ProviderError(f"{label}: device '{device}' was asked for but CUDA is not available "
                                    f"(torch {torch.__version__}); use device: \"cpu\"")
        elif device == "mps":
            if not torch.backends.mps.is_available():
                raise ProviderError(f"{label}: device 'mps' was asked for but is not available; "
                                    f"use device: \"cpu\"")
        elif device != "cpu":
            raise ProviderError(f"{label}: unknown device '{device}' (use \"cpu\", \"cuda\", \"cuda:N\" or \"mps\")")

        trust = bool(options.get("trust_remote_code", False))
        # No "Loading weights" progress bar in the middle of a run's output.
        bars = transformers.utils.logging.is_progress_bar_enabled()
        transformers.utils.logging.disable_progress_bar()
        try:
            tokenizer = transformers.AutoTokenizer.from_pretrained(where, local_files_only=True,
                                                                   trust_remote_code=trust)
            model = transformers.AutoModelForCausalLM.from_pretrained(
                where, local_files_only=True, trust_remote_code=trust,
                dtype=dtype if dtype == "auto" else getattr(torch, dtype))
        except OSError as error:
            if is_path:
                raise ProviderError(f"{label}: cannot load the model in '{where}': {error}") from None
            from huggingface_hub import constants

            raise ProviderError(
                f"{label}: '{where}' was not found locally: it is not a folder next to the flow file and "
                f"not in the Hugging Face cache ({constants.HF_HUB_CACHE}); fmflow never downloads models. "
                f"Get it once with `hf download {where}` (or `huggingface-cli download {where}`), or save "
                f"it with save_pretrained() into a folder and give that folder's path") from None
        except (ValueError, ImportError, KeyError) as error:
            raise ProviderError(f"{label}: cannot load '{where}': {error}") from None
        finally:
            if bars:
                transformers.utils.logging.enable_progress_bar()
        model.to(device)
        model.eval()
        context = getattr(model.config, "max_position_embeddings", None)
        return _Loaded(model=model, tokenizer=tokenizer, where=where,
                       context=context if isinstance(context, int) and context > 0 else None)

    # -- generation -------------------------------------------------------------

    def _generation_settings(self, config: ModelConfig, request: ChatRequest,
                             options: dict[str, Any]) -> tuple[dict[str, Any], int | None]:
        from_options = {k: v for k, v in options.items() if k not in _OWN_OPTIONS}
        reserved = sorted(set(from_options) & _RESERVED)
        if reserved:
            raise ProviderError(f"hf model '{config.name}': option '{reserved[0]}' is set by fmflow "
                                f"(use the model's max_tokens and temperature)")
        max_tokens = request.max_tokens if request.max_tokens is not None else config.max_tokens
        max_tokens = DEFAULT_MAX_NEW_TOKENS if max_tokens is None else int(max_tokens)
        if max_tokens < 1:
            raise ProviderError(f"hf model '{config.name}': max_tokens must be at least 1, got {max_tokens}")
        temperature = request.temperature if request.temperature is not None else config.temperature
        kwargs: dict[str, Any] = {"max_new_tokens": max_tokens, **from_options}
        if temperature:
            kwargs.update(do_sample=True, temperature=float(temperature))
        else:
            kwargs["do_sample"] = False
        seed = options.get("seed")
        if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int)):
            raise ProviderError(f"hf model '{config.name}': seed must be an integer, got {seed!r}")
        return kwargs, seed

    def _generate(self, loaded: _Loaded, config: ModelConfig, messages: list[dict[str, Any]],
                  kwargs: dict[str, Any], seed: int | None, emit: Callable[[str], None] | None,
                  stop: threading.Event) -> tuple[str, int, int]:
        """Runs in a worker thread: (reply text, prompt tokens, generated tokens)."""
        import torch
        import transformers

        label = f"hf model '{config.name}'"
        unknown = sorted(k for k in kwargs if k not in _EXTRA_GENERATE_KWARGS
                         and k not in ("max_new_tokens", "do_sample", "temperature")
                         and not hasattr(loaded.model.generation_config, k))
        if unknown:
            raise ProviderError(f"{label}: option '{unknown[0]}' is not a generation setting of transformers "
                                f"(GenerationConfig) nor one of fmflow's: {', '.join(sorted(_OWN_OPTIONS))}")
        tokenizer = loaded.tokenizer
        try:
            text, templated = prompt_text(tokenizer, messages)
        except ProviderError as error:
            raise ProviderError(f"{label}: {error}") from None
        # A chat template writes its own special tokens (BOS…); a transcript gets the tokenizer's.
        enc = tokenizer(text, return_tensors="pt", add_special_tokens=not templated)
        n_in = int(enc["input_ids"].shape[1])
        kwargs = dict(kwargs)
        if loaded.context is not None:
            room = loaded.context - n_in
            if room < 1:
                raise ProviderError(f"{label}: the prompt is {n_in} tokens, the model's context holds "
                                    f"{loaded.context}; shorten the prompt")
            kwargs["max_new_tokens"] = min(kwargs["max_new_tokens"], room)
        if "stop_strings" in kwargs:
            kwargs["tokenizer"] = tokenizer
        if loaded.model.generation_config.pad_token_id is None:
            pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
            if pad is not None:
                kwargs["pad_token_id"] = pad

        class _Stop(transformers.StoppingCriteria):
            def __call__(self, input_ids, scores, **_: Any):
                return torch.full((input_ids.shape[0],), stop.is_set(), dtype=torch.bool,
                                  device=input_ids.device)

        if emit is not None:
            class _Streamer(transformers.TextStreamer):
                def on_finalized_text(self, piece: str, stream_end: bool = False) -> None:
                    if piece:
                        emit(piece)

            kwargs["streamer"] = _Streamer(tokenizer, skip_prompt=True, skip_special_tokens=True)

        device = loaded.model.device
        inputs = {k: v.to(device) for k, v in enc.items() if k in ("input_ids", "attention_mask")}
        with loaded.generate_lock:
            if stop.is_set():
                raise ProviderError(f"{label}: cancelled")
            if seed is not None:
                transformers.set_seed(seed)
            try:
                with torch.inference_mode():
                    out = loaded.model.generate(**inputs, **kwargs,
                                                stopping_criteria=transformers.StoppingCriteriaList([_Stop()]))
            except ProviderError:
                raise
            except Exception as error:  # noqa: BLE001 - bad settings (ValueError), out of memory…
                raise ProviderError(f"{label}: generation failed: {type(error).__name__}: {error}") from None
        generated = out[0, n_in:]
        reply = tokenizer.decode(generated, skip_special_tokens=True)
        return reply, n_in, int(generated.shape[0])


register_provider("hf", HFProvider)
