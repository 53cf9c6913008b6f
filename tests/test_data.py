"""Reading TSV inputs: every rule in embretrain.data, with exact file:line error prefixes."""

from __future__ import annotations

import gzip
import hashlib
import os
import sys

import numpy as np
import pytest

from embretrain.data import (
    MAX_LINE_BYTES,
    NameFile,
    PairFile,
    TripleFile,
    iter_records,
    read_all_triples,
    read_names,
    read_pairs,
    read_triples,
    sha256_file,
)
from embretrain.errors import EXIT_DATA, DataError


def write(tmp_path, name: str, data: bytes | str) -> str:
    path = tmp_path / name
    path.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    return str(path)


def error_of(fn, path) -> str:
    with pytest.raises(DataError) as info:
        fn(path)
    assert info.value.exit_code == EXIT_DATA
    return str(info.value)


# --- happy paths -------------------------------------------------------------------------


def test_read_triples_basic_with_line_numbers(tmp_path):
    path = write(tmp_path, "t.tsv", "a\tr\tb\nb\tr\tc\n")
    tf = read_triples(path)
    assert isinstance(tf, TripleFile)
    assert tf.path == path
    assert tf.triples == [("a", "r", "b"), ("b", "r", "c")]
    assert tf.lines == [1, 2]
    assert len(tf) == 2


def test_accepts_pathlib_path(tmp_path):
    path = tmp_path / "t.tsv"
    path.write_text("a\tr\tb\n")
    assert read_triples(path).path == str(path)


def test_crlf_line_endings(tmp_path):
    path = write(tmp_path, "t.tsv", "a\tr\tb\r\nc\tr\td\r\n")
    assert read_triples(path).triples == [("a", "r", "b"), ("c", "r", "d")]


def test_only_one_trailing_cr_is_stripped(tmp_path):
    # Only the line ending is removed; a stray second "\r" would end up inside a name: refused.
    path = write(tmp_path, "n.txt", "x\r\r\n")
    with pytest.raises(DataError, match=r"n\.txt:1: line contains a carriage return inside it \(at byte 2\)"):
        read_names(path)


def test_blank_lines_skipped_and_line_numbers_kept(tmp_path):
    path = write(tmp_path, "t.tsv", "\na\tr\tb\n\n\r\nc\tr\td\n\n")
    tf = read_triples(path)
    assert tf.triples == [("a", "r", "b"), ("c", "r", "d")]
    assert tf.lines == [2, 5]


def test_missing_final_newline_is_fine(tmp_path):
    path = write(tmp_path, "t.tsv", "a\tr\tb\nc\tr\td")
    assert read_triples(path).triples == [("a", "r", "b"), ("c", "r", "d")]


def test_gzip_is_read_transparently(tmp_path):
    path = str(tmp_path / "t.tsv.gz")
    with gzip.open(path, "wb") as f:
        f.write("a\tr\tb\r\n\nc\tr\td".encode())
    tf = read_triples(path)
    assert tf.triples == [("a", "r", "b"), ("c", "r", "d")]
    assert tf.lines == [1, 3]


def test_names_are_opaque_strings(tmp_path):
    path = write(tmp_path, "t.tsv", "00260881\t_hypernym\t0.50\n/m/0abc\t/r/x y\tNew York City\n")
    tf = read_triples(path)
    assert tf.triples == [("00260881", "_hypernym", "0.50"), ("/m/0abc", "/r/x y", "New York City")]
    assert all(isinstance(x, str) for t in tf.triples for x in t)


def test_unicode_names(tmp_path):
    path = write(tmp_path, "n.txt", "Zürich\n東京\nemoji😀\n café \n")
    assert read_names(path).names == ["Zürich", "東京", "emoji😀", " café "]


def test_read_names(tmp_path):
    path = write(tmp_path, "n.txt", "x\n\ny\nx\n")
    nf = read_names(path)
    assert isinstance(nf, NameFile)
    assert nf.names == ["x", "y", "x"]  # duplicates are kept; Vocab.grow counts them
    assert nf.lines == [1, 3, 4]


def test_read_pairs_default_and_explicit_weights(tmp_path):
    path = write(tmp_path, "p.tsv", "a\tb\na\tc\t2.5\nc\td\t1e-3\n")
    pf = read_pairs(path)
    assert isinstance(pf, PairFile)
    assert pf.pairs == [("a", "b"), ("a", "c"), ("c", "d")]
    assert pf.weights.dtype == np.float32
    np.testing.assert_array_equal(pf.weights, np.array([1.0, 2.5, 1e-3], dtype=np.float32))
    assert pf.lines == [1, 2, 3]


