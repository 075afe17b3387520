"""Parsing the workload log file kestrel writes."""

from __future__ import annotations

from hypr_engine.logfile import exit_record, parse_line, read_records, tail_offset


def _write(path, lines):
    path.write_bytes(b"".join(l + b"\n" for l in lines))


def test_records_and_exit(tmp_path):
    log = tmp_path / "log"
    _write(log, [b"1 x start 5", b"2 o hello world", b"3 E par", b"4 e tial", b"5 x error boom", b"6 x exit 3"])
    records, end = read_records(log)
    assert [r.kind for r in records] == ["x", "o", "E", "e", "x", "x"]
    assert records[1].payload == b"hello world" and records[1].stream == "stdout" and records[1].complete
    assert not records[2].complete
    assert end == log.stat().st_size
    assert exit_record(log) == (3, "boom")


def test_torn_last_line_is_not_read(tmp_path):
    log = tmp_path / "log"
    log.write_bytes(b"1 o a\n2 o b")
    records, end = read_records(log)
    assert [r.payload for r in records] == [b"a"]
    assert end == 6


def test_garbage_lines_are_ignored():
    assert parse_line(b"not a record") is None
    assert parse_line(b"12 oo x") is None
    assert parse_line(b"12 o") is not None


def test_tail_counts_output_records_only(tmp_path):
    log = tmp_path / "log"
    lines = [b"1 x start 1"] + [f"{i} o line{i}".encode() for i in range(2, 20000)] + [b"20000 x exit 0"]
    _write(log, lines)
    records, _ = read_records(log, tail_offset(log, 3))
    assert [r.payload for r in records if r.kind == "o"] == [b"line19997", b"line19998", b"line19999"]
    assert tail_offset(log, 0) == log.stat().st_size
    records, _ = read_records(log, tail_offset(log, 10**6))
    assert len(records) == len(lines)


def test_a_later_boot_resets_the_exit(tmp_path):
    log = tmp_path / "log"
    _write(log, [b"1 x start 1", b"2 x exit 1", b"3 x start 1"])
    assert exit_record(log) == (None, None)
