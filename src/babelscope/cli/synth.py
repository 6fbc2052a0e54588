"""`babelscope synth`: synthetic stories from an OpenAI-compatible endpoint with the study's prompt."""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import TYPE_CHECKING

from babelscope.cli._common import command

if TYPE_CHECKING:
    from babelscope.data.synth import SynthConfig


def register(sub: argparse._SubParsersAction) -> None:
    command(sub, "synth", run, "Generate synthetic stories with an OpenAI-compatible chat endpoint.",
            description="Ask a chat model for short stories with the Arabic TinyStories prompt (a verb, a noun "
                        "and an adjective a 3-year-old knows, and story features drawn with Table 6's "
                        "probabilities). Resumable: prompt i always gets id synth-LANG-SEED-i and is never "
                        "written twice. Stories not in the target language, empty, cut by --max-tokens or "
                        "repeated are asked for again, then counted. A summary with token usage and cost is "
                        "saved as OUT.summary.json.",
            settings="babelscope.data.synth:SynthConfig")


def run(cfg: SynthConfig) -> int:
    from babelscope.data.client import OpenAIClient
    from babelscope.data.synth import summary_path, synth_prompt, synthesize
    from babelscope.files import check_output

    if cfg.dry_run:
        for i in range(min(cfg.n, 3)):
            print(json.dumps(synth_prompt(i, cfg.lang, cfg.seed).__dict__, ensure_ascii=False))
        return 0
    check_output(cfg.out, directory=False)
    key = os.environ.get(cfg.api_key_env) or None
    with OpenAIClient(cfg.base_url, key, key_name=cfg.api_key_env, timeout=cfg.timeout,
                      max_retries=cfg.max_retries) as client:
        client.check(cfg.model)
        stats = synthesize(client, cfg)
    gave_up = ", ".join(f"{k} {v}" for k, v in sorted(stats.gave_up.items())) or "none"
    rejected = ", ".join(f"{k} {v}" for k, v in sorted(stats.rejected.items())) or "none"
    print(f"wrote {stats.written} stories ({stats.already} already in {cfg.out}); rejected attempts: {rejected}; "
          f"prompts given up: {gave_up}; HTTP retries {stats.http_retries}; tokens in {stats.prompt_tokens}, out "
          f"{stats.completion_tokens}; cost {stats.cost(cfg.price_in, cfg.price_out):.4f}", file=sys.stderr)
    for reason, message in sorted(stats.errors.items()):
        print(f"first {reason} refusal: {message}", file=sys.stderr)
    if stats.written or stats.already:
        print(f"summary: {summary_path(cfg.out)}", file=sys.stderr)
    if cfg.n > stats.already and not stats.written:
        print(f"babelscope: error: every prompt failed (given up: {gave_up}); nothing was written", file=sys.stderr)
        return 1
    return 0
