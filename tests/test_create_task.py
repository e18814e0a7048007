"""Behaviour tests of create_cvat_task_validation.py: task creation against the local CVAT server.

Every test runs the real script as a subprocess and checks the exit code, stdout, stderr and
the requests the server recorded (paths, queries, bodies, headers), each on its own.
"""

import re

import pytest

from conftest import SECRET_KEY, SECRET_TOKEN, run_script

SCRIPT = "create_cvat_task_validation.py"

DEMO_PREFIX = "nrt/Parc-Omnisport-Suzanne-Lenglen_2026-02-14/validation/"
DEMO_TASK_NAME = "nrt_Parc-Omnisport-Suzanne-Lenglen_2026-02-14_validation"
DEMO_KEYS = [DEMO_PREFIX + "frame_{:06d}.jpg".format(number) for number in range(1, 2389)]
SITE_A_KEYS = ["site-a/images/f_1.jpg", "site-a/images/f_2.jpg", "site-a/images/f_3.jpg"]
MIXED_IMAGES = ["site-c/images/" + name for name in ("a_1.jpg", "a_2.JPG", "a_3.jpeg", "a_4.png", "a_5.PNG")]
NATURAL_ORDER = [
    "site-e/seq/" + name
    for name in (
        "frame_1.jpg",
        "frame_02.jpg",
        "frame_2.jpg",
        "frame_2b.jpg",
        "frame_9.jpg",
        "frame_10.jpg",
        "Frame_11.jpg",
        "frame_100.jpg",
    )
]
DATA_FIELDS = {"cloud_storage_id", "server_files", "image_quality", "use_zip_chunks", "use_cache", "sorting_method"}
WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")
ERROR_PREFIX = SCRIPT + ": error: "


def run_create(server, *args, **env):
    return run_script(SCRIPT, *args, server=server, **env)


def find_task_posts(server):
    return server.find("POST", r"/api/tasks")


def find_data_posts(server):
    return server.find("POST", r"/api/tasks/\d+/data/?")


def find_deletes(server):
    return server.find("DELETE", r"/api/tasks/\d+")


def find_writes(server):
    return [request for request in server.requests if request.method in WRITE_METHODS]


def find_error_lines(result):
    return [line for line in result.err.splitlines() if line.startswith(ERROR_PREFIX)]


@pytest.fixture
def scenario(cvat):
    """Return a function that seeds the local server with a named scenario and returns it."""

    def seed(name):
        cvat.seed_scenario(name)
        return cvat

    return seed


@pytest.fixture
def demo_run(cvat_demo):
    """Create the validation task of the team's notes on the demo state; return (server, result)."""
    result = run_create(cvat_demo, "--prefix", DEMO_PREFIX, "--name", DEMO_TASK_NAME)
    return cvat_demo, result


# The main job on the demo state.


def test_demo_task_body(demo_run):
    server, result = demo_run
    posts = find_task_posts(server)
    assert result.code == 0
    assert len(posts) == 1
    assert posts[0].body == {
        "name": DEMO_TASK_NAME,
        "project_id": 4,
        "subset": "validation",
        "segment_size": 1000,
        "source_storage": {"location": "cloud_storage", "cloud_storage_id": 4},
        "target_storage": {"location": "cloud_storage", "cloud_storage_id": 3},
    }
    assert type(posts[0].body["segment_size"]) is int
    assert type(posts[0].body["project_id"]) is int


def test_demo_data_body(demo_run):
    server, result = demo_run
    posts = find_data_posts(server)
    assert result.code == 0
    assert len(posts) == 1
    body = posts[0].body
    assert posts[0].path == "/api/tasks/20/data"
    assert set(body) == DATA_FIELDS
    assert type(body["cloud_storage_id"]) is int
    assert body["cloud_storage_id"] == 4
    assert body["server_files"] == DEMO_KEYS
    assert type(body["image_quality"]) is int
    assert body["image_quality"] == 100
    assert body["use_zip_chunks"] is True
    assert body["use_cache"] is True
    assert body["sorting_method"] == "natural"


def test_demo_keys_relative_to_bucket(demo_run):
    server, _ = demo_run
    keys = find_data_posts(server)[0].body["server_files"]
    assert [key for key in keys if key.startswith("/")] == []
    assert [key for key in keys if key.startswith("datasets/")] == []
    assert [key for key in keys if "thumbs/" in key or not key.endswith(".jpg")] == []


