"""The listing's fast paths against what they replace: the SFTP name-list parser against paramiko's,
the entries and their JSON text against attr_metadata + guess_mime + json.dumps, the MIME memo
against mimetypes."""

import itertools
import json
import random
import stat

import paramiko
import pytest
from paramiko.message import Message

from hcc_federation.files.listing import (
    DirectoryPage,
    EntryEncoder,
    find_listing_argv,
    page_entries,
    parse_find_listing,
)
from hcc_federation.files.metadata import IdNames, attr_metadata, guess_mime, listing_mime
from hcc_federation.remote.paramiko_compat import MalformedAnswer, name_rows
from tests.helpers import HOSTILE_NAMES

# ------------------------------------------------------------------------------ the name-list parser


def _attrs(i: int, mode: int, *, size: int | None = 0, ids: bool = True, times: bool = True, ext=None):
    attr = paramiko.SFTPAttributes()
    attr.st_size = size
    if ids:
        attr.st_uid, attr.st_gid = 1000 + i, 2000 + i
    attr.st_mode = mode
    if times:
        attr.st_atime, attr.st_mtime = 1_700_000_000, 1_800_000_000 + i
    if ext:
        attr.attr = ext
    return attr


def _name_list(entries: list[tuple[bytes, paramiko.SFTPAttributes]]) -> bytes:
    msg = Message()
    for raw, attr in entries:
        msg.add_string(raw)
        msg.add_string(b"-rw-r--r-- 1 a b 0 Jan 1 00:00 " + raw)
        attr._pack(msg)
    return msg.asbytes()


ENTRIES = [
    (b".", _attrs(0, 0o040755, size=4096)),
    (b"..", _attrs(1, 0o040755, size=4096)),
    (b"plain", _attrs(2, 0o100644, size=2**40)),
    ("ü € 名前".encode(), _attrs(3, 0o100600, ext={"ext@example.org": b"value", "b": b""})),
    (b"with\nnewline", _attrs(4, 0o100644, size=None)),  # flags without SIZE
    (b"dir", _attrs(5, 0o042775, size=4096)),
    (b"link", _attrs(6, 0o120777, size=7)),
    (b"no-ids", _attrs(7, 0o020620, ids=False)),  # a device, flags without UIDGID
    (b"no-times", _attrs(8, 0o010644, times=False)),
    (b"", _attrs(9, 0o100644)),
]


def _paramiko_rows(data: bytes, count: int) -> list[tuple]:
    """What listings made of paramiko's own parser before: SFTPAttributes._from_msg, then the row."""
    reader = Message(data)
    rows = []
    for _ in range(count):
        # the long name as bytes: listings never decode it
        attr = paramiko.SFTPAttributes._from_msg(reader, reader.get_text(), reader.get_string())
        if attr.filename in (".", ".."):
            continue
        mode = attr.st_mode or 0
        rows.append(
            (
                0 if stat.S_ISDIR(mode) else 1,
                attr.filename,
                mode,
                attr.st_size or 0,
                attr.st_uid if attr.st_uid is not None else -1,
                attr.st_gid if attr.st_gid is not None else -1,
                attr.st_mtime or 0,
            )
        )
    return rows


def test_name_rows_read_what_paramiko_reads():
    data = _name_list(ENTRIES)
    rows = name_rows(data, len(ENTRIES))
    assert rows == _paramiko_rows(data, len(ENTRIES))
    assert [r[1] for r in rows] == [raw.decode() for raw, _ in ENTRIES[2:]]
    assert rows[2][3:] == (0, 1004, 2004, 1_800_000_004)  # size 0 when absent
    assert rows[5][4:6] == (-1, -1)  # ids -1 when absent
    assert rows[6][6] == 0  # mtime 0 when absent
    assert [r[0] for r in rows] == [1, 1, 1, 0, 1, 1, 1, 1]  # directories rank first


def test_name_rows_of_an_empty_list_and_trailing_bytes():
    assert name_rows(b"", 0) == []
    # bytes after the last entry are ignored, as paramiko ignores them
    assert name_rows(_name_list(ENTRIES[2:3]) + b"\x00\x00", 1)[0][1] == "plain"


def test_a_name_that_is_not_utf8_is_a_decode_error():
    with pytest.raises(UnicodeDecodeError):
        name_rows(_name_list([(b"caf\xe9", _attrs(0, 0o100644))]), 1)


def test_every_truncation_of_a_name_list_is_a_clear_error():
    data = _name_list(ENTRIES)
    for cut in range(len(data)):
        with pytest.raises(MalformedAnswer, match="SFTP name list"):
            name_rows(data[:cut], len(ENTRIES))


def test_a_count_past_the_entries_is_a_clear_error():
    data = _name_list(ENTRIES[2:4])
    with pytest.raises(MalformedAnswer):
        name_rows(data, 3)
    with pytest.raises(MalformedAnswer):
        name_rows(data, 2**32 - 1)  # a garbled count: an error at the end of the bytes, not a hang


