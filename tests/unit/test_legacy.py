"""The legacy portal's pure parts: path resolution, argv builders and the parsers of recorded output."""

from pathlib import Path

import pytest

from hcc_federation.errors import InvalidArgument
from hcc_federation.legacy.commands import (
    DETAIL_FIELDS,
    STATE_INDEX,
    listing_argv,
    sacct_detail_argv,
    sacct_list_argv,
    top_argv,
)
from hcc_federation.legacy.parsers import listing_text, sacct_lines, sacct_values, top_by_node
from hcc_federation.legacy.paths import client_name, resolve_client_path
from hcc_federation.legacy.views import PATH_TAIL_ROUTES, SERVICES

DATA = Path(__file__).parent / "data" / "legacy"
FILESYSTEMS = {"HOME": "/home/alice", "WORK": "/work/grp/alice"}


def resolve(text, calls=None):
    def filesystems():
        if calls is not None:
            calls.append(1)
        return FILESYSTEMS

    return resolve_client_path(text, filesystems)


@pytest.mark.parametrize(
    ("given", "path"),
    [
        ("$HOME", "/home/alice"),
        ("${HOME}", "/home/alice"),
        ("$HOME/", "/home/alice"),
        ("$WORK/a b/c", "/work/grp/alice/a b/c"),
        ("/home/alice/x", "/home/alice/x"),
        ("//home//alice/./x/", "/home/alice/x"),
        # only a leading name is one: any other "$" is a literal character
        ("/home/alice/$HOME", "/home/alice/$HOME"),
        ("$HOME/$(touch x)", "/home/alice/$(touch x)"),
        ("$HOME/../bob", "/home/bob"),  # lexical; the user's own Unix rights decide
    ],
)
def test_portal_paths_resolve(given, path):
    assert resolve(given) == path


def test_file_systems_are_looked_up_only_for_a_named_path():
    calls = []
    resolve("/home/alice", calls)
    assert calls == []
    resolve("$HOME/x", calls)
    assert calls == [1]


@pytest.mark.parametrize(
    ("given", "says"),
    [
        ("$COMMON/x", "unknown file system $COMMON"),
        ("$HOMEX", "unknown file system $HOMEX"),
        ("$(touch /tmp/pwned)", "must be absolute"),
        ("`id`", "must be absolute"),
        ("home/alice", "must be absolute"),
        ("~/x", "must be absolute"),
        ("", "a path is required"),
        ("/a\x00b", "NUL"),
        ("$HOME/" + "x" * 256, "longer than 255"),
    ],
)
def test_bad_portal_paths_are_refused(given, says):
    with pytest.raises(InvalidArgument) as caught:
        resolve(given)
    assert says in caught.value.description
    assert caught.value.field == "path"


def test_the_name_is_the_last_component_as_given():
    assert [client_name(p) for p in ("$HOME", "$HOME/a b", "/x/y/", "/")] == ["$HOME", "a b", "", ""]


def test_argv_keep_paths_literal_and_after_double_dash():
    hostile = "/home/alice/-rf $(id) `x`"
    assert listing_argv(hostile) == ["env", "LC_ALL=C.UTF-8", "ls", "-lhoQ", "--", hostile]
    assert sacct_list_argv("alice", "2026-12-01") == [
        "sacct",
        "--user=alice",
        "--starttime=2026-12-01",
        "--parsable",
        "--allocations",
        "--noheader",
        "--format=JobID,JobName,State,Start,Elapsed,AllocNodes",
    ]
    assert sacct_detail_argv("12_3")[1] == "--jobs=12_3"
    assert sacct_detail_argv("12")[-1] == "--format=" + ",".join(DETAIL_FIELDS)
    assert DETAIL_FIELDS[STATE_INDEX] == "State" and STATE_INDEX == 5 and len(DETAIL_FIELDS) == 15


def test_top_runs_a_fixed_script_on_each_node():
    argv = top_argv("77", "n[1-2]", 2)
    assert argv[:2] == ["srun", "--overlap"] and "--jobid=77" in argv and "--nodes=2" in argv
    script = argv[argv.index("-c") + 1]
    assert "77" not in script and "top -b -n 1" in script
    with pytest.raises(Exception, match="unexpected node list"):
        top_argv("77", "n1;id", 1)


