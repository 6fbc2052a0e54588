"""Helpers shared by several test modules (pytest puts this folder on sys.path)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import torch

from babelscope.cli import main


def run_cli(*args) -> int:
    """Run the `babelscope` command in-process and return its exit code."""
    try:
        main([str(a) for a in args])
    except SystemExit as e:
        return int(e.code or 0)
    return 0


def three_families(n_layer: int = 2) -> list:
    """Small random Llama (our `tiny` preset, 2 layers), GPT-2 and GPT-NeoX models, vocabulary 300."""
    from transformers import GPT2Config, GPT2LMHeadModel, GPTNeoXConfig, GPTNeoXForCausalLM, LlamaForCausalLM

    from babelscope.models import llama_config

    torch.manual_seed(0)
    return [
        LlamaForCausalLM(llama_config("tiny", 300)),
        GPT2LMHeadModel(GPT2Config(vocab_size=300, n_embd=32, n_layer=n_layer, n_head=4, n_positions=64,
                                   bos_token_id=0, eos_token_id=0)),
        GPTNeoXForCausalLM(GPTNeoXConfig(vocab_size=300, hidden_size=32, num_hidden_layers=n_layer,
                                         num_attention_heads=4, intermediate_size=64, max_position_embeddings=64,
                                         bos_token_id=0, eos_token_id=0)),
    ]


def random_sae(d_in: int, d_sae: int, k: int = 4, seed: int = 0, hook: str = "layers.0.resid_post"):
    """A TopK SAE on L2-normalised inputs with random unit decoder rows (encoder = decoder transposed)."""
    from babelscope.sae import SAE, SAEConfig

    sae = SAE(SAEConfig(arch="topk", d_in=d_in, d_sae=d_sae, k=k, hook_name=hook, normalize="l2"))
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        sae.W_dec.copy_(torch.nn.functional.normalize(torch.randn(d_sae, d_in, generator=g), dim=1))
        sae.W_enc.copy_(sae.W_dec.T)
        sae.b_dec.copy_(torch.randn(d_in, generator=g) * 0.1)
    return sae.eval()



def save_spread_sae(model_dir, out: Path, hook: str = "layers.1.mlp.act") -> None:
    """Save a TopK SAE (64 -> 32, k 4) for the tiny model with a large random encoder, so that its features
    fire on varied tokens: the analysis commands' tests read it."""
    from babelscope.sae.base import SAE, SAEConfig
    from babelscope.sae.io import save_sae

    sae = SAE(SAEConfig(arch="topk", d_in=64, d_sae=32, k=4, hook_name=hook, model=str(model_dir), normalize="l2"))
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        sae.W_enc.copy_(torch.randn(64, 32, generator=g) * 3)
        sae.W_dec.copy_(torch.randn(32, 64, generator=g))
    save_sae(sae, out)

_DRIVER = textwrap.dedent("""
    import os, sys
    import torch
    torch.set_num_threads(1)
    rank = int(os.environ["RANK"])
    log = open(os.path.join(sys.argv[1], f"writes-{rank}.txt"), "w")
    real = os.replace
    def logged(src, dst):  # every atomic write ends in os.replace: record who wrote what
        log.write(str(dst) + "\\n"); log.flush()
        return real(src, dst)
    os.replace = logged
    from babelscope.cli import main
    try:
        main(sys.argv[2:])
    except SystemExit as e:
        sys.exit(e.code)
""")


def torchrun_cli(tmp: Path, args: list, *, nproc: int = 2, port: int = 29540,
                 timeout: int = 600) -> tuple[subprocess.CompletedProcess, dict[int, list[str]]]:
    """`torchrun --nproc_per_node N -m babelscope.cli ARGS` on gloo (one thread each); returns the finished
    process and, per rank, the paths it wrote atomically (every os.replace)."""
    logs = Path(tmp) / "torchrun-writes"
    logs.mkdir(parents=True, exist_ok=True)
    driver = logs / "driver.py"
    driver.write_text(_DRIVER)
    env = {**os.environ, "OMP_NUM_THREADS": "1", "BABELSCOPE_NO_PROGRESS": "1"}
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_port",
           str(port), str(driver), str(logs), *[str(a) for a in args]]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout)
    writes = {rank: (logs / f"writes-{rank}.txt").read_text().split() if (logs / f"writes-{rank}.txt").exists()
              else [] for rank in range(nproc)}
    return r, writes