def test_demo_prints_result(demo_run):
    server, result = demo_run
    assert result.code == 0
    assert result.out.splitlines() == [
        "Task #20 created: " + DEMO_TASK_NAME,
        "  Project: 4 (Polyvision 4 classes), subset: validation",
        "  Frames: 2,388 in 3 jobs (segment size 1000)",
        "  URL: %s/tasks/20" % server.url,
    ]
    assert server.tasks[20]["size"] == 2388
    assert len(server.tasks[20]["job_ids"]) == 3


def test_demo_task_in_project_organization(demo_run):
    server, result = demo_run
    assert result.code == 0
    assert find_task_posts(server)[0].query["org_id"] == ["1"]
    assert server.tasks[20]["organization_id"] == 1


def test_dry_run_writes_nothing(cvat_demo):
    result = run_create(cvat_demo, "--prefix", DEMO_PREFIX, "--name", DEMO_TASK_NAME, "--dry-run")
    assert result.code == 0
    assert result.out.splitlines()[0] == "Dry run: nothing was created."
    assert "  Images: 2,388 from cloud storage 4 (bucket datasets), prefix %s" % DEMO_PREFIX in result.out
    assert "  Jobs: 3 (segment size 1000), image quality 100" in result.out
    assert find_writes(cvat_demo) == []
    assert sorted(cvat_demo.tasks) == [14, 17, 19]


def test_defaults_sent(scenario):
    server = scenario("bucket-prefix")
    result = run_create(server, "--prefix", "site-a/images/", "--name", "t20")
    assert result.code == 0
    assert len(find_task_posts(server)) == 1
    assert len(find_data_posts(server)) == 1
    task_body = find_task_posts(server)[0].body
    data_body = find_data_posts(server)[0].body
    assert task_body["segment_size"] == 1000
    assert task_body["subset"] == "validation"
    assert data_body["image_quality"] == 100
    assert data_body["use_cache"] is True


# Names already in the project.


def test_duplicate_name_rejected(scenario):
    server = scenario("long-task-list")
    result = run_create(server, "--prefix", "site-a/images/", "--name", "t12")
    assert result.code == 1
    assert result.out == ""
    assert len(find_error_lines(result)) == 1
    assert "already has a task named 't12' (#123)" in find_error_lines(result)[0]
    assert "--allow-duplicate-name" in find_error_lines(result)[0]
    assert find_writes(server) == []


def test_duplicates_on_every_page_named(scenario):
    # The test server returns 10 tasks a page, so these 13 namesakes fill two pages.
    server = scenario("long-task-list")
    for task_id in range(101, 113):
        server.tasks[task_id]["name"] = "t12"
    result = run_create(server, "--prefix", "site-a/images/", "--name", "t12")
    named = find_error_lines(result)[0]
    assert result.code == 1
    assert all("#%d" % task_id in named for task_id in list(range(101, 113)) + [123])
    assert find_writes(server) == []


def test_allow_duplicate_name_passes(scenario):
    server = scenario("long-task-list")
    result = run_create(server, "--prefix", "site-a/images/", "--name", "t12", "--allow-duplicate-name")
    assert result.code == 0
    assert len(find_task_posts(server)) == 1
    assert find_task_posts(server)[0].body["name"] == "t12"
    assert sorted(task["id"] for task in server.tasks.values() if task["name"] == "t12") == [123, 124]


# What the prefix lists.


def test_empty_listing_rejected(scenario):
    server = scenario("bucket-prefix")
    result = run_create(server, "--prefix", "site-z/images/", "--name", "t1")
    assert result.code == 1
    assert result.out == ""
    assert len(find_error_lines(result)) == 1
    assert "no images found under 'site-z/images/' in cloud storage 4" in find_error_lines(result)[0]
    assert find_writes(server) == []


def test_only_other_files_suggest_recursive(scenario):
    server = scenario("bucket-prefix")
    server.add_objects(4, ["site-g/labels/classes.txt", "site-g/labels/day1/a_1.jpg"])
    result = run_create(server, "--prefix", "site-g/labels/", "--name", "t1")
    assert result.code == 1
    assert "1 other file and 1 folder" in find_error_lines(result)[0]
    assert "--recursive" in find_error_lines(result)[0]
    assert find_writes(server) == []


def test_bucket_name_in_prefix_rejected(scenario):
    server = scenario("bucket-prefix")
    result = run_create(server, "--prefix", "datasets/site-a/images/", "--name", "t1")
    assert result.code == 1
    assert result.out == ""
    assert len(result.err.splitlines()) == 1
    assert "no images found under 'datasets/site-a/images/'" in result.err
    assert "bucket name 'datasets'" in result.err
    assert "--prefix site-a/images/" in result.err
    assert find_task_posts(server) == []
    assert find_writes(server) == []


