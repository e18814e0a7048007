"""Smoke tests of the local CVAT test server in tests/fake_cvat.py."""

import os
import signal
import subprocess
import sys
import time
from urllib.parse import quote

import pytest
import requests

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from fake_cvat import FakeCvat, scenario_names  # noqa: E402

PAT = {"Authorization": "Bearer pat-good"}
KEY = {"Authorization": "Token key-good"}
SITE_A_KEYS = ["site-a/images/f_1.jpg", "site-a/images/f_2.jpg", "site-a/images/f_3.jpg"]
TIMEOUT = 10


@pytest.fixture
def start_server():
    """Start FakeCvat servers with a scenario and settings; all are stopped afterwards."""
    servers = []

    def start(scenario=None, **settings):
        srv = FakeCvat(**settings)
        if scenario:
            srv.seed_scenario(scenario)
        servers.append(srv.start())
        return srv

    yield start
    for srv in servers:
        srv.stop()


def call(srv, method, path, headers=PAT, **kwargs):
    return requests.request(method, srv.url + path, headers=headers, timeout=TIMEOUT, **kwargs)


def create_task(srv, headers=PAT, **fields):
    body = dict({"name": "smoke", "project_id": 4}, **fields)
    response = call(srv, "POST", "/api/tasks", headers=headers, json=body)
    assert response.status_code == 201, response.text
    return response.json()


def data_body(server_files=SITE_A_KEYS, **fields):
    return dict({"image_quality": 70, "cloud_storage_id": 4, "use_cache": True,
                 "sorting_method": "natural", "server_files": list(server_files)}, **fields)


def poll_request(srv, rq_id, headers=PAT, limit=5.0):
    """Poll a request until it ends; returns the statuses seen and the last body."""
    statuses = []
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        body = call(srv, "GET", "/api/requests/" + quote(rq_id, safe=""), headers=headers).json()
        statuses.append(body["status"])
        if body["status"] in ("finished", "failed"):
            return statuses, body
        time.sleep(0.02)
    raise AssertionError("request {} did not end: {}".format(rq_id, statuses))


def run_data_job(srv, body):
    task = create_task(srv)
    response = call(srv, "POST", "/api/tasks/{}/data".format(task["id"]), json=body)
    assert response.status_code == 202, response.text
    return task, poll_request(srv, response.json()["rq_id"])[1]


def test_server_binds_loopback_and_stops():
    srv = FakeCvat().start()
    url = srv.url
    assert url.startswith("http://127.0.0.1:")
    about = requests.get(url + "/api/server/about", timeout=TIMEOUT)
    assert about.status_code == 200
    assert about.json()["version"] == "2.73.0"
    assert about.headers["Content-Type"] == "application/vnd.cvat+json"
    srv.stop()
    with pytest.raises(requests.ConnectionError):
        requests.get(url + "/api/server/about", timeout=TIMEOUT)


def test_every_scenario_seeds():
    names = scenario_names()
    assert "bucket-prefix" in names
    assert "organization" in names
    for name in names + ["demo"]:
        srv = FakeCvat().seed_scenario(name)
        assert srv.cloud_storages, name
    with pytest.raises(ValueError):
        FakeCvat().seed_scenario("no-such-scenario")


def test_auth_token_kinds(start_server):
    srv = start_server("token-kinds")
    assert call(srv, "GET", "/api/projects/4", headers=PAT).status_code == 200
    assert call(srv, "GET", "/api/projects/4", headers=KEY).status_code == 200
    anonymous = call(srv, "GET", "/api/projects/4", headers={})
    assert anonymous.status_code == 401
    assert anonymous.json() == {"detail": "Authentication credentials were not provided."}
    assert call(srv, "GET", "/api/server/about", headers={}).status_code == 200
    rejected = call(srv, "GET", "/api/server/about", headers={"Authorization": "Bearer pat-bad"})
    assert rejected.status_code == 401
    assert rejected.json() == {"detail": "Invalid token: Bearer pat-bad"}
    wrong_scheme = call(srv, "GET", "/api/projects/4", headers={"Authorization": "Token pat-good"})
    assert wrong_scheme.status_code == 401
    readonly = {"Authorization": "Bearer pat-readonly"}
    assert call(srv, "GET", "/api/tasks/19", headers=readonly).status_code == 200
    patch = call(srv, "PATCH", "/api/tasks/19", headers=readonly, json={"subset": "test"})
    assert patch.status_code == 403
    assert srv.tasks[19]["subset"] == "train"


