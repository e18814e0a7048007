"""Contract tests of the cvat-scripts against the official CVAT SDK (cvat-sdk 2.80.0).

The SDK's generated models describe CVAT's wire format, so they serve as the reference here.
The tests run the real scripts in-process against the local CVAT test server (fake_cvat.py)
and check that:

- every request body a script sends fits the SDK request model of its endpoint;
- every response the local server sends fits the SDK response model of its endpoint, and every
  query parameter a script sends is one the SDK declares for that endpoint;
- the SDK itself, driven against the same server, gets the same results as the scripts.

The generated models accept unknown keys as "additional properties", so check_model() also
compares every key, at every depth, with the model's attribute_map.
"""

import json
import os
import re
import sys
from urllib.parse import parse_qs, quote, urlsplit

import pytest
import requests

from cvat_sdk.api_client import ApiClient, Configuration, models
from cvat_sdk.api_client.exceptions import ApiException, OpenApiException
from cvat_sdk.api_client.model_utils import (
    ModelComposed,
    ModelNormal,
    to_json,
    validate_and_convert_types,
)
from cvat_sdk.api_client.rest import RESTClientObject
from cvat_sdk.core.client import AccessTokenCredentials, Client, Config
from cvat_sdk.core.proxies.tasks import ResourceType

TESTS_DIR = os.path.dirname(os.path.abspath(__file__))
PROJECT_DIR = os.path.dirname(TESTS_DIR)
for _path in (PROJECT_DIR, TESTS_DIR):
    if _path not in sys.path:
        sys.path.insert(0, _path)

import create_cvat_task_validation  # noqa: E402
import cvat_common  # noqa: E402
import show_project_subsets  # noqa: E402
import update_task_subset  # noqa: E402
from fake_cvat import FakeCvat  # noqa: E402

# Seconds the local server takes to process a data call. The scripts poll every 0.25 s at first.
PROCESSING_SECONDS = 0.3
# Folder of the seeded cloud storage 4 that contains 2,388 images and a few non-image files.
PREFIX = "nrt/Parc-Omnisport-Suzanne-Lenglen_2026-02-14/validation/"
SEEDED_IMAGE_COUNT = 2388
# Tokens the local server accepts by default.
ACCESS_TOKEN = "pat-good"
API_KEY = "key-good"
READ_ONLY_TOKEN = "pat-readonly"

# CVAT reads the organization context from these query parameters on every endpoint, although
# the SDK's schema declares them only on list and create endpoints.
ORG_CONTEXT_PARAMS = frozenset({"org", "org_id"})

# One row per endpoint the scripts or the SDK call: method, path pattern, SDK API and endpoint
# attribute, and the SDK response model for each success status (None means no body).
ENDPOINTS = [
    ("GET", r"/api/server/about/?", "server_api", "retrieve_about_endpoint", {200: models.About}),
    ("GET", r"/api/users/self/?", "users_api", "retrieve_self_endpoint", {200: models.MetaUser}),
    (
        "GET",
        r"/api/organizations/?",
        "organizations_api",
        "list_endpoint",
        {200: models.PaginatedOrganizationReadList},
    ),
    (
        "GET",
        r"/api/organizations/\d+/?",
        "organizations_api",
        "retrieve_endpoint",
        {200: models.OrganizationRead},
    ),
    ("GET", r"/api/projects/\d+/?", "projects_api", "retrieve_endpoint", {200: models.ProjectRead}),
    (
        "GET",
        r"/api/cloudstorages/\d+/?",
        "cloudstorages_api",
        "retrieve_endpoint",
        {200: models.CloudStorageRead},
    ),
    (
        "GET",
        r"/api/cloudstorages/\d+/content-v2/?",
        "cloudstorages_api",
        "retrieve_content_v2_endpoint",
        {200: models.CloudStorageContent},
    ),
    ("GET", r"/api/tasks/?", "tasks_api", "list_endpoint", {200: models.PaginatedTaskReadList}),
    ("POST", r"/api/tasks/?", "tasks_api", "create_endpoint", {201: models.TaskRead}),
    ("GET", r"/api/tasks/\d+/?", "tasks_api", "retrieve_endpoint", {200: models.TaskRead}),
    ("PATCH", r"/api/tasks/\d+/?", "tasks_api", "partial_update_endpoint", {200: models.TaskRead}),
    ("DELETE", r"/api/tasks/\d+/?", "tasks_api", "destroy_endpoint", {204: None}),
    # A 409 repeats the request id of the job already running, which is the RqId shape.
    (
        "POST",
        r"/api/tasks/\d+/data/?",
        "tasks_api",
        "create_data_endpoint",
        {202: models.DataResponse, 409: models.RqId},
    ),
    ("GET", r"/api/tasks/\d+/status/?", "tasks_api", "retrieve_status_endpoint", {200: models.RqStatus}),
    ("GET", r"/api/requests/[^/]+/?", "requests_api", "retrieve_endpoint", {200: models.Request}),
    ("GET", r"/api/jobs/?", "jobs_api", "list_endpoint", {200: models.PaginatedJobReadList}),
]

