"""IFD (Cherry LLM, Li et al. 2023) and reversed IFD (Selective Reflection-Tuning, Li et al. 2024).

IFD = s(Y|X) / s(Y), the mean token loss of the response Y after `template(X)` over that after
`direct_prefix` (variant="ppl": exp of each); reversed IFD reads X after the template around a
prompt holding Y, over X alone. The texts, token rule and truncation: docs/method.md 7.1 and 7.2.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Optional, Sequence

import numpy as np

from ..config import IFDConfig, ReverseIFDConfig
from ..engine import Item, TokenLosses
from ..prompts import Fields as _Row
from .base import BaseScorer
from .columns import row_status

_VICUNA = ("A chat between a curious user and an artificial intelligence assistant. The assistant gives "
           "helpful, detailed, and polite answers to the user's questions. USER: {instruction}")
#: The conditioned-text templates (verbatim from the authors' code). Keys: template name, then
#: "input" (rows with an input) and "plain" (rows without).
TEMPLATES = {
    "alpaca": {
        "input": ("Below is an instruction that describes a task, paired with an input that provides further "
                  "context. Write a response that appropriately completes the request.\n\n"
                  "### Instruction:\n{instruction}\n\n### Input:\n{input}\n\n### Response:"),
        "plain": ("Below is an instruction that describes a task. Write a response that appropriately "
                  "completes the request.\n\n### Instruction:\n{instruction}\n\n### Response:"),
    },
    "vicuna": {"input": _VICUNA + "\nInput:\n{input} ASSISTANT:", "plain": _VICUNA + " ASSISTANT:"},
    "none": {"input": "{instruction}\n{input}\n", "plain": "{instruction}\n"},
}
#: The reverse instruction of Selective Reflection-Tuning (verbatim), put through the template.
REVERSE_INSTRUCTION = ("Below is the response to an instruction, please guess the corresponding "
                       "instruction for the given response.\n{response}\nGenerate the instruction for the "
                       "above response.")


class IFDScorer(BaseScorer):
    """Adds IFD columns (`ifd_score`, `ifd_conditioned_loss`, `ifd_direct_loss`, `ifd_status`).

    For `ds.map(scorer, batched=True[, with_rank=True, num_proc=N])`, like `SelectITScorer`; the
    options are the fields of `IFDConfig` (``help(IFDScorer)``), checked here (ConfigError).

    Example:
        >>> ds = ds.map(IFDScorer("gpt2", preset="superfiltering"), batched=True)
        >>> ds[0]["ifd_score"], ds[0]["ifd_status"]
        (0.83, 'ok')
    """

    method = "ifd"
    config_class = IFDConfig
    keeps_input = True
    # The probes of the conditioned texts of rows with an input come after those without one.
    probes = BaseScorer.probes + (_Row("A", "C", "B"), _Row("z", "x", "y"))
    reverse = False

    def _texts(self, row: _Row, state: Any = None) -> list:
        """(group, text, offset of the read span) of the conditioned and the direct text; the
        conditioned texts of rows with and without an input start with different template heads."""
        templates = TEMPLATES[self.config.template]
        if self.reverse:  # the read span is X: instruction and input joined with no separator
            head = templates["plain"].format(instruction=REVERSE_INSTRUCTION.format(response=row.response))
            target = row.instruction + (row.input or "")
        else:
            head = (templates["input"].format(instruction=row.instruction, input=row.input) if row.input
                    else templates["plain"].format(instruction=row.instruction))
            target = row.response
        direct = self.config.direct_prefix
        return [(("conditioned", bool(row.input) and not self.reverse), head + target, len(head)),
                (("direct",), direct + target, len(direct))]

    def _method_info(self, state: Any) -> dict:
        templates = TEMPLATES[self.config.template]
        return {
            "method_description": ("Reversed IFD (Selective Reflection-Tuning, Li et al. 2024): r-IFD = "
                                   if self.reverse else "IFD (Cherry LLM, Li et al. 2023): IFD = ")
            + ("exp s(.|cond) / exp s(.)" if self.config.variant == "ppl" else "s(.|cond) / s(.)"),
            "template": self.config.template,
            "templates": dict(templates) if not self.reverse else {"plain": templates["plain"]},
            "direct_prefix": self.config.direct_prefix,
            "variant": self.config.variant,
            "preset": self.config.preset,
            "token_rule": "read tokens from len(encode(text[:offset])) (BOS counted); loss of t from logits "
                          "at t-1, fp32 log-softmax; right truncation with the same number of read tokens in "
                          "both texts",
            "bos_token": getattr(state.tokenizer, "bos_token", None),
            **({"reverse_instruction": REVERSE_INSTRUCTION} if self.reverse else {}),
        }

    def _items(self, rows: list, statuses: list, state: Any) -> list:
        """Conditioned and direct items of every scorable row, cut to max_length on the right."""
        max_length = state.max_length
        scored = [r for r, status in enumerate(statuses) if status is None]
        texts = [entry for r in scored for entry in self._texts(rows[r], state)]
        full = self.engine.encode([text for _, text, _ in texts], state)
        # The authors' rule: the read span starts at len(encode(text[:offset])), BOS counted.
        starts = [len(ids) for ids in self.engine.encode([text[:offset] for _, text, offset in texts], state)]
        items = []
        what = "instruction" if self.reverse else "response"
        for r, (c_group, _, _), (d_group, _, _), c_ids, d_ids, c_start, d_start in zip(
                scored, texts[::2], texts[1::2], full[::2], full[1::2], starts[::2], starts[1::2]):
            n_cond, n_direct = len(c_ids) - c_start, len(d_ids) - d_start
            # Tokens of the read span each text keeps after the right cut; the same count in both.
            keep = min(min(len(c_ids), max_length) - c_start, min(len(d_ids), max_length) - d_start)
            truncated = keep < n_cond or keep < n_direct
            if keep <= 0 or n_cond <= 0 or n_direct <= 0:
                short = keep <= 0 and max(n_cond, n_direct) > 0
                statuses[r] = row_status(f"max_length={max_length} leaves no {what} tokens to score; raise "
                                         "max_length" if short else f"empty {what} after tokenizing")
                continue
            c_ids, d_ids = c_ids[:c_start + keep], d_ids[:d_start + keep]
            if max(d_start, 1) >= len(d_ids):  # no BOS and one read token: nothing to score alone
                statuses[r] = row_status(f"the {what} has no token with context in the direct text "
                                         "(no BOS token)")
                continue
            for slot, group, ids, start in ((0, c_group, c_ids, c_start), (1, d_group, d_ids, d_start)):
                items.append(Item(row=r, slot=slot, group=group, ids=list(ids), truncated=truncated,
                                  loss_from=max(start, 1)))
        return items

    def token_ids(self, batch: Mapping[str, Sequence[Any]], rank: Optional[int] = None) -> list:
        """Per row: (conditioned ids, direct ids, first read token of each), or None when unscorable."""
        rows = self._rows(batch)
        items = self._items(rows, [row.error for row in rows], self.engine.state(rank))
        out: list = [None] * len(rows)
        for cond, direct in zip(items[::2], items[1::2]):  # each row's two items, in slot order
            out[cond.row] = (list(cond.ids), list(direct.ids), (cond.loss_from, direct.loss_from))
        return out

    def _score(self, rows: list, statuses: list, state: Any) -> dict:
        items = self._items(rows, statuses, state)
        nan = float("nan")
        out = np.full((len(rows), 2), nan)
        status = self._read(items, state, TokenLosses(), out, statuses,
                            value_of=lambda value: float(value.mean()) if len(value) else nan)
        cond, direct = out[:, 0], out[:, 1]  # NaN for every row with an error status
        with np.errstate(divide="ignore", invalid="ignore"):
            if self.config.variant == "ppl":
                scores = [math.exp(d) for d in (cond - direct).tolist()]
            else:  # a zero direct loss: inf, or NaN when the conditioned loss is zero too
                scores = np.where(direct != 0, cond / direct, np.where(cond > 0, math.inf, nan))
        return {"score": scores, "conditioned_loss": cond, "direct_loss": direct, "status": status}


class ReverseIFDScorer(IFDScorer):
    """Adds reversed-IFD columns (`rifd_score`, `rifd_conditioned_loss`, `rifd_direct_loss`, `rifd_status`).

    X (instruction and input joined with no separator, as the authors do) is read after
    `template(reverse prompt with Y)` and alone. Options: the fields of `ReverseIFDConfig`, whose
    defaults follow Selective Reflection-Tuning.

    Example:
        >>> ds = ds.map(ReverseIFDScorer(), batched=True)
        >>> pairs = ds.filter(lambda r: r["ifd_score"] < 1 and r["rifd_score"] < 1)
    """

    method = "rifd"
    config_class = ReverseIFDConfig
    reverse = True