def test_prefix_inside_bucket_takes_keys(scenario):
    server = scenario("bucket-prefix")
    result = run_create(server, "--prefix", "site-a/images/", "--name", "t1")
    assert result.code == 0
    assert find_data_posts(server)[0].body["server_files"] == SITE_A_KEYS
    assert server.tasks[1]["size"] == 3


@pytest.mark.parametrize("prefix", ["/site-a/images/", "site-a/images"])
def test_prefix_spelling_normalised(scenario, prefix):
    server = scenario("bucket-prefix")
    result = run_create(server, "--prefix", prefix, "--name", "t1")
    assert result.code == 0
    assert find_data_posts(server)[0].body["server_files"] == SITE_A_KEYS


def test_storage_id_sent_with_data(scenario):
    # This server fails the job, as CVAT does, when the data call names no storage.
    server = scenario("missing-storage-id")
    result = run_create(server, "--prefix", "site-a/images/", "--name", "t2")
    body = find_data_posts(server)[0].body
    assert result.code == 0
    assert type(body["cloud_storage_id"]) is int
    assert body["cloud_storage_id"] == 4
    assert "remote_files" not in body
    assert "client_files" not in body
    assert server.tasks[1]["size"] == 3


def test_mixed_files_only_images(scenario):
    server = scenario("mixed-files")
    result = run_create(server, "--prefix", "site-c/images/", "--name", "t4")
    assert result.code == 0
    assert find_data_posts(server)[0].body["server_files"] == MIXED_IMAGES
    assert server.tasks[1]["size"] == 5


def test_mixed_files_skipped_counts(scenario):
    server = scenario("mixed-files")
    result = run_create(server, "--prefix", "site-c/images/", "--name", "t4")
    assert result.code == 0
    assert "found 5 images under site-c/images/" in result.err
    assert "skipped 7 other files and 1 folder" in result.err


def test_recursive_adds_subfolder_images(scenario):
    server = scenario("mixed-files")
    result = run_create(server, "--prefix", "site-c/images/", "--name", "t4", "--recursive")
    keys = find_data_posts(server)[0].body["server_files"]
    assert result.code == 0
    assert keys == MIXED_IMAGES + ["site-c/images/thumbs/a_1.jpg"]
    assert len(set(keys)) == 6
    assert server.tasks[1]["size"] == 6


def test_natural_order_stable_across_runs(scenario):
    # The server shuffles every listing, so only the script's own sort can keep the order.
    server = scenario("natural-order")
    first = run_create(server, "--prefix", "site-e/seq/", "--name", "t7")
    second = run_create(server, "--prefix", "site-e/seq/", "--name", "t7-again")
    posts = find_data_posts(server)
    assert first.code == 0
    assert second.code == 0
    assert posts[0].body["server_files"] == NATURAL_ORDER
    assert posts[1].body["server_files"] == NATURAL_ORDER
    assert posts[0].body["sorting_method"] == "natural"


# Processing that fails after the task exists.


def test_failed_processing_deletes_task(scenario):
    server = scenario("failed-processing")
    result = run_create(server, "--prefix", "site-f/img/", "--name", "t8")
    errors = find_error_lines(result)
    assert result.code == 1
    assert result.out == ""
    assert len(errors) == 1
    assert "Failed to read the image file 'site-f/img/broken_3.jpg'" in errors[0]
    assert "the empty task #1 was deleted" in errors[0]
    assert [request.path for request in find_deletes(server)] == ["/api/tasks/1"]
    assert server.tasks == {}


def test_failed_task_never_called_created(scenario):
    server = scenario("failed-processing")
    result = run_create(server, "--prefix", "site-f/img/", "--name", "t8")
    assert result.code == 1
    assert "created" not in result.out.lower()
    assert "created" not in result.err.lower()
    assert "Frames:" not in result.out
    assert "Traceback" not in result.err


def test_delete_failure_names_task_left(scenario):
    server = scenario("failed-processing-delete-fails")
    result = run_create(server, "--prefix", "site-f/img/", "--name", "t8")
    errors = find_error_lines(result)
    assert result.code == 1
    assert result.out == ""
    assert len(errors) == 1
    assert "broken_3.jpg" in errors[0]
    assert "task #1 is left without data" in errors[0]
    assert "/api/tasks/1" in errors[0]
    assert len(find_deletes(server)) == 1
    assert sorted(server.tasks) == [1]
    assert "created" not in result.err.lower()
    assert "Traceback" not in result.err


