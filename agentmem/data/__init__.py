"""Episode data: the JSONL format and its builders (synthetic facts, bAbI, LoCoMo).

Build files with ``python -m agentmem.data build --kind synthetic|babi|locomo ...``.
"""

from agentmem.data.babi import read_babi, read_babi_dir
from agentmem.data.episodes import Episode, read_jsonl, write_jsonl
from agentmem.data.locomo import CATEGORY_NAMES, read_locomo
from agentmem.data.synthetic import SyntheticConfig, generate

__all__ = [
    "CATEGORY_NAMES", "Episode", "SyntheticConfig", "generate", "read_babi", "read_babi_dir",
    "read_jsonl", "read_locomo", "write_jsonl",
]
