"""Behaviour tests of show_project_subsets.py: the split report against the local CVAT server.

Every test runs the real script as a subprocess and checks the exit code, stdout, stderr and the
requests the server recorded, each on its own.
"""

import json
import re

import pytest

from conftest import run_script

SCRIPT = "show_project_subsets.py"

# The report for the demo state once the validation task exists: the block of the team's notes.
DEMO_REPORT = """\
======================================================================
📊 Polyvision 4 classes - Dataset Split
======================================================================

Total frames: 12,649

📁 Subset: train
   Tasks: 3
   Frames: 10,261
   Percentage: 81.1%
   Details:
     • #19: Vincennes-Athletic-small_2026-02-10_201919 (3930 frames)
     • #17: Stade-de-la-Tour-aux-Parachutes_2026-02-10_155217 (4836 frames)
     • #14: Polyvision 4cls - full dataset v1.1.6 (1495 frames)

📁 Subset: validation
   Tasks: 1
   Frames: 2,388
   Percentage: 18.9%
   Details:
     • #20: nrt_Parc-Omnisport-Suzanne-Lenglen_2026-02-14_validation (2388 frames)

======================================================================
"""
DEMO_PREFIX = "nrt/Parc-Omnisport-Suzanne-Lenglen_2026-02-14/validation/"
DEMO_TASK_NAME = "nrt_Parc-Omnisport-Suzanne-Lenglen_2026-02-14_validation"
RULE = "=" * 70


def find_task_lists(server):
    return server.find("GET", r"/api/tasks")


def read_subset_block(out, name):
    """Return the lines of one subset block of the text report, from its header to the blank line."""
    lines = out.splitlines()
    header = "📁 Subset: %s" % name
    start = lines.index(header)
    end = lines.index("", start)
    return lines[start:end]


def group_by_subset(report):
    """Return the --json subsets keyed by subset name (None for tasks without a subset)."""
    return {group["subset"]: group for group in report["subsets"]}


@pytest.fixture
def odd_groups(cvat):
    cvat.seed_scenario("odd-groups")
    return cvat


def test_demo_split_matches_team_block(cvat_demo):
    created = run_script(
        "create_cvat_task_validation.py", "--prefix", DEMO_PREFIX, "--name", DEMO_TASK_NAME, server=cvat_demo
    )
    assert created.code == 0
    assert "Task #20 created" in created.out

    result = run_script(SCRIPT, "4", server=cvat_demo)
    assert result.code == 0
    assert result.out == DEMO_REPORT
    assert result.err == ""


def test_demo_split_before_creation(cvat_demo):
    result = run_script(SCRIPT, "4", server=cvat_demo)
    lines = result.out.splitlines()
    assert result.code == 0
    assert lines[0] == RULE
    assert lines[1] == "📊 Polyvision 4 classes - Dataset Split"
    assert lines[2] == RULE
    assert "Total frames: 10,261" in lines
    assert read_subset_block(result.out, "train")[1:4] == ["   Tasks: 3", "   Frames: 10,261", "   Percentage: 100.0%"]
    assert "📁 Subset: validation" not in lines
    assert lines[-1] == RULE


def test_every_page_counted(cvat):
    cvat.seed_scenario("long-task-list")
    result = run_script(SCRIPT, "4", server=cvat)
    assert result.code == 0
    assert "Total frames: 13,350" in result.out
    assert read_subset_block(result.out, "train")[1:4] == ["   Tasks: 11", "   Frames: 11,000", "   Percentage: 82.4%"]
    assert read_subset_block(result.out, "validation")[1:4] == ["   Tasks: 7", "   Frames: 1,750", "   Percentage: 13.1%"]
    assert read_subset_block(result.out, "test")[1:4] == ["   Tasks: 5", "   Frames: 600", "   Percentage: 4.5%"]
    assert len(re.findall(r"^     • #\d+: ", result.out, re.MULTILINE)) == 23
    pages = [request.query["page"][0] for request in find_task_lists(cvat)]
    assert pages == ["1", "2", "3"]