def test_task_list_pagination_shape(start_server):
    srv = start_server("long-task-list")
    first = call(srv, "GET", "/api/tasks", params={"project_id": 4, "page_size": 100}).json()
    assert first["count"] == 23
    assert len(first["results"]) == 10
    assert first["previous"] is None
    assert first["next"] == srv.url + "/api/tasks?page=2&page_size=100&project_id=4"
    assert [task["id"] for task in first["results"]] == list(range(123, 113, -1))
    third = call(srv, "GET", "/api/tasks", params={"project_id": 4, "page": 3}).json()
    assert len(third["results"]) == 3
    assert third["next"] is None
    assert third["previous"] == srv.url + "/api/tasks?page=2&project_id=4"
    beyond = call(srv, "GET", "/api/tasks", params={"project_id": 4, "page": 4})
    assert beyond.status_code == 404
    assert beyond.json() == {"detail": "Invalid page."}
    assert [task["subset"] for task in third["results"]] == ["train"] * 3
    srv.task_page_size_cap = None
    every = call(srv, "GET", "/api/tasks", params={"project_id": 4, "page_size": "all"}).json()
    assert sum(task["size"] for task in every["results"]) == 13350
    srv.public_base = "http://cvat-internal:8080"
    linked = call(srv, "GET", "/api/tasks", params={"page_size": 5}).json()
    assert linked["next"].startswith("http://cvat-internal:8080/api/tasks?")


def test_content_listing_dirs_and_pages(start_server):
    srv = start_server("mixed-files")
    path = "/api/cloudstorages/4/content-v2"
    listing = call(srv, "GET", path, params={"prefix": "site-c/images/"}).json()
    assert listing["next"] is None
    assert listing["content"][0] == {"name": "thumbs", "type": "DIR", "mime_type": "DIR"}
    names = [entry["name"] for entry in listing["content"] if entry["type"] == "REG"]
    assert len(names) == 12
    assert "a_2.JPG" in names
    mime_types = {entry["name"]: entry["mime_type"] for entry in listing["content"]}
    assert mime_types["a_2.JPG"] == "image"
    assert mime_types["manifest.jsonl"] == "unknown"

    pages, token = [], None
    while True:
        params = {"prefix": "/site-c/images/", "page_size": 5}
        if token:
            params["next_token"] = token
        page = call(srv, "GET", path, params=params).json()
        pages.append(page["content"])
        token = page["next"]
        if token is None:
            break
    assert [len(page) for page in pages] == [5, 5, 3]
    assert sorted(entry["name"] for page in pages for entry in page) == sorted(
        entry["name"] for entry in listing["content"])

    folder = call(srv, "GET", path, params={"prefix": "site-c/images"}).json()
    assert folder == {"content": [{"name": "images", "type": "DIR", "mime_type": "DIR"}],
                      "next": None}
    with_bucket = call(srv, "GET", path, params={"prefix": "datasets/site-a/images/"})
    assert with_bucket.status_code == 200
    assert with_bucket.json() == {"content": [], "next": None}
    assert call(srv, "GET", path, params={"page_size": "many"}).status_code == 400
    assert call(srv, "GET", "/api/cloudstorages/99/content-v2").status_code == 500


def test_content_listing_100k_keys(start_server):
    srv = start_server()
    srv.add_cloud_storage(4, "datasets")
    srv.add_objects(4, ["big/frame_{:06d}.jpg".format(number) for number in range(100000)])
    srv.add_objects(4, ["big/sub/a.jpg", "big/sub/"])
    started = time.monotonic()
    names, token, pages = [], None, 0
    with requests.Session() as session:
        session.headers.update(PAT)
        while True:
            params = {"prefix": "big/", "page_size": 1000}
            if token:
                params["next_token"] = token
            page = session.get(srv.url + "/api/cloudstorages/4/content-v2", params=params,
                               timeout=TIMEOUT).json()
            assert len(page["content"]) <= 500
            names.extend(entry["name"] for entry in page["content"])
            pages += 1
            token = page["next"]
            if token is None:
                break
    assert pages == 201
    assert len(names) == 100001
    assert "sub" in names
    assert time.monotonic() - started < 20


def test_org_scoping_of_task_lists(start_server):
    srv = start_server("organization")
    org_header = {"X-Organization": "field-team"}

    def task_ids(headers=PAT, **params):
        response = call(srv, "GET", "/api/tasks", headers=headers,
                        params=dict({"project_id": 4}, **params))
        assert response.status_code == 200, response.text
        return sorted(task["id"] for task in response.json()["results"])

    assert task_ids() == [31, 34]
    assert task_ids(org_id=2) == [31, 32, 33, 34, 35, 36]
    assert task_ids(headers=dict(PAT, **org_header)) == [31, 32, 33, 34, 35, 36]
    assert task_ids(org="") == []
    both = call(srv, "GET", "/api/tasks", headers=dict(PAT, **org_header), params={"org_id": 2})
    assert both.status_code == 400
    unknown = call(srv, "GET", "/api/tasks/31", headers=dict(PAT, **{"X-Organization": "nope"}))
    assert unknown.status_code == 404
    project = call(srv, "GET", "/api/projects/4").json()
    assert project["organization_id"] == 2
    assert project["task_subsets"] == ["test", "train", "validation"]


