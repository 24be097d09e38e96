"""Loading weights quietly: a CLI's output is its own progress bars and its summary, not the libraries'.

transformers 5 draws a "Loading weights" tqdm bar for every `from_pretrained` (and huggingface_hub one
per file it fetches); `--quiet` cannot reach them, so every loader in this package runs inside
`quiet_loading()`, which turns both off for its duration and restores what was set before.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def quiet_loading() -> Iterator[None]:
    import huggingface_hub.utils as hub_utils
    from transformers.utils import logging as transformers_logging

    bars_were_on = transformers_logging.is_progress_bar_enabled()
    hub_bars_were_off = hub_utils.are_progress_bars_disabled()
    transformers_logging.disable_progress_bar()
    hub_utils.disable_progress_bars()
    try:
        yield
    finally:
        if bars_were_on:
            transformers_logging.enable_progress_bar()
        if not hub_bars_were_off:
            hub_utils.enable_progress_bars()