def test_json_carries_same_numbers(cvat):
    cvat.seed_scenario("long-task-list")
    result = run_script(SCRIPT, "4", "--json", server=cvat)
    assert result.code == 0
    report = json.loads(result.out)
    groups = group_by_subset(report)
    assert report["total_frames"] == 13350
    assert report["total_tasks"] == 23
    assert [group["subset"] for group in report["subsets"]] == ["train", "validation", "test"]
    assert (groups["train"]["tasks"], groups["train"]["frames"], groups["train"]["percentage"]) == (11, 11000, 82.4)
    assert (groups["validation"]["tasks"], groups["validation"]["frames"], groups["validation"]["percentage"]) == (
        7,
        1750,
        13.1,
    )
    assert (groups["test"]["tasks"], groups["test"]["frames"], groups["test"]["percentage"]) == (5, 600, 4.5)
    assert len(find_task_lists(cvat)) == 3


def test_subset_order_and_details(odd_groups):
    result = run_script(SCRIPT, "4", server=odd_groups)
    headers = [line for line in result.out.splitlines() if line.startswith("📁 Subset: ")]
    assert result.code == 0
    assert headers == [
        "📁 Subset: train",
        "📁 Subset: validation",
        "📁 Subset: Validation",
        "📁 Subset: (none)",
    ]
    assert "     • #19: field-19 (3930 frames)" in result.out.splitlines()


def test_subset_order_all_kinds(cvat):
    cvat.seed_scenario("bucket-prefix")
    layout = [(51, "night"), (52, ""), (53, "test"), (54, "validation"), (55, "Train"), (56, "archive"), (57, "train")]
    for task_id, subset in layout:
        cvat.add_task(task_id, "field-%d" % task_id, project_id=4, subset=subset, size=10)
    result = run_script(SCRIPT, "4", server=cvat)
    headers = [line for line in result.out.splitlines() if line.startswith("📁 Subset: ")]
    assert result.code == 0
    assert headers == [
        "📁 Subset: train",
        "📁 Subset: Train",
        "📁 Subset: validation",
        "📁 Subset: test",
        "📁 Subset: archive",
        "📁 Subset: night",
        "📁 Subset: (none)",
    ]


def test_odd_groups_totals(odd_groups):
    result = run_script(SCRIPT, "4", server=odd_groups)
    assert result.code == 0
    assert "Total frames: 12,999" in result.out
    assert read_subset_block(result.out, "train")[1:4] == ["   Tasks: 3", "   Frames: 10,261", "   Percentage: 78.9%"]
    assert read_subset_block(result.out, "validation")[1:4] == ["   Tasks: 1", "   Frames: 2,388", "   Percentage: 18.4%"]
    assert read_subset_block(result.out, "Validation")[1:4] == ["   Tasks: 1", "   Frames: 300", "   Percentage: 2.3%"]
    assert read_subset_block(result.out, "(none)")[3] == "   Percentage: 0.4%"


def test_case_variant_kept_apart_with_note(odd_groups):
    result = run_script(SCRIPT, "4", server=odd_groups)
    notes = [line for line in result.out.splitlines() if line.startswith("Note: ")]
    assert result.code == 0
    assert len(notes) == 1
    assert "'validation', 'Validation' differ only in case" in notes[0]
    assert notes[0].endswith("python3 update_task_subset.py validation 24")


def test_unsplit_and_empty_tasks_marked(odd_groups):
    # Task 27 never got a data call, so CVAT sends no "size" for it at all.
    odd_groups.add_task(27, "field-27", project_id=4, subset="", size=None)
    result = run_script(SCRIPT, "4", server=odd_groups)
    block = read_subset_block(result.out, "(none)")
    assert result.code == 0
    assert block[1] == "   Tasks: 3 (2 without data yet)"
    assert block[2] == "   Frames: 50"
    assert "     • #27: field-27 (0 frames, no data yet)" in block
    assert "     • #26: field-26 (0 frames, no data yet)" in block
    assert "     • #25: field-25 (50 frames)" in block
    assert "Total frames: 12,999" in result.out


