"""Paging and searching a VM's log across rotated files by offset and record index."""

from __future__ import annotations

import random

import pytest

from hypr_engine.errors import InvalidArgument
from hypr_engine.logview import STEP, LogView


@pytest.fixture
def log(tmp_path):
    rnd = random.Random(7)
    path = tmp_path / "log"
    lines = []
    n = 0
    for f in (path.with_name("log.2"), path.with_name("log.1"), path):
        chunk = []
        for _ in range(rnd.randint(STEP * 2, STEP * 4)):
            kind = rnd.choice("oeOEx")
            chunk.append(f"{1000 + n} {kind} line {n}{' needle' if n % 777 == 0 else ''}".encode())
            n += 1
        lines += chunk
        f.write_bytes(b"\n".join(chunk) + b"\n" + (b"99 o torn" if f == path else b""))
    offsets, pos = [], 0
    for line in lines:
        offsets.append(pos)
        pos += len(line) + 1
    return path, lines, offsets


def test_offsets_and_indexes_name_the_same_lines(log):
    path, lines, offsets = log
    view = LogView(path)
    assert view.total_records == len(lines)  # the torn last line does not count yet
    for i in [0, 1, STEP - 1, STEP, STEP + 1, 3 * STEP, len(lines) // 2, len(lines) - 1]:
        assert view.offset_of_index(i) == offsets[i]
        assert view.index_of_offset(offsets[i]) == (i, offsets[i])
        assert view.index_of_offset(offsets[i] + 2) == (i, offsets[i])


def test_pages_forwards_backwards_and_at_the_end(log):
    path, lines, offsets = log
    view = LogView(path)
    page = view.page(index=5000, limit=10)
    assert [r.index for r in page.records] == list(range(5000, 5010))
    assert [r.offset for r in page.records] == offsets[5000:5010]
    assert [f"{r.record.time_ns} {r.record.kind} ".encode() + r.record.payload for r in page.records] == lines[5000:5010]
    assert (page.next_index, page.next_offset) == (5010, offsets[5010])
    back = view.page(index=5000, limit=10, backwards=True)
    assert [r.index for r in back.records] == list(range(4990, 5000))
    assert view.page(offset=offsets[123], limit=1).records[0].index == 123
    end = view.page(index=len(lines) - 2, limit=10)
    assert len(end.records) == 2 and end.next_index == len(lines) and end.total_records == len(lines)
    with pytest.raises(InvalidArgument):
        view.page(index=-1)


def test_the_index_follows_growth_and_replacement(log):
    path, lines, _ = log
    assert LogView(path).total_records == len(lines)
    with open(path, "ab") as f:
        f.write(b" finished\n100 o one more\n")
    assert LogView(path).total_records == len(lines) + 2
    path.write_bytes(b"1 o fresh\n")  # rotated: the live file starts over
    older = sum(f.read_bytes().count(b"\n") for f in (path.with_name("log.2"), path.with_name("log.1")))
    view = LogView(path)
    assert view.total_records == older + 1
    assert view.page(index=older).records[0].record.payload == b"fresh"


@pytest.mark.parametrize("pattern,regex,ignore_case", [
    ("needle", False, False), ("NEEDLE", False, True), (r"ne+dle$", True, False), (r"ne+dle", True, False),
])
def test_search_finds_every_output_line_with_its_position(log, pattern, regex, ignore_case):
    path, lines, offsets = log
    view = LogView(path)
    found = [m for batch, _ in view.search(pattern, regex=regex, ignore_case=ignore_case) for m in batch]
    expected = [i for i, line in enumerate(lines) if line.split(b" ")[1] in (b"o", b"O", b"e", b"E")
                and b"needle" in line]
    assert [m.index for m in found] == expected
    assert [m.offset for m in found] == [offsets[i] for i in expected]
    later = [m for batch, _ in view.search(pattern, regex=regex, ignore_case=ignore_case,
                                             from_offset=offsets[expected[2]]) for m in batch]
    assert [m.index for m in later] == expected[2:]


def test_search_rejects_bad_patterns(log):
    path, _, _ = log
    with pytest.raises(InvalidArgument):
        list(LogView(path).search("(", regex=True))
    with pytest.raises(InvalidArgument):
        list(LogView(path).search(""))
