"""Behaviour tests of update_task_subset.py: subset changes against the local CVAT server.

The script sends its PATCHes in parallel, so their arrival order varies from run to run. The
tests therefore check which tasks were patched, and check the order only in the printed lines.
"""

import pytest

from conftest import run_script

SCRIPT = "update_task_subset.py"


@pytest.fixture
def subset_names(cvat):
    cvat.seed_scenario("subset-names")
    return cvat


def find_patches(server):
    return server.find("PATCH", r"/api/tasks/\d+")


def read_patched_ids(server):
    return {int(request.path.rsplit("/", 1)[1]) for request in find_patches(server)}


def test_capitalised_subset_sent_lower_case(subset_names):
    result = run_script(SCRIPT, "Train", "19", server=subset_names)
    sent = find_patches(subset_names)
    assert result.code == 0
    assert result.out == "#19: validation -> train\n"
    assert "'Train' is sent as 'train'" in result.err
    assert len(sent) == 1
    assert sent[0].body == {"subset": "train"}
    assert subset_names.tasks[19]["subset"] == "train"


@pytest.mark.parametrize(
    "args, hint",
    [
        (["val", "19"], "did you mean validation?"),
        (["training", "19"], "did you mean train?"),
        (["test", "abc"], "task ids are positive integers"),
        (["test", "0"], "task ids are positive integers"),
        (["test"], "TASK_ID"),
    ],
)
def test_bad_arguments_send_nothing(subset_names, args, hint):
    result = run_script(SCRIPT, *args, server=subset_names)
    assert result.code == 2
    assert result.out == ""
    assert len(result.err.splitlines()) == 1
    assert hint in result.err
    assert len(subset_names.requests) == 0


def test_each_task_patched_once(subset_names):
    result = run_script(SCRIPT, "train", "19", "99", "20", "22", "21", server=subset_names)
    assert result.code == 1
    assert len(find_patches(subset_names)) == 5
    assert read_patched_ids(subset_names) == {19, 99, 20, 22, 21}
    for request in find_patches(subset_names):
        assert request.body == {"subset": "train"}, request


def test_results_in_given_order(subset_names):
    result = run_script(SCRIPT, "train", "21", "99", "20", "22", "19", server=subset_names)
    failures = [line for line in result.err.splitlines() if line.startswith("#")]
    assert result.code == 1
    assert result.out.splitlines() == [
        "#21: (none) -> train",
        "#20: train -> train (unchanged)",
        "#19: validation -> train",
    ]
    assert [line.split(":", 1)[0] for line in failures] == ["#99", "#22"]


def test_missing_and_forbidden_named(subset_names):
    result = run_script(SCRIPT, "train", "19", "99", "20", "22", "21", server=subset_names)
    lines = result.err.splitlines()
    missing = [line for line in lines if line.startswith("#99:")]
    forbidden = [line for line in lines if line.startswith("#22:")]
    assert result.code == 1
    assert len(missing) == 1
    assert "not found" in missing[0]
    assert len(forbidden) == 1
    assert "forbidden" in forbidden[0]
    assert "read-only" not in forbidden[0]
    assert "2 of 5 tasks were not updated" in lines[-1]
    assert "#99" in lines[-1]
    assert "#22" in lines[-1]


def test_other_tasks_still_updated(subset_names):
    run_script(SCRIPT, "train", "19", "99", "20", "22", "21", server=subset_names)
    assert subset_names.tasks[19]["subset"] == "train"
    assert subset_names.tasks[20]["subset"] == "train"
    assert subset_names.tasks[21]["subset"] == "train"
    assert subset_names.tasks[22]["subset"] == ""


@pytest.mark.parametrize("word", ["none", "None", ""])
def test_clear_sends_empty_subset(subset_names, word):
    result = run_script(SCRIPT, word, "20", server=subset_names)
    sent = find_patches(subset_names)
    assert result.code == 0
    assert result.out == "#20: train -> (none)\n"
    assert len(sent) == 1
    assert sent[0].body == {"subset": ""}
    assert subset_names.tasks[20]["subset"] == ""