# Server generations of the local server, with a token each one accepts. Bearer (personal
# access tokens) exists from CVAT 2.48. Request ids exist from 2.16, as "create:task-N" until 2.37.
GENERATIONS = [
    pytest.param("2.15.0", "CVAT_TOKEN", API_KEY, "Token", id="2.15-legacy-status"),
    pytest.param("2.30.0", "CVAT_TOKEN", API_KEY, "Token", id="2.30-colon-request-id"),
    pytest.param("2.73.0", "CVAT_TOKEN", API_KEY, "Token", id="2.73-api-key"),
    pytest.param("2.73.0", "CVAT_ACCESS_TOKEN", ACCESS_TOKEN, "Bearer", id="2.73-access-token"),
]

SDK_CONFIGURATION = Configuration()
# This client never connects. It only gives access to the SDK's endpoint parameter maps.
SDK_API_CLIENT = ApiClient(Configuration(host="http://127.0.0.1"))


class ContractError(AssertionError):
    """A body that does not fit the SDK model of its endpoint."""


# ---------------------------------------------------------------------------------------------
# Model checks


def find_unknown_keys(value, expected_types, path):
    """Return the paths of keys in JSON value that no SDK model in expected_types declares.

    expected_types is an openapi_types entry: a tuple of classes, where [X] means a list of X
    and {str: (X,)} a map of X.
    """
    unknown = []
    for expected in expected_types:
        if isinstance(expected, list) and isinstance(value, list):
            for index, item in enumerate(value):
                unknown.extend(find_unknown_keys(item, tuple(expected), path + [index]))
        elif isinstance(expected, dict) and isinstance(value, dict):
            for key, item in value.items():
                unknown.extend(find_unknown_keys(item, expected[str], path + [key]))
        elif (
            isinstance(expected, type)
            and issubclass(expected, (ModelNormal, ModelComposed))
            and isinstance(value, dict)
        ):
            # attribute_map maps Python names to JSON keys, and a composed model's map has its parts' keys.
            python_names = {json_key: name for name, json_key in expected.attribute_map.items()}
            for key, item in value.items():
                if key not in python_names:
                    unknown.append(path + [key])
                    continue
                inner_types = expected.openapi_types[python_names[key]]
                unknown.extend(find_unknown_keys(item, inner_types, path + [key]))
    return unknown


def check_model(data, model, where):
    """Deserialize JSON data into the SDK model with type checks on and return the instance.

    Raise ContractError on a wrong type, a missing required field, an invalid enum value or
    length, or a key the model does not declare at any depth.
    """
    try:
        instance = validate_and_convert_types(
            data, (model,), [where], True, True, configuration=SDK_CONFIGURATION
        )
    except (OpenApiException, TypeError) as error:
        raise ContractError("%s does not fit %s: %s" % (where, model.__name__, error))

    unknown = sorted(set(tuple(path) for path in find_unknown_keys(data, (model,), [])), key=str)
    if unknown:
        names = ", ".join(".".join(str(part) for part in path) for path in unknown)
        raise ContractError("%s has keys that %s does not declare: %s" % (where, model.__name__, names))
    if not isinstance(instance, model):
        raise ContractError("%s is a %s, not a %s" % (where, type(data).__name__, model.__name__))
    return instance


def check_request_body(data, model, where):
    """Check a request body against its SDK model, which must serialize it back unchanged."""
    instance = check_model(data, model, where)
    assert to_json(instance) == data, "%s changes when the SDK serializes %s" % (where, model.__name__)
    return instance


def find_endpoint(method, path):
    for row in ENDPOINTS:
        if row[0] == method and re.fullmatch(row[1], path):
            return row
    return None


def sdk_query_parameters(api_name, endpoint_name):
    """Return the query parameter names the SDK declares for one endpoint."""
    endpoint = getattr(getattr(SDK_API_CLIENT, api_name), endpoint_name)
    return {
        endpoint.attribute_map[name]
        for name, location in endpoint.location_map.items()
        if location == "query"
    }


def parse_body(content):
    """Return a response body as JSON, or as text when it is not JSON."""
    text = content.decode("utf-8")
    try:
        return json.loads(text)
    except ValueError:
        return text


def check_error_body(status, body, where):
    """Check an error body: {"detail": ...} must fit RestAuthDetail, other bodies CVAT's shapes."""
    if isinstance(body, dict) and "detail" in body:
        check_model(body, models.RestAuthDetail, where)
    elif isinstance(body, dict):
        # Field validation errors: {"field": ["message", ...]}. The SDK has no model for them.
        assert status == 400, "%s: a field error body with HTTP %d" % (where, status)
        for field, problems in body.items():
            assert isinstance(problems, list), "%s: errors of %r are not a list" % (where, field)
            assert all(isinstance(problem, str) for problem in problems), where
    elif isinstance(body, list):
        assert all(isinstance(problem, str) for problem in body), where
    else:
        # A bare JSON string or plain text, as the requests and content-v2 endpoints send.
        assert isinstance(body, str), where