@pytest.mark.parametrize("name", ["lost-data-answer", "lost-data-answer-504"])
def test_lost_data_response_polled_not_resent(scenario, name):
    server = scenario(name)
    result = run_create(server, "--prefix", "site-a/images/", "--name", "t10", "--timeout", "30")
    polls = server.find("GET", r"/api/requests/.+")
    assert result.code == 0
    assert len(find_data_posts(server)) == 1
    assert "  Frames: 3 in 1 job (segment size 1000)" in result.out.splitlines()
    assert len(polls) >= 1
    assert polls[0].path == "/api/requests/action%3Dcreate%26target%3Dtask%26target_id%3D1"
    assert find_deletes(server) == []


@pytest.mark.parametrize(
    "version, poll_path",
    [("2.15.0", "/api/tasks/1/status"), ("2.30.0", "/api/requests/create%3Atask-1")],
)
def test_lost_data_response_older_servers(scenario, version, poll_path):
    server = scenario("lost-data-answer")
    server.version = version
    result = run_create(server, "--prefix", "site-a/images/", "--name", "t10", CVAT_ACCESS_TOKEN=None, CVAT_TOKEN=SECRET_KEY)
    assert result.code == 0
    assert len(find_data_posts(server)) == 1
    assert len(server.find("GET", re.escape(poll_path))) >= 1
    assert server.tasks[1]["size"] == 3


def test_expired_request_task_deleted(scenario):
    server = scenario("lost-data-answer-expired")
    result = run_create(server, "--prefix", "site-a/images/", "--name", "t10", "--timeout", "30")
    errors = find_error_lines(result)
    assert result.code == 1
    assert result.out == ""
    assert len(find_data_posts(server)) == 1
    assert len(errors) == 1
    assert "task #1" in errors[0]
    assert "deleted" in errors[0]
    assert [request.path for request in find_deletes(server)] == ["/api/tasks/1"]
    assert server.tasks == {}


# Quality, segment size and the job limit.


@pytest.mark.parametrize(
    "flag, value, allowed",
    [
        ("--image-quality", "101", "from 1 to 100"),
        ("--image-quality", "high", "from 1 to 100"),
        ("--image-quality", "0", "from 1 to 100"),
        ("--segment-size", "-5", "positive integer"),
        ("--segment-size", "0", "positive integer"),
    ],
)
def test_bad_quality_or_segment_sends_nothing(scenario, flag, value, allowed):
    server = scenario("quality-and-segments")
    result = run_create(server, "--prefix", "site-a/images/", "--name", "t20", flag, value)
    assert result.code == 2
    assert result.out == ""
    assert len(result.err.splitlines()) == 1
    assert flag in result.err
    assert allowed in result.err
    assert len(server.requests) == 0


def test_segment_size_one_warns_and_proceeds(scenario):
    server = scenario("quality-and-segments")
    result = run_create(server, "--prefix", "site-d/img/", "--name", "t20", "--segment-size", "1")
    warnings = [line for line in result.err.splitlines() if line.startswith("warning: ")]
    assert result.code == 0
    assert len(warnings) == 1
    assert "5,000 jobs" in warnings[0]
    assert find_task_posts(server)[0].body["segment_size"] == 1
    assert len(server.tasks[1]["job_ids"]) == 5000


def test_too_many_jobs_rejected_before_write(scenario):
    server = scenario("quality-and-segments")
    result = run_create(server, "--prefix", "site-d/more/", "--name", "t20", "--segment-size", "1")
    errors = find_error_lines(result)
    assert result.code == 1
    assert len(errors) == 1
    assert "5,001 jobs" in errors[0]
    assert "--segment-size 2" in errors[0]
    assert find_writes(server) == []


# Organizations.


@pytest.mark.parametrize("org", [None, "field-team"])
@pytest.mark.parametrize("name", ["organization", "organization-own-project"])
def test_task_created_in_project_organization(scenario, name, org):
    server = scenario(name)
    result = run_create(server, "--prefix", "site-a/images/", "--name", "t14", CVAT_ORG=org)
    posts = find_task_posts(server)
    assert result.code == 0
    assert len(posts) == 1
    assert posts[0].query["org_id"] == ["2"]
    assert posts[0].header("X-Organization") is None
    assert server.tasks[37]["organization_id"] == 2
    assert server.tasks[37]["size"] == 3