def test_odd_groups_json(odd_groups):
    result = run_script(SCRIPT, "4", "--json", server=odd_groups)
    assert result.code == 0
    report = json.loads(result.out)
    groups = group_by_subset(report)
    unsplit = groups[None]
    assert report["total_frames"] == 12999
    assert [group["subset"] for group in report["subsets"]] == ["train", "validation", "Validation", None]
    assert [groups[name]["percentage"] for name in ("train", "validation", "Validation")] == [78.9, 18.4, 2.3]
    assert groups["Validation"]["frames"] == 300
    assert (unsplit["tasks"], unsplit["frames"], unsplit["percentage"]) == (2, 50, 0.4)
    assert sorted(task["id"] for task in unsplit["details"]) == [25, 26]
    assert {task["id"]: task["has_data"] for task in unsplit["details"]} == {25: True, 26: False}
    assert unsplit["tasks_without_data"] == 1
    assert len(report["notes"]) == 1
    assert "Validation" in report["notes"][0]


def test_empty_project_zero_totals(odd_groups):
    result = run_script(SCRIPT, "5", server=odd_groups)
    assert result.code == 0
    assert "Total frames: 0" in result.out
    assert "0 tasks, 0 frames" in result.out
    assert result.err == ""


def test_empty_project_json(odd_groups):
    result = run_script(SCRIPT, "5", "--json", server=odd_groups)
    report = json.loads(result.out)
    assert result.code == 0
    assert report["total_tasks"] == 0
    assert report["total_frames"] == 0
    assert report["subsets"] == []


def test_merge_note_runs_as_printed(cvat):
    cvat.seed_scenario("bucket-prefix")
    cvat.add_task(41, "field-41", project_id=4, subset="Train", size=100)
    cvat.add_task(42, "field-42", project_id=4, subset="TRAIN", size=200)
    cvat.add_task(43, "field-43", project_id=4, subset="test", size=50)
    result = run_script(SCRIPT, "4", server=cvat)
    notes = [line for line in result.out.splitlines() if line.startswith("Note: ")]
    assert result.code == 0
    assert len(notes) == 1
    command = notes[0].split(" run: ", 1)[1].split()
    assert command[:2] == ["python3", "update_task_subset.py"]

    moved = run_script(*command[1:], server=cvat)
    assert moved.code == 0
    assert cvat.tasks[41]["subset"] == "train"
    assert cvat.tasks[42]["subset"] == "train"
    assert cvat.tasks[43]["subset"] == "test"


def test_case_note_without_command_for_free_names(cvat):
    # update_task_subset.py only sets train, validation and test, so it cannot merge these.
    cvat.seed_scenario("bucket-prefix")
    cvat.add_task(41, "field-41", project_id=4, subset="Night", size=100)
    cvat.add_task(42, "field-42", project_id=4, subset="night", size=200)
    result = run_script(SCRIPT, "4", server=cvat)
    notes = [line for line in result.out.splitlines() if line.startswith("Note: ")]
    assert result.code == 0
    assert len(notes) == 1
    assert "differ only in case" in notes[0]
    assert "update_task_subset.py" not in notes[0]


def test_ascii_terminal_does_not_crash(odd_groups):
    odd_groups.tasks[19]["name"] = "Stade-Charléty ✓"
    result = run_script(SCRIPT, "4", server=odd_groups, PYTHONIOENCODING="ascii", LANG="C", LC_ALL="C")
    assert result.code == 0
    assert "Subset: train" in result.out
    assert "Total frames: 12,999" in result.out
    assert "📊" not in result.out
    assert "Traceback" not in result.err


def test_ascii_terminal_json(odd_groups):
    odd_groups.tasks[19]["name"] = "Stade-Charléty ✓"
    result = run_script(SCRIPT, "4", "--json", server=odd_groups, PYTHONIOENCODING="ascii", LANG="C", LC_ALL="C")
    assert result.code == 0
    assert json.loads(result.out)["total_frames"] == 12999