def test_clear_already_empty_subset(subset_names):
    result = run_script(SCRIPT, "", "21", server=subset_names)
    assert result.code == 0
    assert result.out == "#21: (none) -> (none) (unchanged)\n"
    assert find_patches(subset_names)[0].body == {"subset": ""}


def test_only_patch_writes_sent(subset_names):
    run_script(SCRIPT, "validation", "19", "20", "21", server=subset_names)
    methods = {request.method for request in subset_names.requests}
    assert methods <= {"GET", "PATCH"}
    assert subset_names.find("PUT", r".*") == []


def test_old_to_new_lines(subset_names):
    result = run_script(SCRIPT, "test", "19", "20", "21", server=subset_names)
    assert result.code == 0
    assert result.out.splitlines() == [
        "#19: validation -> test",
        "#20: train -> test",
        "#21: (none) -> test",
    ]
    assert result.err == ""


def test_duplicate_ids_patched_once(subset_names):
    result = run_script(SCRIPT, "test", "19", "19", server=subset_names)
    assert result.code == 0
    assert result.out == "#19: validation -> test\n"
    assert len(find_patches(subset_names)) == 1


def test_many_tasks_all_patched(cvat):
    # Twenty tasks need three rounds of eight parallel updates.
    cvat.seed_scenario("bucket-prefix")
    task_ids = list(range(200, 220))
    for task_id in task_ids:
        cvat.add_task(task_id, "field-%d" % task_id, project_id=4, subset="train", size=10)
    requested_order = list(reversed(task_ids))
    result = run_script(SCRIPT, "validation", *requested_order, server=cvat)
    assert result.code == 0
    assert [line.split(":", 1)[0] for line in result.out.splitlines()] == ["#%d" % task_id for task_id in requested_order]
    assert read_patched_ids(cvat) == set(task_ids)
    assert {cvat.tasks[task_id]["subset"] for task_id in task_ids} == {"validation"}


def test_read_only_token_explained(cvat):
    cvat.seed_scenario("token-kinds")
    result = run_script(SCRIPT, "train", "19", server=cvat, CVAT_ACCESS_TOKEN="pat-readonly")
    assert result.code == 1
    assert result.out == ""
    assert "read-only" in result.err.splitlines()[-1]
    assert "write access" in result.err.splitlines()[-1]
    assert cvat.tasks[19]["subset"] == "train"


def test_rejected_token_named_not_echoed(cvat):
    cvat.seed_scenario("token-kinds")
    result = run_script(SCRIPT, "test", "19", server=cvat, CVAT_ACCESS_TOKEN="pat-bad")
    assert result.code == 1
    assert "CVAT_ACCESS_TOKEN" in result.err
    assert "pat-bad" not in result.err
    assert "pat-bad" not in result.out
    assert cvat.tasks[19]["subset"] == "train"


def test_api_key_sent_as_token(cvat):
    cvat.seed_scenario("token-kinds")
    result = run_script(SCRIPT, "test", "19", server=cvat, CVAT_ACCESS_TOKEN=None, CVAT_TOKEN="key-good")
    assert result.code == 0
    assert {request.header("Authorization") for request in cvat.requests} == {"Token key-good"}


def test_missing_token_sends_nothing(subset_names):
    result = run_script(SCRIPT, "test", "19", server=subset_names, CVAT_ACCESS_TOKEN=None)
    assert result.code == 2
    assert len(subset_names.requests) == 0


def test_hidden_task_not_blamed_on_token(subset_names):
    result = run_script(SCRIPT, "train", "22", server=subset_names)
    assert result.code == 1
    assert "forbidden" in result.err.splitlines()[0]
    assert "read-only" not in result.err


def test_unknown_organization_named(subset_names):
    # CVAT returns 404 to any call that names an organization it does not know.
    result = run_script(SCRIPT, "train", "19", server=subset_names, CVAT_ORG="no-such-team")
    assert result.code == 1
    assert "CVAT_ORG" in result.err.splitlines()[0]
    assert subset_names.tasks[19]["subset"] == "validation"