@pytest.mark.parametrize("length", [2**32 - 1, 2**31, 1000])
def test_a_length_past_the_end_is_a_clear_error(length):
    good = _name_list(ENTRIES[2:3])
    for at in (0, 4 + 5):  # the name's length, the long name's length
        bad = bytearray(good)
        bad[at : at + 4] = length.to_bytes(4, "big")
        with pytest.raises(MalformedAnswer):
            name_rows(bytes(bad), 1)
    # an extended attribute's count or length past the end
    ext = _name_list([(b"x", _attrs(0, 0o100644, ext={"k": b"v"}))])
    count_at = ext.index(b"\x00\x00\x00\x01\x00\x00\x00\x01k")
    for at in (count_at, count_at + 4):
        bad = bytearray(ext)
        bad[at : at + 4] = length.to_bytes(4, "big")
        with pytest.raises(MalformedAnswer):
            name_rows(bytes(bad), 1)


def test_random_garbage_raises_or_parses_never_hangs():
    rng = random.Random(14)
    data = _name_list(ENTRIES)
    for _ in range(2000):
        garbled = bytearray(data)
        for _ in range(rng.randint(1, 8)):
            garbled[rng.randrange(len(garbled))] = rng.randrange(256)
        try:
            rows = name_rows(bytes(garbled), len(ENTRIES))
        except (MalformedAnswer, UnicodeDecodeError):
            continue
        # what parses is what paramiko's parser makes of the same bytes
        assert rows == _paramiko_rows(bytes(garbled), len(ENTRIES))


# ------------------------------------------------------------------------------------ MIME memo

MIME_NAMES = [
    *HOSTILE_NAMES,
    "a.txt",
    "b.TXT",
    "c.tar.gz",
    "d.tgz",
    "e.TGZ",
    "f.gz",
    "g.Z",
    "h.svgz",
    "i.json.bz2",
    "j.out",
    "k.py",
    ".bashrc",
    "..x",
    "...",
    "..",
    ".a.txt",
    "noext",
    "trailing.",
    "data:text/html,x.txt",
    "DATA:image/png;base64,x",
    "http:x.png",
    "a:b.txt",
    "x.unknownsuffix",
    "x.PNG",
    "x.png",
    "x.tar.xz",
    "x.txz",
    "x.br",
]


def test_listing_mime_is_guess_mime():
    # twice: the second round answers from the memo
    for name in MIME_NAMES + MIME_NAMES + [n.upper() for n in MIME_NAMES]:
        assert listing_mime(name) == guess_mime(name), name


def test_listing_mime_is_guess_mime_on_random_names():
    rng = random.Random(3)
    alphabet = "a.B:/.gzZtxTGjsn-_ é"
    for _ in range(5000):
        name = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12))).replace("/", "")
        if name:
            assert listing_mime(name) == guess_mime(name), name


# ------------------------------------------------------------------------------ entries and JSON


def _names() -> IdNames:
    names = IdNames(0.0)
    names.users.update({1000: "alice", 1001: 'we"ird\nname', 1002: ""})
    names.groups.update({2000: "hpcusers", 2001: "grüppe"})
    return names


ROW_NAMES = [*HOSTILE_NAMES, "a.txt", "c.tar.gz", "data:text,x", "data:x.png", ".hidden", "名前.json"]
MODES = [0o100644, 0o040755, 0o120777, 0o020620, 0o060660, 0o010644, 0o140755, 0o104755, 0o041777, 0]


def _rows() -> list[tuple]:
    rows = []
    for i, (name, mode) in enumerate(zip(itertools.cycle(ROW_NAMES), MODES * 3, strict=False)):
        name = f"{name}{i}"
        rows.append(
            (0 if stat.S_ISDIR(mode) else 1, name, mode, i * 1000, 1000 + i % 4, 2000 + i % 3, i * 86399)
        )
    return sorted(rows)


def _reference(path: str, rows: list[tuple], names: IdNames, targets: dict) -> list[dict]:
    """The entries as list_directory made them before: attr_metadata and guess_mime for each row."""
    import posixpath

    entries = []
    for _, name, mode, size, uid, gid, mtime in rows:
        attr = paramiko.SFTPAttributes()
        attr.st_mode, attr.st_size, attr.st_uid, attr.st_gid, attr.st_mtime = mode, size, uid, gid, mtime
        entry = attr_metadata(posixpath.join(path, name), attr, names)
        if entry["type"] == "symlink":
            entry["target"] = targets.get(name)
        elif entry["type"] == "file":
            entry["mime"] = guess_mime(name)
            entry["text"] = None
        entries.append(entry)
    return entries