def check_exchange(method, path, query, status, content):
    """Check one call against the SDK: the endpoint is known, its query declared, its body typed."""
    where = "%s %s -> %d" % (method, path, status)
    row = find_endpoint(method, path)
    if row is None:
        raise ContractError("%s: no SDK endpoint is mapped for this call; add it to ENDPOINTS" % where)

    _, _, api_name, endpoint_name, response_models = row
    undeclared = set(query) - sdk_query_parameters(api_name, endpoint_name) - ORG_CONTEXT_PARAMS
    if undeclared:
        raise ContractError("%s: query parameters the SDK does not declare: %s" % (where, sorted(undeclared)))

    if status >= 400:
        check_error_body(status, parse_body(content), where)
        return None
    assert status in response_models, "%s: the SDK expects status %s" % (where, sorted(response_models))
    model = response_models[status]
    if model is None:
        assert content == b"", "%s: a body where the SDK expects none" % where
        return None
    return check_model(parse_body(content), model, where)


# ---------------------------------------------------------------------------------------------
# The local server's request records


def recorded(server, method, path_pattern):
    """Return the recorded requests whose method and path (without query) match."""
    return [
        record
        for record in list(server.requests)
        if record.method == method and re.fullmatch(path_pattern, record.path)
    ]


def recorded_json(record):
    """Return the body of a recorded request, parsed from the raw bytes the server received."""
    return json.loads(record.raw_body.decode("utf-8"))


# ---------------------------------------------------------------------------------------------
# Fixtures


class Exchange:
    """One call that a script or the SDK made, with the status and body of the response."""

    def __init__(self, method, path, query, status, content):
        self.method = method
        self.path = path
        self.query = query
        self.status = status
        self.content = content


@pytest.fixture
def start_server():
    """Return a function that starts a seeded local CVAT server. Teardown stops them all."""
    servers = []

    def start(version="2.73.0", **settings):
        server = FakeCvat(version=version, processing_seconds=PROCESSING_SECONDS)
        server.seed_demo()
        for name, value in settings.items():
            setattr(server, name, value)
        server.start()
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.stop()


@pytest.fixture
def exchanges(monkeypatch):
    """Record every call the scripts send through CvatClient.send, with the response's status and body."""
    captured = []
    original_send = cvat_common.CvatClient.send

    def send(self, method, path, params=None, json_body=None):
        response = original_send(self, method, path, params=params, json_body=json_body)
        query = dict(self.org_params)
        query.update(params or {})
        captured.append(Exchange(method, path, query, response.status_code, response.content))
        return response

    monkeypatch.setattr(cvat_common.CvatClient, "send", send)
    return captured


@pytest.fixture
def sdk_exchanges(monkeypatch):
    """Record every call the SDK sends through its REST client, with the response's status and body."""
    captured = []
    original_request = RESTClientObject.request

    def request(self, method, url, query_params=None, *args, **kwargs):
        parts = urlsplit(url)
        query = parse_qs(parts.query, keep_blank_values=True)
        for name, value in query_params or []:
            query.setdefault(name, []).append(str(value))
        try:
            response = original_request(self, method, url, query_params, *args, **kwargs)
        except ApiException as error:
            captured.append(Exchange(method, parts.path, query, error.status, error.body or b""))
            raise
        captured.append(Exchange(method, parts.path, query, response.status, response.data))
        return response

    monkeypatch.setattr(RESTClientObject, "request", request)
    return captured


@pytest.fixture
def use_server(monkeypatch):
    """Return a function that points the scripts' environment at a server with one token."""

    def use(server, variable="CVAT_ACCESS_TOKEN", token=ACCESS_TOKEN, org=None):
        for name in ("CVAT_ACCESS_TOKEN", "CVAT_TOKEN", "CVAT_ORG", "CVAT_DEBUG"):
            monkeypatch.delenv(name, raising=False)
        monkeypatch.setenv("CVAT_URL", server.url)
        monkeypatch.setenv(variable, token)
        monkeypatch.setenv("CVAT_RETRY_BACKOFF", "0")
        if org is not None:
            monkeypatch.setenv("CVAT_ORG", org)

    return use


def run_script(module, argv):
    """Run a script's main(argv) the way its __main__ block does and return the exit code."""
    return cvat_common.run(module.main, argv)


def check_exchanges(captured):
    """Check every call a script made and return the number checked."""
    assert captured, "the script sent no request"
    for exchange in captured:
        check_exchange(exchange.method, exchange.path, exchange.query, exchange.status, exchange.content)
    return len(captured)


