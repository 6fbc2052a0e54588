"""The model behind the server: one loaded model and tokenizer, one request at a time, with deadlines.

Requests take turns on a lock (a small CPU/GPU model needs no batching across requests); a request that cannot
get its turn before its deadline is a 503 with Retry-After, and generation stops at the deadline.
"""

from __future__ import annotations

import contextlib
import math
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from babelscope.serve.protocol import APIError, _Request, cut_at_stop, stops


@dataclass
class Sample:
    """One completion: its new token ids (EOS included when it ended there), text (cut at a stop string),
    finish reason, the tokens generated (for usage) and how many of `ids` the cut text covers."""

    ids: list[int]
    text: str
    finish: str
    n_tokens: int
    kept: int


def _deadline_passed(deadline: float | None) -> bool:
    return deadline is not None and time.monotonic() >= deadline


class Engine:
    """The loaded model and tokenizer behind a lock; turns prompts into token ids, samples and scores."""

    def __init__(self, model_dir: str | Path, device: str = "auto", truncate_prompts: bool = False):
        from babelscope.models import load_model

        self.truncate = truncate_prompts
        self.model, self.tok = load_model(model_dir, device=device)
        if self.tok.pad_token_id is None:
            self.tok.pad_token = self.tok.eos_token
        self.limit = int(getattr(self.model.config, "max_position_embeddings", 2048))
        self.vocab = int(self.model.get_input_embeddings().weight.shape[0])
        self.lock = threading.Lock()

    # ---- prompts --------------------------------------------------------------------------------------
    def encode(self, prompt: str | list[int]) -> list[int]:
        """A text prompt's token ids (BOS first, as the tokenizer adds it); token ids are used as given."""
        if isinstance(prompt, str):
            return self.tok(prompt)["input_ids"]
        if not prompt:
            raise APIError(400, "a token-id prompt must not be empty", "prompt")
        bad = next((t for t in prompt if not 0 <= t < self.vocab), None)
        if bad is not None:
            raise APIError(400, f"token id {bad} is outside this model's vocabulary (0..{self.vocab - 1})", "prompt")
        return list(prompt)

    def budget(self, ids: list[int], max_tokens: int | None, default: int | None = 16) -> tuple[list[int], int]:
        """(prompt token ids, new tokens allowed; `default` when not asked, None: the rest of the context).

        A prompt that leaves no room for the asked-for tokens is a 400 saying the limit, as in the OpenAI API
        (`max_tokens: 0` only needs the prompt to fit), unless the engine truncates prompts: then its first
        tokens are dropped (after BOS) so that the asked-for tokens fit.
        """
        if max_tokens is not None:
            want = max_tokens
        else:
            want = default or (self.limit - len(ids) if len(ids) < self.limit else self.limit // 2)
        if self.truncate and len(ids) + want > self.limit:
            want = min(want, self.limit // 2)
            keep = self.limit - want
            if len(ids) > keep:
                bos = ids[:1] if ids[0] == self.tok.bos_token_id else []
                ids = bos + ids[len(ids) - (keep - len(bos)):]
        room = self.limit - len(ids)
        if room < (1 if want else 0):
            raise APIError(400, f"prompt is {len(ids)} tokens; this model's context is {self.limit} tokens "
                                f"(prompt and completion together), so at most {self.limit - 1} prompt tokens "
                                "leave room for one new token", "prompt", "context_length_exceeded")
        return ids, min(want, room)

    # ---- turns ----------------------------------------------------------------------------------------
    @contextlib.contextmanager
    def turn(self, deadline: float | None) -> Iterator[None]:
        """Hold the model; a 503 with Retry-After when the turn does not come before `deadline`."""
        wait = -1 if deadline is None else max(0.0, deadline - time.monotonic())
        if not self.lock.acquire(timeout=wait):
            raise APIError(503, "the server is busy: the request's time limit passed while it waited for the model",
                           code="server_busy", headers={"Retry-After": "1"})
        try:
            yield
        finally:
            self.lock.release()

    def _generate_kwargs(self, req: _Request, max_new: int, deadline: float | None) -> dict:
        from transformers import StoppingCriteriaList

        sample = req.temperature > 0
        return dict(max_new_tokens=max_new, do_sample=sample, temperature=req.temperature if sample else None,
                    top_p=req.top_p if sample and req.top_p < 1 else None, top_k=None,
                    pad_token_id=self.tok.pad_token_id, eos_token_id=self.tok.eos_token_id,
                    stopping_criteria=StoppingCriteriaList([_Until(lambda: _deadline_passed(deadline))]))

    def _inputs(self, ids: list[int]):
        import torch

        device = next(self.model.parameters()).device
        return torch.tensor([ids], device=device), torch.ones((1, len(ids)), dtype=torch.long, device=device)

    # ---- generation -----------------------------------------------------------------------------------
    def sample(self, ids: list[int], req: _Request, max_new: int, deadline: float | None = None) -> list[Sample]:
        """`req.n` completions of the prompt `ids` (none generated when `max_new` is 0)."""
        import torch

        if max_new == 0:
            return [Sample([], "", "length", 0, 0) for _ in range(req.n)]
        with self.turn(deadline), torch.inference_mode():
            if req.seed is not None:
                torch.manual_seed(req.seed)
            input_ids, mask = self._inputs(ids)
            out = self.model.generate(input_ids=input_ids, attention_mask=mask, num_return_sequences=req.n,
                                      **self._generate_kwargs(req, max_new, deadline))
        if _deadline_passed(deadline):
            raise APIError(504, "generation did not finish within the request's time limit (serve --timeout)",
                           code="timeout")
        return [self._finish(row, req) for row in out[:, len(ids):].tolist()]

    def _finish(self, row: list[int], req: _Request) -> Sample:
        eos = self.tok.eos_token_id
        ended = eos in row
        new = row[:row.index(eos) + 1] if ended else row
        text = self.tok.decode(new, skip_special_tokens=True)
        cut, stopped = cut_at_stop(text, stops(req.stop))
        kept = len(new)
        if stopped:  # tokens whose text starts before the cut
            from babelscope.serve.logprobs import text_offsets

            kept = sum(1 for o in text_offsets(self.tok, new)[1] if o < len(cut))
        return Sample(new, cut, "stop" if stopped or ended else "length", len(new), kept)

    def score(self, sequences: list[list[int]], top_n: int, deadline: float | None = None):
        """Log-probabilities of every token of each sequence (see `serve.logprobs.score`)."""
        from babelscope.serve.logprobs import score

        with self.turn(deadline):
            return score(self.model, sequences, top_n, pad_id=self.tok.pad_token_id or 0)

    def stream(self, ids: list[int], req: _Request, max_new: int,
               deadline: float | None = None) -> Iterator[tuple[str, str | None, int]]:
        """Yield (text piece, None, 0) as tokens are sampled, then ("", finish_reason, completion tokens); the
        deadline ends the stream with finish_reason "length"."""
        import torch
        from transformers import TextIteratorStreamer

        stop_now = threading.Event()

        class _Counting(TextIteratorStreamer):
            tokens, prompt_seen = 0, False

            def put(self, value):
                if self.prompt_seen:
                    self.tokens += int(value.numel())
                self.prompt_seen = True
                super().put(value)

        if max_new == 0:
            yield "", "length", 0
            return
        stop_list = stops(req.stop)
        with self.turn(deadline):
            if req.seed is not None:
                torch.manual_seed(req.seed)
            input_ids, mask = self._inputs(ids)
            timeout = 600 if deadline is None else max(1.0, math.ceil(deadline - time.monotonic()) + 5)
            streamer = _Counting(self.tok, skip_prompt=True, skip_special_tokens=True, timeout=timeout)
            kwargs = dict(input_ids=input_ids, attention_mask=mask, streamer=streamer,
                          **self._generate_kwargs(req, max_new, deadline))
            kwargs["stopping_criteria"].append(_Until(stop_now.is_set))
            failure: list[BaseException] = []

            def work() -> None:
                try:
                    self.model.generate(**kwargs)
                except BaseException as e:  # surfaced in the request below, never lost in the thread
                    failure.append(e)
                    streamer.end()

            worker = threading.Thread(target=work, daemon=True)
            worker.start()
            text, sent, finish, exhausted = "", 0, None, False
            try:
                for piece in streamer:
                    text += piece
                    cut, stopped = cut_at_stop(text, stop_list)
                    # Hold back a tail that could still become a stop string.
                    hold = max((len(s) - 1 for s in stop_list), default=0)
                    safe = len(cut) if stopped else max(sent, len(text) - hold)
                    if safe > sent:
                        yield text[sent:safe], None, 0
                        sent = safe
                    if stopped:
                        finish = "stop"
                        break
                else:
                    exhausted = True
            finally:
                stop_now.set()
                if not exhausted:
                    for _ in streamer:  # drain so that the worker can finish
                        pass
                worker.join()
            if failure:
                raise failure[0]
        if finish is None:
            if sent < len(text):
                yield text[sent:], None, 0
            finish = "length" if streamer.tokens >= max_new or _deadline_passed(deadline) else "stop"
        yield "", finish, streamer.tokens


class _Until:
    """A stopping criterion that ends generation for every row once `flag()` is true."""

    def __init__(self, flag):
        self.flag = flag

    def __call__(self, input_ids, scores, **kwargs):
        import torch

        return torch.full((input_ids.shape[0],), self.flag(), dtype=torch.bool, device=input_ids.device)
