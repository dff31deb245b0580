"""The README's Python blocks are valid Python (fast) and run as written, in order (slow)."""

import re
from pathlib import Path

import pytest

README = Path(__file__).resolve().parents[1] / "README.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", README.read_text(), flags=re.DOTALL | re.MULTILINE)


def test_every_python_block_is_valid_python():
    assert len(BLOCKS) >= 4
    for i, block in enumerate(BLOCKS):
        compile(block, f"README.md, python block {i + 1}", "exec")


@pytest.mark.slow
def test_the_python_blocks_run_in_order(capsys):
    """As a reader would paste them into one session: each block may use the names of those
    before it (the tour's ``splits``, ``apply_fn``, ``params``...)."""
    namespace: dict = {"__name__": "readme"}
    for i, block in enumerate(BLOCKS):
        exec(compile(block, f"README.md, python block {i + 1}", "exec"), namespace)
    printed = capsys.readouterr().out
    assert "best validation loss" in printed  # the tour prints its result
    assert "(3, 16)" in printed  # the search: 3 seeds x 16 learning rates
