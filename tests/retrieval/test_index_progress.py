"""`fmflow index` says how far it is when stderr is not a terminal (a log, CI): a line every few seconds."""

from __future__ import annotations

import re

from index_cli import index, write

LINE = re.compile(r"^fmflow: indexing: (\d+)/(\d+) files, (\d+) chunks, (\d+) chunks/s(?:, (\S+))?$")


def test_progress_lines_off_a_terminal(tmp_path, tiny_bert):
    for i in range(3):
        write(tmp_path, f"docs/f{i}.md", "\n\n".join(f"Paragraph {n} of file {i} holds more words than half a chunk." for n in range(200)))
    result = index(tmp_path, "docs", "--collection", "docs", "--chunk-size", "100", "--chunk-overlap", "0",
                   "--embedding", f"hf:{tiny_bert}", FMFLOW_PROGRESS_SECONDS="0")
    assert result.returncode == 0, result.stderr
    progress = [LINE.match(line) for line in result.stderr.splitlines()]
    assert all(progress), result.stderr
    counts = [(int(m.group(1)), int(m.group(3))) for m in progress]
    assert counts == sorted(counts)
    assert counts[-1] == (3, 600)
    assert len({chunks for _, chunks in counts}) >= 6  # within files, a line per batch stored
    assert {m.group(5) for m in progress if m.group(5)} == {f"docs/f{i}.md" for i in range(3)}
    assert result.stdout.startswith("indexed 3 files, 600 chunks (600 added")