def test_task_create_follows_org_context(start_server):
    srv = start_server("organization")
    without_context = call(srv, "POST", "/api/tasks", json={"name": "t14", "project_id": 4})
    assert without_context.status_code == 403
    other_org = call(srv, "POST", "/api/tasks", json={"name": "t14", "project_id": 4},
                     headers=dict(PAT, **{"X-Organization": "polycube"}))
    assert other_org.status_code == 403
    task = create_task(srv, headers=dict(PAT, **{"X-Organization": "field-team"}), name="t14")
    assert task["organization_id"] == 2
    assert "size" not in task
    assert task["data"] is None
    assert task["media_type"] == ""

    own = start_server("organization-own-project")
    mismatch = call(own, "POST", "/api/tasks", json={"name": "t14", "project_id": 4})
    assert mismatch.status_code == 400
    assert mismatch.json() == ["The task and its project should be in the same organization."]
    missing = call(own, "POST", "/api/tasks", json={"name": "t14", "project_id": 77},
                   headers=dict(PAT, **{"X-Organization": "field-team"}))
    assert missing.status_code == 400


def test_data_post_request_lifecycle(start_server):
    srv = start_server("bucket-prefix", processing_seconds=1.0)
    task = create_task(srv, segment_size=1000)
    data_path = "/api/tasks/{}/data".format(task["id"])
    accepted = call(srv, "POST", data_path, json=data_body())
    assert accepted.status_code == 202
    rq_id = accepted.json()["rq_id"]
    assert rq_id == "action=create&target=task&target_id={}".format(task["id"])
    conflict = call(srv, "POST", data_path, json=data_body())
    assert conflict.status_code == 409
    assert conflict.json() == {"rq_id": rq_id}
    statuses, request = poll_request(srv, rq_id)
    assert statuses[0] == "queued"
    assert "started" in statuses
    assert statuses[-1] == "finished"
    assert request["operation"]["task_id"] == task["id"]
    assert request["expiry_date"] is not None
    old_form = call(srv, "GET", "/api/requests/" + quote("create:task-{}".format(task["id"])))
    assert old_form.status_code == 200
    again = call(srv, "POST", data_path, json=data_body())
    assert again.status_code == 400
    assert again.json() == "Adding more data is not supported"
    final = call(srv, "GET", "/api/tasks/{}".format(task["id"])).json()
    assert final["size"] == 3
    assert final["media_type"] == "image"
    assert final["jobs"]["count"] == 1
    jobs = call(srv, "GET", "/api/jobs", params={"task_id": task["id"]}).json()
    assert [job["frame_count"] for job in jobs["results"]] == [3]
    assert srv.tasks[task["id"]]["files"] == SITE_A_KEYS


def test_data_job_failures(start_server):
    srv = start_server("failed-processing", processing_seconds=0.05)
    srv.add_objects(4, ["site-c/notes.md"])
    cases = [
        (data_body(cloud_storage_id=None),
         "FileNotFoundError: [Errno 2] No such file or directory: "
         "'/home/django/share/site-a/images/f_1.jpg'"),
        (data_body(cloud_storage_id="4"), "/home/django/share/site-a/images/f_1.jpg"),
        (data_body(["site-a/images/f_9.jpg"]),
         "The object 'site-a/images/f_9.jpg' was not found in the bucket 'datasets'"),
        (data_body(["site-c/notes.md"]), "Unsupported file type: site-c/notes.md"),
        (data_body(["site-f/img/"]), "Failed to read the image file 'site-f/img/broken_3.jpg'"),
    ]
    for body, message in cases:
        task, request = run_data_job(srv, body)
        assert request["status"] == "failed", body
        assert message in request["message"]
        stored = call(srv, "GET", "/api/tasks/{}".format(task["id"])).json()
        assert stored["size"] == 0
        assert stored["jobs"]["count"] == 0

    task = create_task(srv)
    data_path = "/api/tasks/{}/data".format(task["id"])
    too_high = call(srv, "POST", data_path, json=data_body(image_quality=101))
    assert too_high.status_code == 400
    assert too_high.json() == {"image_quality": ["Ensure this value is less than or equal to 100."]}
    bad_path = call(srv, "POST", data_path, json=data_body(["/site-a/images/f_1.jpg"]))
    assert bad_path.status_code == 400

    unknown_field = call(srv, "POST", data_path, json=data_body(remote_file=[]))
    assert unknown_field.status_code == 400
    assert call(srv, "DELETE", "/api/tasks/{}".format(task["id"])).status_code == 204
    assert task["id"] not in srv.tasks