def test_iter_records_yields_line_numbers_and_fields(tmp_path):
    path = write(tmp_path, "x.tsv", "a\tb\n\nc\td\te\n")
    assert list(iter_records(path, (2, 3), "pairs")) == [(1, ["a", "b"]), (3, ["c", "d", "e"])]


def test_read_all_triples_keeps_order(tmp_path):
    p1 = write(tmp_path, "a.tsv", "a\tr\tb\n")
    p2 = write(tmp_path, "b.tsv", "c\tr\td\n")
    files = read_all_triples([p1, p2])
    assert [f.path for f in files] == [p1, p2]
    assert [f.triples for f in files] == [[("a", "r", "b")], [("c", "r", "d")]]


def test_line_of_exactly_max_bytes_is_accepted(tmp_path):
    name = "x" * MAX_LINE_BYTES
    path = write(tmp_path, "n.txt", name + "\r\n")
    assert read_names(path).names == [name]


# --- errors ------------------------------------------------------------------------------


def test_bom_is_an_error_at_line_1(tmp_path):
    path = write(tmp_path, "t.tsv", b"\xef\xbb\xbfa\tr\tb\n")
    msg = error_of(read_triples, path)
    assert msg.startswith(f"{path}:1: ")
    assert "byte-order mark" in msg and "without" in msg


def test_invalid_utf8_names_the_line_and_byte(tmp_path):
    path = write(tmp_path, "t.tsv", b"a\tr\tb\n\nc\tr\td\xff\n")
    msg = error_of(read_triples, path)
    assert msg.startswith(f"{path}:3: invalid UTF-8 at byte 6")


def test_latin1_file_is_rejected(tmp_path):
    path = write(tmp_path, "n.txt", "ok\nZürich\n".encode("latin-1"))
    assert error_of(read_names, path).startswith(f"{path}:2: invalid UTF-8")


def test_wrong_field_count_names_the_line(tmp_path):
    path = write(tmp_path, "delta.tsv", "a\tr\tb\n\na\tr\n")
    msg = error_of(read_triples, path)
    assert msg == f"{path}:3: expected 3 tab-separated fields (head, relation, tail), found 2"


def test_too_many_fields(tmp_path):
    path = write(tmp_path, "t.tsv", "a\tr\tb\tc\n")
    assert error_of(read_triples, path).startswith(f"{path}:1: expected 3 tab-separated fields")


def test_pairs_wrong_field_count(tmp_path):
    path = write(tmp_path, "p.tsv", "a\tb\na\n")
    msg = error_of(read_pairs, path)
    assert msg == f"{path}:2: expected 2 or 3 tab-separated fields (a, b[, weight]), found 1"


def test_name_with_tab_is_an_error(tmp_path):
    path = write(tmp_path, "n.txt", "a\nb\tc\n")
    msg = error_of(read_names, path)
    assert msg.startswith(f"{path}:2: expected 1 name per line")


def test_empty_middle_field(tmp_path):
    path = write(tmp_path, "t.tsv", "a\tr\tb\na\t\tb\n")
    assert error_of(read_triples, path) == f"{path}:2: field 2 (relation) is empty"


def test_trailing_tab(tmp_path):
    path = write(tmp_path, "t.tsv", "a\tr\t\n")
    msg = error_of(read_triples, path)
    assert msg == f"{path}:1: field 3 (tail) is empty (the line ends with a tab)"


def test_trailing_tab_after_full_record(tmp_path):
    path = write(tmp_path, "t.tsv", "a\tr\tb\t\n")
    msg = error_of(read_triples, path)
    assert msg == f"{path}:1: field 4 is empty (the line ends with a tab)"


def test_huge_line(tmp_path):
    path = write(tmp_path, "n.txt", b"ok\n" + b"x" * (MAX_LINE_BYTES + 1) + b"\n")
    msg = error_of(read_names, path)
    assert msg.startswith(f"{path}:2: line is longer than {MAX_LINE_BYTES} bytes")


def test_huge_line_without_newline_at_eof(tmp_path):
    path = write(tmp_path, "n.txt", b"x" * (MAX_LINE_BYTES + 5))
    assert error_of(read_names, path).startswith(f"{path}:1: line is longer")