@pytest.mark.parametrize("path", ["/home/alice/d ir", "/"])
def test_entries_and_their_json_are_what_attr_metadata_made(path):
    rows, names = _rows(), _names()
    links = [r[1] for r in rows if stat.S_ISLNK(r[2])]
    targets = {links[0]: None, links[1]: '../ta"rget\n☃'}
    expected = _reference(path, rows, names, targets)
    got = page_entries(path, rows, names, targets)
    assert got == expected
    assert [list(e) for e in got] == [list(e) for e in expected]  # the same fields, in the same order
    text = EntryEncoder(path, names, targets).encode(rows)
    decoded = json.loads(f"[{text}]")
    assert decoded == expected
    assert [list(e) for e in decoded] == [list(e) for e in expected]
    assert text.isascii()  # escaped as json.dumps escapes (ensure_ascii)


def test_a_page_as_json_chunks_is_the_page_as_a_dict():
    rows, names = _rows(), _names()
    meta = {"path": "/d", "name": "d", "type": "directory", "size": 4096, "mode": "0755"}
    page = DirectoryPage("/d", meta, rows, names, {}, 3, len(rows), len(rows) + 3)
    for batch in (1, 7, 1000):
        chunks = list(page.json_chunks(batch))
        assert json.loads(b"".join(chunks)) == page.as_dict()
    empty = DirectoryPage("/d", meta, [], names, {}, 0, 0, 0)
    assert json.loads(b"".join(empty.json_chunks())) == {
        **meta,
        "entries": [],
        "offset": 0,
        "limit": 0,
        "total": 0,
    }


# ------------------------------------------------------------------------------ find's listing

FIND_OUTPUT = (
    b"f 644 12 10001 10000 1764680000.1234567890 a file\n with  spaces\0"
    b"d 3775 4096 10001 10000 1764680001.0000000000 sub dir\0"
    b"l 777 7 0 0 1764680002.5000000000 \xe2\x98\x83 link\0"
    b"b 660 0 0 6 1.0 block\0"
    b"c 620 0 0 5 0.0 char\0"
    b"p 4755 0 10001 10000 4294967301.0 fifo from 2106\0"  # 2**32 + 5: wraps as SFTP's time does
    b"s 755 0 10001 10000 1764680000.1 sock\0"
)


def test_find_listing_parses_into_the_rows_sftp_makes():
    assert parse_find_listing(FIND_OUTPUT) == [
        (1, "a file\n with  spaces", 0o100644, 12, 10001, 10000, 1764680000),
        (0, "sub dir", 0o043775, 4096, 10001, 10000, 1764680001),
        (1, "☃ link", 0o120777, 7, 0, 0, 1764680002),
        (1, "block", 0o060660, 0, 0, 6, 1),
        (1, "char", 0o020620, 0, 0, 5, 0),
        (1, "fifo from 2106", 0o014755, 0, 10001, 10000, 5),
        (1, "sock", 0o140755, 0, 10001, 10000, 1764680000),
    ]
    assert parse_find_listing(b"") == []


def test_find_listing_argv_lists_one_level_literally():
    argv = find_listing_argv("/home/alice/-rf $(x) dir")
    assert argv[:5] == ["env", "LC_ALL=C", "find", "-H", "/home/alice/-rf $(x) dir"]
    assert argv[5:9] == ["-mindepth", "1", "-maxdepth", "1"]


@pytest.mark.parametrize(
    "record",
    [
        b"D 644 0 1 1 1.0 door\0",  # a type SFTP has no bits for
        b"f 644 0 1 1 -5.5 before 1970\0",
        b"f 644 0 1 1 1.0 caf\xe9\0",  # not UTF-8: SFTP's reading gives the error
        b"f 644 0 1 1 1.0 a/b\0",
        b"f 644 0 1 1 1.0 \0",
        b"f 648 0 1 1 1.0 not octal\0",
        b"f 644 0 1 1 1 no fraction\0",
        b"f 644 x 1 1 1.0 size\0",
        b"f 644 0 1 1.0 a field short\0",
        b"f  644 0 1 1 1.0 two spaces\0",
        b"f 644 0 1 1 1.0 no end",
        b"garbage f 644 0 1 1 1.0 name\0",  # a record is never read from its middle
    ],
)
def test_find_records_sftp_would_not_report_alike_are_refused(record):
    assert parse_find_listing(record) is None
    assert parse_find_listing(FIND_OUTPUT + record) is None
    if record.endswith(b"\0"):  # (one without its NUL before others is one record, with a long name)
        assert parse_find_listing(record + FIND_OUTPUT) is None


def test_every_cut_of_find_output_inside_a_record_is_refused():
    ends = {i + 1 for i, byte in enumerate(FIND_OUTPUT) if byte == 0}
    for cut in range(1, len(FIND_OUTPUT)):
        parsed = parse_find_listing(FIND_OUTPUT[:cut])
        if cut in ends:
            assert parsed == parse_find_listing(FIND_OUTPUT)[: sorted(ends).index(cut) + 1]
        else:
            assert parsed is None, cut