def test_fault_before_sends_status_and_headers(start_server):
    srv = start_server("bucket-prefix")
    srv.add_fault("GET", r"/api/projects/\d+", status=429, headers={"Retry-After": "2"},
                  body={"detail": "Request was throttled."})
    throttled = call(srv, "GET", "/api/projects/4")
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "2"
    assert call(srv, "GET", "/api/projects/4").status_code == 200
    records = srv.find("GET", r"/api/projects/4")
    assert [record.status for record in records] == [429, 200]
    assert records[0].headers["authorization"] == "Bearer pat-good"
    assert records[0]["query"] == {}


def test_fault_after_drop_keeps_state_change(start_server):
    srv = start_server("lost-data-answer", processing_seconds=0.2)
    task = create_task(srv)
    with pytest.raises(requests.ConnectionError):
        call(srv, "POST", "/api/tasks/{}/data/".format(task["id"]), json=data_body())
    records = srv.find("POST", r"/api/tasks/\d+/data/?")
    assert len(records) == 1
    assert records[0].status is None
    assert records[0].body["server_files"] == SITE_A_KEYS
    statuses, request = poll_request(
        srv, "action=create&target=task&target_id={}".format(task["id"]))
    assert statuses[-1] == "finished"
    assert srv.tasks[task["id"]]["size"] == 3


def test_fault_delay_only_and_query_match(start_server):
    srv = start_server("throttled")
    srv.add_fault("GET", r"/api/server/about", delay=0.3)
    started = time.monotonic()
    assert call(srv, "GET", "/api/server/about").status_code == 200
    assert time.monotonic() - started >= 0.3
    path = "/api/cloudstorages/4/content-v2"
    first = call(srv, "GET", path, params={"prefix": "site-b/img/"})
    assert first.status_code == 200
    token = first.json()["next"]
    throttled = call(srv, "GET", path, params={"prefix": "site-b/img/", "next_token": token})
    assert throttled.status_code == 429
    assert throttled.headers["Retry-After"] == "2"
    retried = call(srv, "GET", path, params={"prefix": "site-b/img/", "next_token": token})
    assert retried.status_code == 200


def test_legacy_version_status_endpoint(start_server):
    srv = start_server("bucket-prefix", version="2.15.0", processing_seconds=0.1)
    assert call(srv, "GET", "/api/tasks", headers=PAT).status_code == 401
    task = create_task(srv, headers=KEY)
    data_path = "/api/tasks/{}/data".format(task["id"])
    without_quality = {key: value for key, value in data_body().items() if key != "image_quality"}
    no_quality = call(srv, "POST", data_path, headers=KEY, json=without_quality)
    assert no_quality.status_code == 400
    accepted = call(srv, "POST", data_path, headers=KEY, json=data_body())
    assert accepted.status_code == 202
    assert accepted.json() == {}
    requests_api = call(srv, "GET", "/api/requests/" + quote("create:task-1"), headers=KEY)
    assert requests_api.status_code == 404
    state = None
    for _ in range(100):
        state = call(srv, "GET", "/api/tasks/{}/status".format(task["id"]), headers=KEY).json()
        if state["state"] in ("Finished", "Failed"):
            break
        time.sleep(0.02)
    assert state == {"state": "Finished", "message": "", "progress": 100}
    assert "organization_id" not in task


def test_middle_version_rq_id_form(start_server):
    srv = start_server("bucket-prefix", version="2.30.0")
    task = create_task(srv, headers=KEY)
    accepted = call(srv, "POST", "/api/tasks/{}/data".format(task["id"]), headers=KEY,
                    json=data_body())
    assert accepted.json() == {"rq_id": "create:task-{}".format(task["id"])}
    new_form = "action=create&target=task&target_id={}".format(task["id"])
    assert call(srv, "GET", "/api/requests/" + quote(new_form, safe=""),
                headers=KEY).status_code == 404
    assert call(srv, "GET", "/api/tasks/{}/status".format(task["id"]),
                headers=KEY).status_code == 404