def test_nul_character(tmp_path):
    path = write(tmp_path, "t.tsv", b"a\tr\tb\na\x00\tr\tb\n")
    assert error_of(read_triples, path) == f"{path}:2: line contains a NUL character (at byte 2)"


def test_utf16_file_is_rejected_not_misread(tmp_path):
    path = write(tmp_path, "n.txt", "abc\n".encode("utf-16-le"))
    assert error_of(read_names, path).startswith(f"{path}:1: line contains a NUL")


@pytest.mark.parametrize("reader, what", [(read_triples, "triples"), (read_pairs, "pairs"), (read_names, "names")])
@pytest.mark.parametrize("content", [b"", b"\n\n\r\n"])
def test_file_without_records(tmp_path, reader, what, content):
    path = write(tmp_path, "empty.tsv", content)
    assert error_of(reader, path) == f"{path}: file has no {what}"


def test_missing_file(tmp_path):
    path = str(tmp_path / "nope.tsv")
    assert error_of(read_triples, path) == f"{path}: file not found"


def test_missing_gz_file(tmp_path):
    path = str(tmp_path / "nope.tsv.gz")
    assert error_of(read_triples, path) == f"{path}: file not found"


def test_directory_given_as_file(tmp_path):
    assert error_of(read_triples, str(tmp_path)) == f"{tmp_path}: is a directory, expected a file"


@pytest.mark.skipif(sys.platform == "win32" or os.geteuid() == 0, reason="root can read anything")
def test_unreadable_file(tmp_path):
    path = write(tmp_path, "t.tsv", "a\tr\tb\n")
    os.chmod(path, 0)
    try:
        msg = error_of(read_triples, path)
    finally:
        os.chmod(path, 0o644)
    assert msg.startswith(f"{path}: permission denied")


@pytest.mark.parametrize("weight", ["nan", "-1", "0", "abc", "inf", "1e40", ""])
def test_bad_weight(tmp_path, weight):
    path = write(tmp_path, "p.tsv", f"a\tb\t1\nc\td\t{weight}\n")
    msg = error_of(read_pairs, path)
    assert msg.startswith(f"{path}:2: field 3 (weight) ")


def test_corrupt_gzip(tmp_path):
    path = write(tmp_path, "t.tsv.gz", b"this is not gzip data at all\n")
    msg = error_of(read_triples, path)
    assert msg.startswith(f"{path}: corrupt or truncated gzip file")


def test_truncated_gzip(tmp_path):
    data = gzip.compress(("a\tr\tb\n" * 1000).encode())
    path = write(tmp_path, "t.tsv.gz", data[: len(data) // 2])
    assert error_of(read_triples, path).startswith(f"{path}: corrupt or truncated gzip file")


def test_gzip_without_gz_suffix_gets_a_hint(tmp_path):
    path = write(tmp_path, "t.tsv", gzip.compress(b"a\tr\tb\n"))
    msg = error_of(read_triples, path)
    assert msg.startswith(f"{path}:1: file looks gzip-compressed")


# --- sha256 and speed --------------------------------------------------------------------


def test_sha256_file_matches_hashlib(tmp_path):
    data = os.urandom(3 * 1024 + 7)
    path = write(tmp_path, "blob.bin", data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()
    assert sha256_file(path, chunk_bytes=100) == hashlib.sha256(data).hexdigest()


def test_sha256_of_gz_is_of_the_raw_bytes(tmp_path):
    data = gzip.compress(b"a\tr\tb\n")
    path = write(tmp_path, "t.tsv.gz", data)
    assert sha256_file(path) == hashlib.sha256(data).hexdigest()


def test_sha256_missing_file(tmp_path):
    path = str(tmp_path / "nope")
    assert error_of(sha256_file, path) == f"{path}: file not found"


def test_read_triples_reads_a_full_size_file(tmp_path):
    # speed is measured in scripts/, not asserted here (machines are noisy)
    n = 272_000
    lines = "".join(f"/m/{i:07d}\t/r/{i % 237}\t/m/{(i * 7) % 14541:07d}\n" for i in range(n))
    path = write(tmp_path, "big.tsv", lines)
    tf = read_triples(path)
    assert len(tf) == n
    assert tf.triples[123] == ("/m/0000123", "/r/123", f"/m/{(123 * 7) % 14541:07d}")
    assert tf.lines[-1] == n
