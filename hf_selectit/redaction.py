"""The one place that hides Hub tokens: every file the package writes and every line it prints.

A token arrives by ``HF_TOKEN`` (or the stored login), a ``token`` key in a mapping option
(``model_kwargs``, ``vllm_kwargs``, a run YAML), or free text (a command line, an error message).
Writers of files (LOCK, checkpoints, the uploaded run config, ``selectit.json``, the card,
summaries) and the CLI's error and log output pass through :func:`redact` / :func:`redact_mapping`.
"""

from __future__ import annotations

import os
import re
from typing import Any, Mapping

HIDDEN = "<hidden>"

# The shape of a Hub access token ("hf_" + 30-40 letters and digits), wherever it appears.
_HF_TOKEN = re.compile(r"(?<![A-Za-z0-9])hf_[A-Za-z0-9]{20,}")
# Key names that hold a token (`from_pretrained`'s `token`, and the usual spellings elsewhere);
# not `pad_token`, `max_tokens` or `tokenizer`.
_KEY = r"(?:hf_|hub_|api_|auth_|access_|use_auth_)?token"
# `token: value`, `"token": "value"`, `token=value`, `--token value` in free text.
_TOKEN_VALUE = re.compile(
    rf"""((?<![A-Za-z0-9_-])(?:--{_KEY}(?:=|\s+)|{_KEY}["']?\s*[:=]\s*)["']?)(?!<hidden>)[^"',;}}\]\s]+""",
    re.IGNORECASE)


def _known_tokens() -> list[str]:
    """Token values this process knows of (environment, stored login), longest first."""
    from huggingface_hub import get_token

    values = {os.environ.get("HF_TOKEN", ""), os.environ.get("HUGGING_FACE_HUB_TOKEN", ""),
              get_token() or ""}
    # A token of a few characters would blank out ordinary words; real ones are long.
    return sorted((v for v in values if len(v) >= 8), key=len, reverse=True)


def is_secret_key(key: Any) -> bool:
    """Whether a mapping key names a secret (``token``, ``hub_token``, ...; not ``pad_token``)."""
    return isinstance(key, str) and re.fullmatch(_KEY, key.lower().replace("-", "_")) is not None


def redact(text: str) -> str:
    """``text`` with every Hub token replaced by ``<hidden>``: the values of ``HF_TOKEN`` and the
    stored login, anything shaped like a Hub token (``hf_...``), and the value after a ``token:`` /
    ``token=`` key.

    Example:
        >>> redact('--model-kwargs {"token": "abc123"}')
        '--model-kwargs {"token": "<hidden>"}'
    """
    text = str(text)
    for value in _known_tokens():
        text = text.replace(value, HIDDEN)
    text = _HF_TOKEN.sub(HIDDEN, text)
    return _TOKEN_VALUE.sub(lambda m: m.group(1) + HIDDEN, text)


def redact_mapping(value: Any) -> Any:
    """A copy of ``value`` (mappings, lists, strings, nested) with every secret hidden.

    A key named like a token keeps ``True``/``False``/``None`` (they say "use the stored login"
    and hold no secret); any other value becomes ``<hidden>``. Strings go through :func:`redact`.
    """
    if isinstance(value, Mapping):
        return {k: (v if v is None or isinstance(v, bool) else HIDDEN) if is_secret_key(k)
                else redact_mapping(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return type(value)(redact_mapping(v) for v in value)
    if isinstance(value, str):
        return redact(value)
    if type(value).__name__ == "HubToken":  # model_kwargs' wrapper; never its value
        return HIDDEN
    return value


def redact_yaml(text: str) -> str:
    """A YAML document (a run config about to be uploaded) with every secret hidden.

    A mapping is written back from :func:`redact_mapping` only when a secret was found, so a clean
    file stays byte-for-byte as it was (comments included); text that does not parse is redacted
    as text.
    """
    import yaml

    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return redact(text)
    clean = redact_mapping(data)
    if clean == data and redact(text) == text:
        return text
    return yaml.safe_dump(clean, sort_keys=False, allow_unicode=True)