@pytest.mark.parametrize("org", [None, "field-team"])
def test_organization_project_counts_all_tasks(cvat, org):
    cvat.seed_scenario("organization")
    result = run_script(SCRIPT, "4", "--json", server=cvat, CVAT_ORG=org)
    report = json.loads(result.out)
    lists = find_task_lists(cvat)
    assert result.code == 0
    assert report["total_tasks"] == 6
    assert report["total_frames"] == 3620
    assert len(lists) == 1
    assert lists[0].query["org_id"] == ["2"]


@pytest.mark.parametrize("org", [None, "field-team"])
def test_org_id_never_with_header(cvat, org):
    cvat.seed_scenario("organization")
    result = run_script(SCRIPT, "4", server=cvat, CVAT_ORG=org)
    assert result.code == 0
    mixed = [
        request
        for request in cvat.requests
        if "org_id" in request.query and request.header("X-Organization") is not None
    ]
    assert mixed == []


def test_other_organization_named_and_stopped(cvat):
    cvat.seed_scenario("organization")
    result = run_script(SCRIPT, "4", server=cvat, CVAT_ORG="polycube")
    assert result.code == 1
    assert result.out == ""
    assert len(result.err.splitlines()) == 1
    assert "'polycube'" in result.err
    assert "'field-team'" in result.err
    assert find_task_lists(cvat) == []


@pytest.mark.parametrize("project_id", ["0", "abc", "-4", "4.0"])
def test_bad_project_id_sends_nothing(cvat, project_id):
    cvat.seed_scenario("odd-groups")
    result = run_script(SCRIPT, project_id, server=cvat)
    assert result.code == 2
    assert "PROJECT_ID" in result.err
    assert len(cvat.requests) == 0


def test_missing_project_one_line(odd_groups):
    result = run_script(SCRIPT, "77", server=odd_groups)
    assert result.code == 1
    assert result.out == ""
    assert len(result.err.splitlines()) == 1
    assert "project 77 not found" in result.err
    assert find_task_lists(odd_groups) == []


def test_bearer_token_sent(cvat):
    cvat.seed_scenario("token-kinds")
    result = run_script(SCRIPT, "4", server=cvat, CVAT_ACCESS_TOKEN="pat-good")
    assert result.code == 0
    assert {request.header("Authorization") for request in cvat.requests} == {"Bearer pat-good"}


def test_api_key_sent_as_token(cvat):
    cvat.seed_scenario("token-kinds")
    result = run_script(SCRIPT, "4", server=cvat, CVAT_ACCESS_TOKEN="", CVAT_TOKEN="key-good")
    assert result.code == 0
    assert {request.header("Authorization") for request in cvat.requests} == {"Token key-good"}


def test_rejected_token_named_not_echoed(cvat):
    cvat.seed_scenario("token-kinds")
    result = run_script(SCRIPT, "4", server=cvat, CVAT_ACCESS_TOKEN="pat-bad")
    assert result.code == 1
    assert result.out == ""
    assert len(result.err.splitlines()) == 1
    assert "CVAT_ACCESS_TOKEN" in result.err
    assert "pat-bad" not in result.err
    assert cvat.find("POST", r"/api/auth/.*") == []


def test_missing_token_sends_nothing(cvat):
    cvat.seed_scenario("token-kinds")
    result = run_script(SCRIPT, "4", server=cvat, CVAT_ACCESS_TOKEN=None)
    assert result.code == 2
    assert "CVAT_ACCESS_TOKEN" in result.err
    assert len(cvat.requests) == 0


def test_url_without_scheme_sends_nothing(cvat):
    cvat.seed_scenario("token-kinds")
    result = run_script(SCRIPT, "4", server=cvat, CVAT_URL="127.0.0.1:%d" % cvat.port)
    assert result.code == 2
    assert "http://" in result.err
    assert "https://" in result.err
    assert len(cvat.requests) == 0
