"""The README's Python examples run as written (on the real default backbone, offline).

README.md is read when the tests are collected, never copied: every fenced ```` ```python ````
block is one test, named after its line and section.

Rule for blocks that continue earlier ones: a block runs alone, in a fresh temporary working
directory (files it creates land there) and a fresh interpreter, unless it uses a name it does not
define anywhere (and that is no builtin); then, for each such name, the nearest earlier block that
binds it at module level runs first in the same interpreter, together with what that block needs in
turn (so the ``store`` example, which uses ``dm`` and ``state``, runs after the "Use it from Python"
example, not after a block whose function merely has a ``state`` parameter).
A name that no earlier block defines is left as it is: the block then fails as a reader's copy
would. A block opts out with ``<!-- not run: reason -->`` right before it (blank lines between
are allowed); it is then skipped with that reason, and blocks that use its names still run it.
"""

from __future__ import annotations

import ast
import builtins
import os
import re
import subprocess
import sys
import textwrap
from dataclasses import dataclass
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
TIMEOUT_S = 600
_FENCE = re.compile(r"^\s*```(\S*)\s*$")
_OPT_OUT = re.compile(r"^<!--\s*not run:\s*(.*?)\s*-->\s*$")


@dataclass(frozen=True)
class Block:
    line: int  # of the opening fence, 1-based
    section: str
    code: str
    skip: str | None  # the opt-out reason


def readme_blocks(text: str) -> list[Block]:
    """The ```python blocks of ``text``, in order."""
    blocks: list[Block] = []
    lines = text.splitlines()
    section, i = "top", 0
    while i < len(lines):
        line = lines[i]
        fence = _FENCE.match(line)
        if line.startswith("#") and not fence:
            section = line.lstrip("#").strip()
        if not fence:
            i += 1
            continue
        end = next((j for j in range(i + 1, len(lines)) if lines[j].strip() == "```"), len(lines))
        if fence.group(1).lower() in ("python", "py"):
            before = next((lines[j] for j in range(i - 1, -1, -1) if lines[j].strip()), "")
            opt_out = _OPT_OUT.match(before.strip())
            blocks.append(Block(i + 1, section, textwrap.dedent("\n".join(lines[i + 1:end])) + "\n",
                                opt_out.group(1) if opt_out else None))
        i = end + 1
    return blocks


def _names(code: str) -> tuple[set[str], set[str]]:
    """(names the code binds at module level, names it reads that it binds nowhere)."""
    tree = ast.parse(code)
    bound_anywhere: set[str] = set()
    read: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Name):
            (read if isinstance(node.ctx, ast.Load) else bound_anywhere).add(node.id)
        elif isinstance(node, ast.arg):
            bound_anywhere.add(node.arg)
        elif isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound_anywhere.add(node.name)
        elif isinstance(node, ast.alias):
            bound_anywhere.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound_anywhere.add(node.name)
    return _module_bindings(tree), read - bound_anywhere - set(dir(builtins))


def _module_bindings(tree: ast.AST) -> set[str]:
    """Names bound in the module's own scope (not inside functions, classes, lambdas, comprehensions)."""
    bound: set[str] = set()
    todo = list(ast.iter_child_nodes(tree))
    while todo:
        node = todo.pop()
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
            bound.add(node.name)
            continue
        if isinstance(node, ast.Lambda | ast.ListComp | ast.SetComp | ast.DictComp | ast.GeneratorExp):
            continue
        if isinstance(node, ast.Name) and not isinstance(node.ctx, ast.Load):
            bound.add(node.id)
        elif isinstance(node, ast.alias):
            bound.add((node.asname or node.name).split(".")[0])
        elif isinstance(node, ast.ExceptHandler) and node.name:
            bound.add(node.name)
        todo.extend(ast.iter_child_nodes(node))
    return bound


def program(blocks: list[Block], index: int) -> str:
    """Block ``index`` preceded by the earlier blocks it needs (see the module docstring)."""
    needed: set[int] = set()

    def need(k: int) -> None:
        for name in sorted(_names(blocks[k].code)[1]):
            source = next((j for j in range(k - 1, -1, -1) if name in _names(blocks[j].code)[0]), None)
            if source is not None and source not in needed:
                needed.add(source)
                need(source)

    need(index)
    parts = [f"# README.md line {blocks[k].line} ({blocks[k].section})\n{blocks[k].code}"
             for k in sorted(needed) + [index]]
    return "\n".join(parts)


_BLOCKS = readme_blocks(README.read_text(encoding="utf-8"))


def _id(block: Block) -> str:
    return f"L{block.line}-" + re.sub(r"[^a-z0-9]+", "-", block.section.lower()).strip("-")


def test_the_rule_for_blocks_that_continue_earlier_ones():
    text = ("# A\n```python\nx = 1\ndef f(y):\n    return y\n```\n\n```bash\n# not a heading\n```\n"
            "# B\n<!-- not run: needs a GPU -->\n\n```python\ny = x + 1\n```\n"
            "# C\n```python\nprint(f(y), [z for z in range(y)], undefined)\n```\n")
    blocks = readme_blocks(text)
    assert [(b.line, b.section, b.skip) for b in blocks] == [(2, "A", None), (14, "B", "needs a GPU"),
                                                             (18, "C", None)]
    assert program(blocks, 0).count("# README.md") == 1
    assert program(blocks, 1).count("# README.md") == 2  # needs x from A
    assert [line for line in program(blocks, 2).splitlines() if line.startswith("# README")] == [
        "# README.md line 2 (A)", "# README.md line 14 (B)", "# README.md line 18 (C)"]


def test_the_readme_has_python_examples():
    assert _BLOCKS, "README.md has no ```python blocks"
    for block in _BLOCKS:
        ast.parse(block.code)  # a syntax error fails here, whether or not the block runs


@pytest.mark.slow
@pytest.mark.parametrize("index", range(len(_BLOCKS)), ids=[_id(b) for b in _BLOCKS])
def test_readme_example_runs_as_written(index: int, tmp_path: Path):
    block = _BLOCKS[index]
    if block.skip is not None:
        pytest.skip(f"README.md line {block.line}: not run: {block.skip}")
    code = program(_BLOCKS, index)
    (tmp_path / "example.py").write_text(code, encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AGENTMEM_") or k == "AGENTMEM_CACHE_DIR"}
    env.update(HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1")
    run = subprocess.run([sys.executable, "example.py"], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=TIMEOUT_S)
    if run.returncode != 0:
        numbered = "\n".join(f"{n:4d}  {line}" for n, line in enumerate(code.splitlines(), 1))
        pytest.fail(f"README.md line {block.line} ({block.section}) failed with exit code "
                    f"{run.returncode}:\n{run.stderr[-6000:]}\n--- example.py ---\n{numbered}",
                    pytrace=False)