def check_sdk_exchanges(captured):
    """Check every call the SDK made: each one succeeded and fits the SDK's own models strictly."""
    failed = ["%s %s -> %d" % (e.method, e.path, e.status) for e in captured if e.status >= 400]
    assert not failed, "the local server rejected calls of the SDK: %s" % failed
    return check_exchanges(captured)


def make_sdk_client(server, token=ACCESS_TOKEN):
    """Return an SDK client logged in with a personal access token (Authorization: Bearer)."""
    client = Client(server.url, config=Config(status_check_period=0.05))
    client.login(AccessTokenCredentials(token))
    return client


def create_argv(name, *extra):
    return ["--prefix", PREFIX, "--name", name, "--subset", "validation", "--image-quality", "70",
            "--timeout", "60"] + list(extra)


def direct_get(server, path, token=ACCESS_TOKEN, scheme="Bearer", params=None):
    """GET a path of the local server with requests and return the response."""
    headers = {"Accept": "application/json", "Authorization": "%s %s" % (scheme, token)}
    return requests.get(server.url + path, params=params, headers=headers, timeout=10)


def check_response(response):
    """Check a requests response against the SDK like a script's exchange."""
    parts = urlsplit(response.url)
    query = parse_qs(parts.query, keep_blank_values=True)
    return check_exchange(response.request.method, parts.path, query, response.status_code, response.content)


# ---------------------------------------------------------------------------------------------
# The checker itself must reject what the SDK models reject


TASK_BODY = {
    "name": "site-a-val",
    "project_id": 4,
    "subset": "validation",
    "segment_size": 1000,
    "source_storage": {"location": "cloud_storage", "cloud_storage_id": 4},
    "target_storage": {"location": "cloud_storage", "cloud_storage_id": 3},
}
DATA_BODY = {
    "cloud_storage_id": 4,
    "server_files": ["site-a/images/0001.jpg"],
    "image_quality": 70,
    "use_zip_chunks": True,
    "use_cache": True,
    "sorting_method": "natural",
}


def test_checker_accepts_valid_bodies():
    assert check_request_body(TASK_BODY, models.TaskWriteRequest, "task").name == "site-a-val"
    assert check_request_body(DATA_BODY, models.DataRequest, "data").image_quality == 70
    assert check_request_body({"subset": ""}, models.PatchedTaskWriteRequest, "patch").subset == ""


@pytest.mark.parametrize(
    "model, body, message",
    [
        (models.TaskWriteRequest, dict(TASK_BODY, frames=3), "does not declare: frames"),
        (models.DataRequest, dict(DATA_BODY, server_file=["a.jpg"]), "does not declare: server_file"),
        (
            models.TaskWriteRequest,
            dict(TASK_BODY, source_storage={"location": "cloud_storage", "storage_id": 4}),
            "does not declare: source_storage.storage_id",
        ),
        (models.PatchedTaskWriteRequest, {"subset": "train", "subsets": "train"}, "does not declare: subsets"),
    ],
    ids=["task-top-level", "data-renamed", "task-nested", "patch"],
)
def test_checker_rejects_unknown_key(model, body, message):
    with pytest.raises(ContractError, match=re.escape(message)):
        check_model(body, model, "body")


@pytest.mark.parametrize(
    "model, body",
    [
        (models.TaskWriteRequest, dict(TASK_BODY, segment_size="1000")),
        (models.TaskWriteRequest, dict(TASK_BODY, project_id=True)),
        (models.TaskWriteRequest, dict(TASK_BODY, source_storage={"location": "s3", "cloud_storage_id": 4})),
        (models.TaskWriteRequest, dict(TASK_BODY, name="")),
        (models.DataRequest, dict(DATA_BODY, server_files="site-a/images/0001.jpg")),
        (models.DataRequest, dict(DATA_BODY, cloud_storage_id="4")),
        (models.DataRequest, dict(DATA_BODY, use_cache="true")),
        (models.DataRequest, dict(DATA_BODY, sorting_method="nat")),
        (models.DataRequest, dict(DATA_BODY, image_quality=101)),
        (models.PatchedTaskWriteRequest, {"subset": None}),
        (models.PatchedTaskWriteRequest, {"subset": "x" * 65}),
    ],
    ids=[
        "segment-size-text", "project-id-bool", "storage-location", "empty-name", "files-not-list",
        "storage-id-text", "cache-text", "sorting-method", "quality-above-100", "subset-null",
        "subset-too-long",
    ],
)
def test_checker_rejects_wrong_value(model, body):
    with pytest.raises(ContractError, match="does not fit"):
        check_model(body, model, "body")


def test_checker_rejects_bad_response():
    about = {"name": "CVAT", "description": "", "version": "2.73.0", "logo_url": "", "subtitle": ""}
    assert check_model(about, models.About, "about").version == "2.73.0"
    with pytest.raises(ContractError, match="does not fit"):
        check_model(dict(about, version=2.73), models.About, "about")
    with pytest.raises(ContractError, match="does not fit"):
        check_model({key: about[key] for key in about if key != "version"}, models.About, "about")
    with pytest.raises(ContractError, match="does not declare: build"):
        check_model(dict(about, build="abc"), models.About, "about")