def test_top_by_node_on_recorded_output():
    nodes = top_by_node((DATA / "top_probe_alpha.txt").read_text())
    assert list(nodes) == ["alpha-n1"]
    text = nodes["alpha-n1"]
    assert text.startswith("top - 10:20:57 up 13 min")
    assert "\n  PID USER      PR  NI" in text and text.endswith("0:00.00 srun")
    assert "0: " not in text  # srun's labels are gone


def test_top_by_node_with_ten_tasks_or_more():
    # srun right-aligns the label once there are ten tasks
    lines = []
    for task in range(11):
        lines += [f"{task:>2}: n{task}", f"{task:>2}: top - frame {task}", f"{task:>2}: "]
    nodes = top_by_node("\n".join(lines) + "\n")
    assert list(nodes) == [f"n{t}" for t in range(11)]
    assert nodes["n10"] == "top - frame 10"


def test_sacct_values_on_recorded_output():
    values = sacct_values((DATA / "sacct_detail_running.txt").read_text())
    assert len(values) == 15 and values[0] == "1065" and values[STATE_INDEX] == "RUNNING"
    assert values[-1] == "alpha-n1"
    assert sacct_values("") is None and sacct_values("\n") is None


def test_sacct_lines_keep_each_line_as_sacct_prints_it():
    text = "1|a b|COMPLETED|2026-12-01T10:00:00|00:00:01|1|\n2|x|RUNNING|2026-12-01T10:00:02|00:01:00|1|\n"
    assert sacct_lines(text) == [
        "1|a b|COMPLETED|2026-12-01T10:00:00|00:00:01|1|",
        "2|x|RUNNING|2026-12-01T10:00:02|00:01:00|1|",
    ]
    assert sacct_lines("") == [] and sacct_lines("\n") == []


def test_listing_text_has_no_empty_row_after_the_last_entry():
    stdout = 'total 4.0K\n-rw-r--r-- 1 alice 3 Dec  2 10:00 "a b"\n'
    assert listing_text(stdout).split("\n") == ["total 4.0K", '-rw-r--r-- 1 alice 3 Dec  2 10:00 "a b"']


def test_the_path_tail_routes_are_the_services_with_a_path():
    tails = {s.name.removeprefix("legacy_") for s in SERVICES if s.path.endswith("{path:.*}")}
    assert tails == set(PATH_TAIL_ROUTES)


def test_the_document_shows_the_legacy_routes_as_deprecated_with_their_header():
    from hcc_federation.api.openapi import build_document

    document = build_document(services=SERVICES, clusters=["alpha", "beta"])
    paths = document["paths"]
    # OpenAPI names the tail parameter only; the route's regex stays Pyramid's
    assert "/{cluster}/myapp/get_file/{path}" in paths and not any(":" in p for p in paths)
    operation = paths["/{cluster}/myapp/get_file/{path}"]["get"]
    assert operation["deprecated"] is True and operation["tags"] == ["legacy"]
    assert operation["security"] == [{"myAuthorization": []}, {"bearer": []}]
    assert {p["name"] for p in operation["parameters"]} == {"cluster", "path"}
    assert "security" not in paths["/{cluster}/myapp/login_user"]["post"]
    # the notebook routes are the notebooks service's: its statuses, no 501 left from before it was wired
    assert "501" not in paths["/{cluster}/myapp/get_jupyters/{label}"]["get"]["responses"]
    assert "429" in paths["/{cluster}/myapp/start_jupyter"]["post"]["responses"]
    scheme = document["components"]["securitySchemes"]["myAuthorization"]
    assert (scheme["type"], scheme["in"], scheme["name"]) == ("apiKey", "header", "MyAuthorization")


def test_the_domain_modules_do_not_import_pyramid():
    """(hcc_federation/__init__.py imports Pyramid for main(), so this reads the modules' own imports.)"""
    import ast

    package = Path(__file__).resolve().parents[2] / "hcc_federation"
    imported = set()
    for name in ("paths", "commands", "parsers", "service", "notebooks"):
        tree = ast.parse((package / "legacy" / f"{name}.py").read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                imported |= {alias.name for alias in node.names}
            elif isinstance(node, ast.ImportFrom):
                imported.add("." * node.level + (node.module or ""))
    assert not {m for m in imported if m.split(".")[0] in ("pyramid", "cornice", "webob")}
    assert not {m for m in imported if m.endswith(("views", "schemas", "links", "download", "upload"))}
