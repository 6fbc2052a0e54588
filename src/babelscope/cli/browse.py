"""`babelscope browse`: a local feature browser (pages + JSON API) on 127.0.0.1."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from babelscope.cli._common import command

if TYPE_CHECKING:
    from babelscope.report.browse import BrowseConfig


def register(sub: argparse._SubParsersAction) -> None:
    command(sub, "browse", run, "Serve a dashboard site or a feature store locally, with a JSON API.",
            description="Serve SITE (from `babelscope dashboard`) or a feature store directory (pages rendered "
                        "on demand) at http://HOST:PORT/, with /api/feature/{id} and /api/search?q=.",
            settings="babelscope.report.browse:BrowseConfig")


def run(cfg: BrowseConfig) -> int:
    import sys

    from babelscope.report.browse import serve

    if cfg.host not in ("127.0.0.1", "localhost", "::1"):
        print(f"babelscope: warning: serving corpus text on {cfg.host}, reachable from other machines",
              file=sys.stderr)
    serve(cfg.path, host=cfg.host, port=cfg.port, model_dir=cfg.model, sae_dir=cfg.sae, use_model=cfg.use_model,
          tsea_dir=cfg.tsea, device=cfg.device, force=cfg.force)
    return 0