def test_checker_rejects_unmapped_call():
    with pytest.raises(ContractError, match="no SDK endpoint is mapped"):
        check_exchange("GET", "/api/tasks/4/frames", {}, 200, b"{}")
    with pytest.raises(ContractError, match="query parameters the SDK does not declare"):
        check_exchange("GET", "/api/tasks", {"page_sise": ["10"]}, 200, b"{}")


# ---------------------------------------------------------------------------------------------
# Request bodies and responses of the real scripts


# Request id of a task's creation per server generation. CVAT before 2.16 has none.
REQUEST_IDS = {
    "2.15.0": None,
    "2.30.0": "create:task-{id}",
    "2.73.0": "action=create&target=task&target_id={id}",
}


@pytest.mark.parametrize("version, variable, token, scheme", GENERATIONS)
def test_create_script_contract(start_server, use_server, exchanges, capsys, version, variable, token, scheme):
    server = start_server(version)
    use_server(server, variable, token)

    exit_code = run_script(create_cvat_task_validation, create_argv("site-val"))

    # The request bodies are checked first, so that a body the server rejects fails on its field.
    output = capsys.readouterr()
    created = recorded(server, "POST", r"/api/tasks/?")
    assert len(created) == 1, output.err
    task_body = check_request_body(recorded_json(created[0]), models.TaskWriteRequest, "POST /api/tasks")
    assert task_body.name == "site-val"
    assert task_body.project_id == 4
    assert task_body.source_storage.cloud_storage_id == 4
    assert task_body.target_storage.cloud_storage_id == 3

    data_calls = recorded(server, "POST", r"/api/tasks/\d+/data/?")
    assert len(data_calls) == 1, output.err
    task_id = int(data_calls[0].path.split("/")[3])
    data_body = check_request_body(recorded_json(data_calls[0]), models.DataRequest, "POST data")
    assert data_body.cloud_storage_id == 4
    assert data_body.image_quality == 70
    assert len(data_body.server_files) == SEEDED_IMAGE_COUNT
    assert data_body.server_files[0] == PREFIX + "frame_000001.jpg"
    assert data_body.server_files[-1] == PREFIX + "frame_002388.jpg"
    assert exit_code == 0, output.err

    for record in server.requests:
        assert record.header("Authorization") == "%s %s" % (scheme, token), record.path

    data_response = [e for e in exchanges if e.method == "POST" and e.path.endswith("/data")][0]
    assert data_response.status == 202
    checked = exchanges
    if version == "2.15.0":
        # CVAT before 2.16 responds to the data call with {} and no request id. The SDK 2.80
        # model requires rq_id, so this one response is checked here rather than by the model.
        assert json.loads(data_response.content) == {}
        with pytest.raises(ContractError, match="DataResponse"):
            check_model({}, models.DataResponse, "data response without rq_id")
        checked = [e for e in exchanges if e is not data_response]
    assert check_exchanges(checked) > 5

    polled = sorted({e.path for e in exchanges if e.path.startswith("/api/requests/")})
    legacy_polls = [e for e in exchanges if e.path == "/api/tasks/%d/status" % task_id]
    if REQUEST_IDS[version] is None:
        assert polled == []
        assert legacy_polls, "the legacy status endpoint was not polled"
    else:
        rq_id = REQUEST_IDS[version].format(id=task_id)
        assert json.loads(data_response.content) == {"rq_id": rq_id}
        assert polled == ["/api/requests/" + quote(rq_id, safe="")]
        assert legacy_polls == []

    finished = check_response(direct_get(server, "/api/tasks/%d" % task_id, token=token, scheme=scheme))
    assert finished.size == SEEDED_IMAGE_COUNT
    assert finished.subset == "validation"
    assert finished.organization == 1
    assert finished.jobs.count == 3
    assert "Task #%d created" % task_id in output.out


@pytest.mark.parametrize("version", ["2.15.0", "2.30.0", "2.73.0"])
def test_create_script_failed_job_contract(start_server, use_server, exchanges, capsys, version):
    server = start_server(version)
    server.broken_keys.add(PREFIX + "frame_000005.jpg")
    use_server(server, "CVAT_TOKEN", API_KEY)

    assert run_script(create_cvat_task_validation, create_argv("site-val")) == 1

    error = capsys.readouterr().err
    assert "Failed to read the image file" in error
    assert "was deleted" in error
    deletes = [e for e in exchanges if e.method == "DELETE"]
    assert [e.status for e in deletes] == [204]
    data_response = [e for e in exchanges if e.method == "POST" and e.path.endswith("/data")][0]
    # The data response of CVAT before 2.16 has no rq_id, which test_create_script_contract checks.
    check_exchanges([e for e in exchanges if e is not data_response or version != "2.15.0"])


