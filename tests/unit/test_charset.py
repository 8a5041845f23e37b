"""The whitelist of visible characters: from Unicode 14.0, the same in SQL and Python."""

from __future__ import annotations

import re
import unicodedata

import duckdb
import pytest

from segops.engine import charset


def test_the_table_is_what_unicode_14_gives_or_a_subset_of_a_newer_unicode() -> None:
    table = charset.visible()
    derived = charset.derive()
    if unicodedata.unidata_version == charset.UNICODE_VERSION:
        assert table == derived
    else:  # later versions only assign more code points: nothing in the table may drop out
        allowed = {c for a, b in derived for c in range(a, b + 1)}
        assert all(c in allowed for a, b in table for c in range(a, b + 1))


def test_ranges_are_sorted_disjoint_and_leave_out_every_refused_category() -> None:
    table = charset.visible()
    assert all(a <= b < c for (a, b), (c, _) in zip(table, table[1:], strict=False))
    for a, b in table:
        for c in range(a, b + 1):
            assert unicodedata.category(chr(c))[0] in "LMNPS", f"U+{c:04X}"
    hidden = [c for a, b in charset.INVISIBLE for c in range(a, b + 1)]
    points = {c for a, b in table for c in range(a, b + 1)}
    assert not points.intersection(hidden)


@pytest.mark.parametrize("exclude", ["", ',"#', "a", "\U0010ffff"])
def test_sql_and_python_classes_hold_the_same_characters(exclude: str) -> None:
    sample = [chr(c) for c in range(0x3000)] + [chr(c) for c in range(0xFE00, 0x10000)]
    sample += [chr(c) for c in range(0x1F000, 0x1FB00)] + [chr(c) for c in range(0xE0000, 0xE0200)]
    sample = [s for s in sample if not 0xD800 <= ord(s) <= 0xDFFF]
    pattern = re.compile(charset.python_class(exclude))
    python = [pattern.fullmatch(s) is not None for s in sample]
    con = duckdb.connect()
    con.execute("CREATE TABLE t (i INTEGER, v VARCHAR)")
    con.execute("INSERT INTO t SELECT unnest($1), unnest($2)", [list(range(len(sample))), sample])
    sql_class = charset.sql_class(exclude)
    rows = con.execute(f"SELECT i, regexp_full_match(v, '{sql_class}') FROM t ORDER BY i")
    assert [r[1] for r in rows.fetchall()] == python
    assert not any(pattern.fullmatch(c) for c in exclude)
    assert pattern.fullmatch("b") and pattern.fullmatch("é") and not pattern.fullmatch(" ")
