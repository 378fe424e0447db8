"""bulk/manifest.py: JSONL, CSV and Parquet manifests read into checked rows."""

import json

import pytest

from qwen3tts_cli.bulk.manifest import ManifestRow, read_manifest
from qwen3tts_cli.errors import InputError

ROWS = [
    {"id": "line-001", "text": "Hello there.", "speaker": "vivian", "seed": 7},
    {"id": 2, "text": "Second line.", "language": "english", "instruct": "Calm."},
    {"id": "x.3", "text": "Third, with a voice.", "voice": "voices/me.safetensors", "note": "kept out"},
]


def write_jsonl(path, rows):
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def expected(folder, first=1):
    return [
        ManifestRow("line-001", "Hello there.", speaker="vivian", seed=7, line=first),
        ManifestRow("2", "Second line.", language="english", instruct="Calm.", line=first + 1),
        ManifestRow("x.3", "Third, with a voice.", voice=str((folder / "voices/me.safetensors").resolve()),
                    line=first + 2),
    ]


def test_jsonl_rows_with_their_fields(tmp_path):
    m = read_manifest(write_jsonl(tmp_path / "m.jsonl", ROWS))
    assert list(m.rows) == expected(tmp_path)
    assert m.ignored_columns == ("note",)
    assert m.rows[0].overrides() == {"speaker": "vivian", "seed": 7}


def test_csv_empty_cells_are_not_given_and_seeds_are_numbers(tmp_path):
    path = tmp_path / "m.csv"
    path.write_text("id,text,speaker,language,instruct,voice,seed,note\n"
                    "line-001,Hello there.,vivian,,,,7,\n"
                    "2,Second line.,,english,Calm.,,,\n"
                    'x.3,"Third, with a voice.",,,,voices/me.safetensors,,kept out\n', encoding="utf-8")
    m = read_manifest(path)
    assert list(m.rows) == expected(tmp_path, first=2)  # line 1 is the header


def test_jsonl_with_a_byte_order_mark_and_blank_lines_counts_lines(tmp_path):
    path = tmp_path / "m.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + json.dumps(ROWS[0]).encode() + b"\r\n\r\n" + json.dumps(ROWS[1]).encode()
                     + b"\n")
    assert [(r.id, r.line) for r in read_manifest(path).rows] == [("line-001", 1), ("2", 3)]
    path.write_text(json.dumps(ROWS[0]) + "\n\n" + json.dumps({"id": "z"}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 3 \\(id 'z'\\): missing 'text'"):
        read_manifest(path)


def test_parquet_rows(tmp_path):
    pa = pytest.importorskip("pyarrow")
    import pyarrow.parquet as pq

    rows = [dict(r, id=str(r["id"])) for r in ROWS]
    table = pa.Table.from_pylist([{k: r.get(k) for k in ("id", "text", "speaker", "language", "instruct", "voice",
                                                           "seed", "note")} for r in rows])
    pq.write_table(table, tmp_path / "m.parquet")
    m = read_manifest(tmp_path / "m.parquet")
    assert list(m.rows) == expected(tmp_path)


@pytest.mark.parametrize("rows,message", [
    ([{"text": "no id"}], "line 1: missing 'id'"),
    ([{"id": "a", "text": "x"}, {"id": "a", "text": "y"}], "line 2: id 'a' repeats the id of line 1"),
    ([{"id": "Take1", "text": "x"}, {"id": "take1", "text": "y"}], "ids differ only in case"),
    ([{"id": "../escape", "text": "x"}], "id '../escape' cannot name a file"),
    ([{"id": ".hidden", "text": "x"}], "cannot name a file"),
    ([{"id": "a/b", "text": "x"}], "cannot name a file"),
    ([{"id": "con", "text": "x"}], "cannot name a file"),
    ([{"id": "a" * 129, "text": "x"}], "cannot name a file"),
    ([{"id": "a", "text": "  "}], "'text' is empty"),
    ([{"id": "a"}], "missing 'text'"),
    ([{"id": "a", "text": 5}], "'text' must be text"),
    ([{"id": "a", "text": "x", "seed": "seven"}], "'seed' must be a whole number"),
    ([{"id": "a", "text": "x", "seed": 1.5}], "seed must be a whole number"),
    ([{"id": "a", "text": "x", "seed": -1}], "seed must be a whole number from 0 to 18446744073709551615"),
    ([{"id": "a", "text": "x", "seed": 2**64}], "seed must be a whole number from 0"),
    ([{"id": "a", "text": "x", "voice": "a\u0000b.safetensors"}], "'voice' is not a usable file name"),
    ([{"id": "a", "text": "x", "voice": "\ud800.safetensors"}], "'voice' is not a usable file name"),
    ([{"id": "a", "text": "x", "speaker": ["ryan"]}], "'speaker' must be text"),
    ([{"id": True, "text": "x"}], "'id' must be text or a whole number"),
    ([], "has no rows"),
])
def test_unusable_manifests_are_refused_naming_the_row(tmp_path, rows, message):
    with pytest.raises(InputError, match=message.replace("(", r"\(").replace(".", r"\.")):
        read_manifest(write_jsonl(tmp_path / "m.jsonl", rows))


def test_broken_files(tmp_path):
    bad = tmp_path / "m.jsonl"
    bad.write_text('{"id": "a", "text": "x"}\n{"id": \n', encoding="utf-8")
    with pytest.raises(InputError, match="line 2 is not a JSON object"):
        read_manifest(bad)
    bad.write_bytes(b'{"id": "a", "text": "\xff"}\n')
    with pytest.raises(InputError, match="line 1 is not UTF-8"):
        read_manifest(bad)
    csv_ = tmp_path / "m.csv"
    csv_.write_text("id,text\na,hello,extra\n", encoding="utf-8")
    with pytest.raises(InputError, match="line 2 has more cells than the header"):
        read_manifest(csv_)
    csv_.write_text('id,text\na,"two\nlines"\n\nb,"three\nmore\nlines"\nc,x,extra\n', encoding="utf-8")
    with pytest.raises(InputError, match="line 8 has more cells than the header"):
        read_manifest(csv_)
    csv_.write_text('id,text\na,"two\nlines"\n\nb,"three\nmore\nlines"\n', encoding="utf-8")
    assert [(r.id, r.line) for r in read_manifest(csv_).rows] == [("a", 2), ("b", 5)]
    with pytest.raises(InputError, match="unknown manifest format '.txt'"):
        read_manifest(tmp_path / "m.txt")
    with pytest.raises(InputError, match="file not found"):
        read_manifest(tmp_path / "missing.jsonl")
    (tmp_path / "not.parquet").write_bytes(b"PAR1 nonsense")
    pytest.importorskip("pyarrow")
    with pytest.raises(InputError, match="not a readable Parquet file"):
        read_manifest(tmp_path / "not.parquet")