def test_update_script_contract(start_server, use_server, exchanges, capsys):
    server = start_server()
    use_server(server)

    assert run_script(update_task_subset, ["validation", "19", "17"]) == 0
    assert run_script(update_task_subset, ["none", "14"]) == 0
    # Task 99 does not exist: the 404 body must fit the SDK's error model too.
    assert run_script(update_task_subset, ["test", "99"]) == 1

    output = capsys.readouterr()
    assert "task 99 not found" in output.err
    check_exchanges(exchanges)

    patches = recorded(server, "PATCH", r"/api/tasks/\d+/?")
    bodies = {}
    for record in patches:
        body = recorded_json(record)
        assert list(body) == ["subset"], "a subset PATCH must carry only the subset field"
        check_request_body(body, models.PatchedTaskWriteRequest, "PATCH %s" % record.path)
        bodies[record.path.rstrip("/")] = body
    assert bodies == {
        "/api/tasks/19": {"subset": "validation"},
        "/api/tasks/17": {"subset": "validation"},
        "/api/tasks/14": {"subset": ""},
        "/api/tasks/99": {"subset": "test"},
    }
    assert [e.status for e in exchanges if e.method == "PATCH" and e.path == "/api/tasks/99"] == [404]


def test_update_script_read_only_token(start_server, use_server, exchanges, capsys):
    server = start_server()
    use_server(server, token=READ_ONLY_TOKEN)

    assert run_script(update_task_subset, ["test", "19"]) == 1

    assert "read-only" in capsys.readouterr().err
    assert [e.status for e in exchanges if e.method == "PATCH"] == [403]
    check_exchanges(exchanges)


def test_show_script_contract(start_server, use_server, exchanges, capsys):
    # A page size cap of 2 makes the script step through two pages of the three seeded tasks.
    server = start_server(task_page_size_cap=2)
    use_server(server, org="polycube")

    assert run_script(show_project_subsets, ["4", "--json"]) == 0

    report = json.loads(capsys.readouterr().out)
    assert report["total_tasks"] == 3
    assert report["total_frames"] == 3930 + 4836 + 1495
    check_exchanges(exchanges)
    paths = [e.path for e in exchanges]
    assert "/api/organizations/1" in paths
    assert paths.count("/api/tasks") == 2


# ---------------------------------------------------------------------------------------------
# Every response of the local server on the scripts' paths, for each server generation


@pytest.mark.parametrize("version, variable, token, scheme", GENERATIONS)
def test_server_responses_fit_sdk(start_server, version, variable, token, scheme):
    server = start_server(version)

    def get(path, **params):
        return check_response(direct_get(server, path, token=token, scheme=scheme, params=params))

    about = get("/api/server/about")
    assert about.version == version
    assert get("/api/users/self").username == "alice"
    assert get("/api/organizations/1").slug == "polycube"
    assert get("/api/organizations", slug="polycube").count == 1
    project = get("/api/projects/4")
    assert project.organization == 1
    if cvat_common.parse_version(version) >= (2, 60, 0):
        assert project.organization_id == 1
    assert project.tasks.count == 3
    assert get("/api/cloudstorages/4").resource == "datasets"
    listing = get("/api/cloudstorages/4/content-v2", prefix=PREFIX, page_size=500, org_id=1)
    assert len(listing.content) == 500
    assert listing.next
    tasks = get("/api/tasks", project_id=4, page=1, page_size=2, org_id=1)
    assert tasks.count == 3
    assert len(tasks.results) == 2
    assert get("/api/tasks/14").size == 1495
    assert get("/api/jobs", task_id=14).count == 2

    # Error bodies: 401 for an unknown token, 404 for a missing task or a page past the end.
    unknown_token = direct_get(server, "/api/tasks/14", token="no-such-token", scheme=scheme)
    assert unknown_token.status_code == 401
    check_response(unknown_token)
    missing = direct_get(server, "/api/tasks/99", token=token, scheme=scheme)
    assert missing.status_code == 404
    check_response(missing)
    past_end = direct_get(server, "/api/tasks", token=token, scheme=scheme, params={"page": 9})
    assert past_end.status_code == 404
    check_response(past_end)


# ---------------------------------------------------------------------------------------------
# The SDK drives the same jobs and gets the same results


def add_mixed_tasks(server):
    """Add tasks in project 4 with a capitalised and an empty subset and one task without data.

    With the three seeded tasks that makes 15 tasks, more than the SDK's default page of 10.
    """
    server.add_task(30, "site-b-train", project_id=4, subset="Train", size=120)
    server.add_task(31, "site-b-val", project_id=4, subset="validation", size=80)
    server.add_task(32, "site-b-unsplit", project_id=4, subset="", size=40)
    server.add_task(33, "site-b-pending", project_id=4, subset="validation", size=None)
    for index in range(34, 42):
        server.add_task(index, "site-c-%d" % index, project_id=4, subset="test", size=index)