def test_missing_image_quality_fails_job_on_modern_server(start_server):
    srv = start_server("bucket-prefix", processing_seconds=0.05)
    body = {key: value for key, value in data_body().items() if key != "image_quality"}
    task, request = run_data_job(srv, body)
    assert request["status"] == "failed"
    assert "image_quality" in request["message"]


def test_patch_subset_rules(start_server):
    srv = start_server("subset-names")
    assert call(srv, "PATCH", "/api/tasks/19", json={"subset": "  train "}).json()["subset"] \
        == "train"
    assert call(srv, "PATCH", "/api/tasks/99", json={"subset": "train"}).status_code == 404
    assert call(srv, "PATCH", "/api/tasks/22", json={"subset": "train"}).status_code == 403
    null = call(srv, "PATCH", "/api/tasks/20", json={"subset": None})
    assert null.status_code == 400
    assert null.json() == {"subset": ["This field may not be null."]}
    assert call(srv, "PATCH", "/api/tasks/20", json={"subset": "x" * 65}).status_code == 400
    assert call(srv, "PATCH", "/api/tasks/21", json={"subset": ""}).json()["subset"] == ""


def test_shapes_match_sdk_models(start_server):
    """Deserialize every response with the models of the official SDK, when it is installed."""
    pytest.importorskip("cvat_sdk")
    from cvat_sdk.api_client import Configuration
    from cvat_sdk.api_client.model.about import About
    from cvat_sdk.api_client.model.cloud_storage_content import CloudStorageContent
    from cvat_sdk.api_client.model.cloud_storage_read import CloudStorageRead
    from cvat_sdk.api_client.model.data_response import DataResponse
    from cvat_sdk.api_client.model.job_read import JobRead
    from cvat_sdk.api_client.model.organization_read import OrganizationRead
    from cvat_sdk.api_client.model.paginated_task_read_list import PaginatedTaskReadList
    from cvat_sdk.api_client.model.project_read import ProjectRead
    from cvat_sdk.api_client.model.request import Request
    from cvat_sdk.api_client.model.task_read import TaskRead
    from cvat_sdk.api_client.model_utils import validate_and_convert_types

    configuration = Configuration()

    def check(model, response):
        assert response.status_code < 300, response.text
        validate_and_convert_types(response.json(), (model,), ["received_data"], True, True,
                                   configuration=configuration)

    srv = start_server(processing_seconds=0.05)
    srv.seed_demo()
    headers = {"Authorization": "Bearer demo-token", "X-Organization": "polycube"}
    check(About, call(srv, "GET", "/api/server/about", headers=headers))
    check(OrganizationRead, call(srv, "GET", "/api/organizations/1", headers=headers))
    check(ProjectRead, call(srv, "GET", "/api/projects/4", headers=headers))
    check(PaginatedTaskReadList, call(srv, "GET", "/api/tasks", headers=headers))
    check(CloudStorageRead, call(srv, "GET", "/api/cloudstorages/4", headers=headers))
    check(CloudStorageContent, call(srv, "GET", "/api/cloudstorages/4/content-v2",
                                    headers=headers, params={"prefix": "nrt/"}))
    check(JobRead, call(srv, "GET", "/api/jobs/1", headers=headers))
    created = call(srv, "POST", "/api/tasks", headers=headers, json={"name": "t", "project_id": 4})
    check(TaskRead, created)
    task_id = created.json()["id"]
    accepted = call(srv, "POST", "/api/tasks/{}/data".format(task_id), headers=headers,
                    json=data_body(["nrt/Parc-Omnisport-Suzanne-Lenglen_2026-02-14/validation/"
                                    "frame_000001.jpg"]))
    check(DataResponse, accepted)
    rq_path = "/api/requests/" + quote(accepted.json()["rq_id"], safe="")
    check(Request, call(srv, "GET", rq_path, headers=headers))
    time.sleep(0.1)
    check(Request, call(srv, "GET", rq_path, headers=headers))
    check(TaskRead, call(srv, "GET", "/api/tasks/{}".format(task_id), headers=headers))


def test_standalone_mode_serves_until_sigterm():
    script = os.path.join(os.path.dirname(os.path.abspath(__file__)), "fake_cvat.py")
    process = subprocess.Popen([sys.executable, script, "--seed", "demo", "--port", "0"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        line = process.stdout.readline().strip()
        assert line.startswith("FAKE_CVAT_URL=http://127.0.0.1:")
        url = line.split("=", 1)[1]
        headers = {"Authorization": "Bearer demo-token"}
        project = requests.get(url + "/api/projects/4", headers=headers, timeout=TIMEOUT)
        assert project.json()["name"] == "Polyvision 4 classes"
    finally:
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=TIMEOUT) == 0
        process.stdout.close()
        process.stderr.close()
