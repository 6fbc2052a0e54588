"""`babelscope dashboard`: static HTML feature pages and a searchable index from a feature store."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from babelscope.cli._common import command
from babelscope.files import dumps

if TYPE_CHECKING:
    from babelscope.report.dashboard import DashboardConfig


def register(sub: argparse._SubParsersAction) -> None:
    command(sub, "dashboard", run, "Feature dashboards (HTML, offline) from a feature store.",
            description="One page per feature (activation histogram with density, logit histogram and top/"
                        "bottom logits, top examples coloured by activation and underlined by the feature's "
                        "loss effect, activation intervals) and an index to search and sort features.",
            settings="babelscope.report.dashboard:DashboardConfig")


def run(cfg: DashboardConfig) -> int:
    from babelscope.report.dashboard import make_site

    print(dumps(make_site(cfg)))
    return 0