def comparable_task_state(task):
    """Return a task's JSON without the fields that differ by identity or time."""
    varying = {"id", "url", "name", "created_date", "updated_date", "data", "jobs", "labels"}
    state = {key: value for key, value in task.items() if key not in varying}
    for name in ("source_storage", "target_storage"):
        if state.get(name):
            # Every task gets a new storage row id, but location and storage id must match.
            state[name] = {key: value for key, value in state[name].items() if key != "id"}
    return state


def test_sdk_split_matches_script(start_server, use_server, sdk_exchanges, capsys):
    server = start_server(task_page_size_cap=4)
    add_mixed_tasks(server)
    use_server(server)

    assert run_script(show_project_subsets, ["4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)

    server.clear_requests()
    with make_sdk_client(server) as client:
        project = client.projects.retrieve(4)
        project_tasks = project.get_tasks()
        listed_tasks = client.tasks.list(project_id=4, org_id=project.organization_id)

    assert sorted(task.id for task in project_tasks) == sorted(task.id for task in listed_tasks)
    assert report["total_tasks"] == len(project_tasks) == 15
    sdk_groups = {}
    for task in project_tasks:
        group = sdk_groups.setdefault(task.subset or None, {"tasks": 0, "frames": 0})
        group["tasks"] += 1
        # A task without data has no "size" key, so the SDK model has no size attribute.
        group["frames"] += getattr(task, "size", 0)
    script_groups = {
        group["subset"]: {"tasks": group["tasks"], "frames": group["frames"]} for group in report["subsets"]
    }
    assert script_groups == sdk_groups
    assert report["total_frames"] == sum(group["frames"] for group in sdk_groups.values())

    # 15 tasks in pages of 4 are 4 pages, read once by get_tasks() and once by list().
    sdk_pages = recorded(server, "GET", r"/api/tasks/?")
    assert len(sdk_pages) == 8
    for record in sdk_pages:
        assert record.query.get("org_id") == ["1"]
    check_sdk_exchanges(sdk_exchanges)


def test_sdk_create_matches_script(start_server, use_server, sdk_exchanges, capsys):
    server = start_server()
    use_server(server)

    assert run_script(create_cvat_task_validation, create_argv("script-val")) == 0
    capsys.readouterr()
    script_task_body = recorded_json(recorded(server, "POST", r"/api/tasks/?")[0])
    script_data_body = recorded_json(recorded(server, "POST", r"/api/tasks/\d+/data/?")[0])

    server.clear_requests()
    with make_sdk_client(server) as client:
        # The SDK documents the organization slug on the client, while the scripts send org_id.
        client.organization_slug = "polycube"
        listing, _ = client.api_client.cloudstorages_api.retrieve_content_v2(4, prefix=PREFIX)
        assert listing.next, "the listing of 2,388 images fits in one page"
        spec = dict(script_task_body, name="sdk-val")
        task = client.tasks.create_from_data(
            spec=spec,
            resources=script_data_body["server_files"],
            resource_type=ResourceType.SHARE,
            data_params={
                key: value for key, value in script_data_body.items() if key != "server_files"
            },
        )
        sdk_task_id = task.id
        assert task.size == SEEDED_IMAGE_COUNT
        assert task.jobs.count == 3

    check_sdk_exchanges(sdk_exchanges)
    sdk_task_body = recorded_json(recorded(server, "POST", r"/api/tasks/?")[0])
    sdk_data_body = recorded_json(recorded(server, "POST", r"/api/tasks/\d+/data/?")[0])
    assert sdk_task_body == dict(script_task_body, name="sdk-val")
    assert sdk_data_body == script_data_body

    script_tasks = direct_get(server, "/api/tasks", params={"name": "script-val", "org_id": 1}).json()
    assert script_tasks["count"] == 1
    script_task_id = script_tasks["results"][0]["id"]
    script_state = direct_get(server, "/api/tasks/%d" % script_task_id).json()
    sdk_state = direct_get(server, "/api/tasks/%d" % sdk_task_id).json()
    assert comparable_task_state(script_state) == comparable_task_state(sdk_state)
    assert script_state["jobs"]["count"] == sdk_state["jobs"]["count"] == 3


def test_server_routes_sdk_data_path(start_server):
    server = start_server()
    with make_sdk_client(server) as client:
        client.organization_slug = "polycube"
        assert client.api_client.tasks_api.create_data_endpoint.settings["endpoint_path"].endswith("/data/")
        task = client.tasks.create({"name": "sdk-slash", "project_id": 4})
        task.upload_data(
            [PREFIX + "frame_000001.jpg"],
            resource_type=ResourceType.SHARE,
            params={"cloud_storage_id": 4, "image_quality": 70},
        )
        assert task.size == 1


def test_sdk_subset_update_matches_script(start_server, use_server, sdk_exchanges, capsys):
    server = start_server()
    use_server(server)

    assert run_script(update_task_subset, ["test", "19"]) == 0
    script_body = recorded_json(recorded(server, "PATCH", r"/api/tasks/19/?")[0])

    with make_sdk_client(server) as client:
        task = client.tasks.retrieve(17)
        task.update({"subset": "test"})
        assert task.subset == "test"
    sdk_body = recorded_json(recorded(server, "PATCH", r"/api/tasks/17/?")[0])

    assert sdk_body == script_body == {"subset": "test"}
    check_sdk_exchanges(sdk_exchanges)
    assert direct_get(server, "/api/tasks/19").json()["subset"] == "test"


# ---------------------------------------------------------------------------------------------
# Shapes recorded from real servers


def test_task_without_data_shape(start_server, use_server, capsys):
    server = start_server()
    server.add_task(40, "site-d-pending", project_id=4, subset="train", size=None)
    use_server(server)

    raw = direct_get(server, "/api/tasks/40").json()
    assert "size" not in raw
    assert raw["segment_size"] == 0
    assert raw["data"] is None
    assert raw["media_type"] == ""
    check_model(raw, models.TaskRead, "task without data")

    with make_sdk_client(server) as client:
        sdk_task = client.tasks.retrieve(40)
        assert getattr(sdk_task, "size", None) is None
        assert sdk_task.segment_size == 0

    assert run_script(show_project_subsets, ["4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    train = [group for group in report["subsets"] if group["subset"] == "train"][0]
    pending = [task for task in train["details"] if task["id"] == 40][0]
    assert pending["frames"] == 0
    assert pending["has_data"] is False
    assert train["tasks_without_data"] == 1
    assert train["frames"] == 3930 + 4836 + 1495


def test_capitalised_subset_kept_apart(start_server, use_server, capsys):
    server = start_server()
    # The CVAT web UI writes subsets capitalised.
    server.add_task(41, "site-e-train", project_id=4, subset="Train", size=10)
    use_server(server)

    project = check_response(direct_get(server, "/api/projects/4"))
    assert sorted(project.task_subsets) == ["Train", "train"]

    assert run_script(show_project_subsets, ["4", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    groups = {group["subset"]: group for group in report["subsets"]}
    assert groups["train"]["tasks"] == 3
    assert groups["Train"]["tasks"] == 1
    assert groups["Train"]["frames"] == 10
    assert len(report["notes"]) == 1
    assert "differ only in case" in report["notes"][0]
    assert "'train'" in report["notes"][0]
    assert "'Train'" in report["notes"][0]


def test_organization_id_and_null_storages(start_server):
    server = start_server()
    server.add_project(6, "Sandbox project")
    server.add_task(42, "sandbox-task", project_id=6, subset="", size=5)

    task = direct_get(server, "/api/tasks/19").json()
    assert isinstance(task["organization"], int)
    assert task["organization_id"] == task["organization"]
    check_model(task, models.TaskRead, "task in an organization")

    sandbox_task = direct_get(server, "/api/tasks/42").json()
    assert sandbox_task["organization"] is None
    assert sandbox_task["source_storage"] is None
    assert sandbox_task["target_storage"] is None
    check_model(sandbox_task, models.TaskRead, "task with null storages")
    sandbox_project = direct_get(server, "/api/projects/6").json()
    assert sandbox_project["target_storage"] is None
    check_model(sandbox_project, models.ProjectRead, "project with null storages")


# ---------------------------------------------------------------------------------------------
# Token kinds across server generations


def test_bearer_rejected_before_2_48(start_server, use_server, exchanges, capsys):
    server = start_server("2.30.0")

    use_server(server, "CVAT_ACCESS_TOKEN", ACCESS_TOKEN)
    assert run_script(show_project_subsets, ["4"]) == 1
    error = capsys.readouterr().err
    assert "HTTP 401" in error
    assert "CVAT_ACCESS_TOKEN" in error
    assert ACCESS_TOKEN not in error

    use_server(server, "CVAT_TOKEN", API_KEY)
    assert run_script(show_project_subsets, ["4"]) == 0
    check_exchanges(exchanges)


def test_sdk_api_key_on_older_server(start_server, sdk_exchanges):
    server = start_server("2.30.0")
    client = Client(server.url, config=Config(status_check_period=0.05))
    # The SDK sends a legacy API key through its "tokenAuth" scheme with the "Token" prefix.
    client.api_client.configuration.api_key["tokenAuth"] = API_KEY
    client.api_client.configuration.api_key_prefix["tokenAuth"] = "Token"
    with client:
        project = client.projects.retrieve(4)
        assert len(project.get_tasks()) == 3
    for record in recorded(server, "GET", r"/api/(projects|tasks)/?.*"):
        assert record.header("Authorization") == "Token " + API_KEY
    check_sdk_exchanges(sdk_exchanges)