@pytest.mark.parametrize("org", [None, "field-team"])
def test_create_org_id_never_with_header(scenario, org):
    server = scenario("organization")
    result = run_create(server, "--prefix", "site-a/images/", "--name", "t14", CVAT_ORG=org)
    assert result.code == 0
    mixed = [
        request
        for request in server.requests
        if "org_id" in request.query and request.header("X-Organization") is not None
    ]
    assert mixed == []


def test_other_organization_stops_before_write(scenario):
    server = scenario("organization")
    result = run_create(server, "--prefix", "site-a/images/", "--name", "t14", CVAT_ORG="polycube")
    errors = find_error_lines(result)
    assert result.code == 1
    assert len(errors) == 1
    assert "'polycube'" in errors[0]
    assert "'field-team'" in errors[0]
    assert find_writes(server) == []


# Tokens and the server address.


@pytest.mark.parametrize(
    "env, header",
    [
        ({"CVAT_ACCESS_TOKEN": SECRET_TOKEN}, "Bearer " + SECRET_TOKEN),
        ({"CVAT_ACCESS_TOKEN": None, "CVAT_TOKEN": SECRET_KEY}, "Token " + SECRET_KEY),
    ],
)
def test_token_sent_with_its_scheme(scenario, env, header):
    server = scenario("token-kinds")
    result = run_create(server, "--prefix", "site-a/images/", "--name", "t15", **env)
    assert result.code == 0
    assert {request.header("Authorization") for request in server.requests} == {header}
    assert server.find(None, r"/api/auth/.*") == []


@pytest.mark.parametrize(
    "env, variable, token",
    [
        ({"CVAT_ACCESS_TOKEN": "pat-bad"}, "CVAT_ACCESS_TOKEN", "pat-bad"),
        ({"CVAT_ACCESS_TOKEN": None, "CVAT_TOKEN": "key-bad"}, "CVAT_TOKEN", "key-bad"),
    ],
)
def test_rejected_token_named_not_echoed(scenario, env, variable, token):
    # This server repeats the rejected Authorization header in its 401 body.
    server = scenario("token-kinds")
    result = run_create(server, "--prefix", "site-a/images/", "--name", "t15", **env)
    assert result.code == 1
    assert result.out == ""
    assert len(result.err.splitlines()) == 1
    assert "rejected the token in %s" % variable in result.err
    assert token not in result.err
    assert find_writes(server) == []


def test_missing_token_sends_nothing(scenario):
    server = scenario("token-kinds")
    result = run_create(server, "--prefix", "site-a/images/", "--name", "t15", CVAT_ACCESS_TOKEN=None)
    assert result.code == 2
    assert "CVAT_ACCESS_TOKEN" in result.err
    assert "CVAT_TOKEN" in result.err
    assert len(server.requests) == 0


def test_url_without_scheme_sends_nothing(scenario):
    server = scenario("token-kinds")
    result = run_create(server, "--prefix", "site-a/images/", "--name", "t15", CVAT_URL="127.0.0.1:%d" % server.port)
    assert result.code == 2
    assert "add http:// or https://" in result.err
    assert len(server.requests) == 0


def test_read_only_token_leaves_no_task(scenario):
    server = scenario("token-kinds")
    result = run_create(server, "--prefix", "site-a/images/", "--name", "t15", CVAT_ACCESS_TOKEN="pat-readonly")
    errors = find_error_lines(result)
    assert result.code == 1
    assert len(errors) == 1
    assert "read-only" in errors[0]
    assert "write access" in errors[0]
    assert sorted(server.tasks) == [14, 17, 19]
    assert find_data_posts(server) == []


# Server generations.


@pytest.mark.parametrize(
    "version, poll_path",
    [
        ("2.15.0", "/api/tasks/1/status"),
        ("2.30.0", "/api/requests/create%3Atask-1"),
        ("2.73.0", "/api/requests/action%3Dcreate%26target%3Dtask%26target_id%3D1"),
    ],
)
def test_server_generations_finish(scenario, version, poll_path):
    server = scenario("bucket-prefix")
    server.version = version
    result = run_create(server, "--prefix", "site-a/images/", "--name", "t1", CVAT_ACCESS_TOKEN=None, CVAT_TOKEN=SECRET_KEY)
    assert result.code == 0
    assert "  Frames: 3 in 1 job (segment size 1000)" in result.out.splitlines()
    assert len(server.find("GET", re.escape(poll_path))) >= 1
    assert server.tasks[1]["size"] == 3
    assert len(find_data_posts(server)) == 1
