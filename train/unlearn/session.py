"""What the stages and the methods of one unlearning run share (`recipe.setup` builds it)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import torch

from orin_unlearn.edge.tokenizer import ChatTokenizer
from orin_unlearn.train.unlearn.config import UnlearnConfig
from orin_unlearn.train.unlearn.data import UnlearnData


@dataclass
class Session:
    cfg: UnlearnConfig
    run: Path
    base_dir: Path
    tokenizer: ChatTokenizer
    model: torch.nn.Module
    data: UnlearnData
    device: str


def autocast(s: Session) -> torch.autocast:
    """bf16 autocast for scoring and training when the config asks for it (a no-op otherwise)."""
    return torch.autocast(s.device.split(":")[0], dtype=torch.bfloat16, enabled=s.cfg.autocast == "bfloat16")
