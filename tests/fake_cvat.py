#!/usr/bin/env python3
"""Local CVAT 2.x test server for the cvat-scripts tests, demo and benchmark.

The server plays the REST endpoints that the scripts use (server about, users, organizations,
projects, tasks, task data, requests, jobs, cloud storages and their content-v2 listing) from
in-memory state. Settings play older server versions, slow or throttled responses and lost
responses. Only the standard library is used.

    srv = FakeCvat()
    srv.seed_scenario("bucket-prefix")
    with srv:
        requests.get(srv.url + "/api/server/about")

Standalone: ``python3 tests/fake_cvat.py --seed demo`` prints ``FAKE_CVAT_URL=...`` and serves
until SIGINT or SIGTERM. Response shapes follow CVAT 2.73.0 and the generated models of
cvat-sdk 2.80.0.
"""

import argparse
import base64
import binascii
import bisect
import json
import math
import random
import re
import signal
import socketserver
import sys
import threading
import time
import traceback
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, parse_qsl, unquote, urlencode, urlsplit

# Server settings and limits.
DEFAULT_VERSION = "2.73.0"
JSON_CONTENT_TYPE = "application/vnd.cvat+json"
DEFAULT_PAGE_SIZE = 10
CONTENT_PAGE_SIZE = 500
MAX_JOBS_PER_TASK = 5000
# A new data job stays queued for this share of processing_seconds, then runs.
QUEUED_SHARE = 0.1
# CVAT 2.73.0 drops a finished task-creation request about 500 s after it ends.
FINISHED_REQUEST_TTL = 500.0
FAILED_REQUEST_RETENTION = timedelta(days=365)
OLD_FAILED_REQUEST_RETENTION = timedelta(days=30)
NAME_MAX_LENGTH = 256
SUBSET_MAX_LENGTH = 64
BUG_TRACKER_MAX_LENGTH = 2000
KEY_MAX_LENGTH = 1024
INT32_MAX = 2147483647
DEFAULT_CHUNK_SIZE = 72

# First server version with each behaviour, as (major, minor, patch).
REQUESTS_API_SINCE = (2, 16, 0)
RQ_ID_IN_CONFLICT_SINCE = (2, 37, 0)
ACTION_RQ_ID_SINCE = (2, 38, 0)
BEARER_TOKENS_SINCE = (2, 48, 0)
IMAGE_QUALITY_OPTIONAL_SINCE = (2, 65, 0)
# NOTE: guessed release. 2.73.0 sends organization_id and older servers send only organization,
# but the exact release in between is not known here.
ORGANIZATION_ID_FIELD_SINCE = (2, 60, 0)

ORG_ROLES = ("owner", "maintainer", "supervisor", "worker")
# Roles that see every task and project of their organization.
ORG_VIEW_ALL_ROLES = ("owner", "maintainer", "supervisor")
# Roles that may change any task of their organization.
ORG_CHANGE_ROLES = ("owner", "maintainer")
WRITE_METHODS = ("POST", "PATCH", "PUT", "DELETE")

IMAGE_EXTENSIONS = frozenset([
    "bmp", "gif", "jfif", "jpe", "jpeg", "jpg", "jp2", "pbm", "pgm", "png", "ppm", "tif",
    "tiff", "webp",
])
VIDEO_EXTENSIONS = frozenset(["avi", "m4v", "mkv", "mov", "mp4", "mpeg", "mpg", "webm", "wmv"])
AUDIO_EXTENSIONS = frozenset(["aac", "flac", "m4a", "mp3", "ogg", "wav"])
ARCHIVE_EXTENSIONS = frozenset(["7z", "bz2", "gz", "rar", "tar", "tgz", "xz", "zip"])
SORTING_METHODS = ("lexicographical", "natural", "predefined", "random")
STORAGE_METHODS = ("cache", "file_system")
STORAGE_LOCATIONS = ("cloud_storage", "local")

# Request body fields that CVAT 2.73.0 accepts (TaskWriteRequest, PatchedTaskWriteRequest,
# DataRequest). The test server rejects any other field so that a typo cannot pass unseen.
TASK_CREATE_FIELDS = frozenset([
    "name", "project_id", "owner_id", "assignee_id", "bug_tracker", "overlap", "segment_size",
    "labels", "subset", "target_storage", "source_storage", "initial_replicas",
    "consensus_replicas",
])
TASK_PATCH_FIELDS = frozenset([
    "name", "project_id", "owner_id", "assignee_id", "bug_tracker", "labels", "subset",
    "target_storage", "source_storage", "organization_id",
])
DATA_FIELDS = frozenset([
    "chunk_size", "image_quality", "start_frame", "stop_frame", "frame_filter", "client_files",
    "server_files", "remote_files", "use_zip_chunks", "server_files_exclude",
    "cloud_storage_id", "use_cache", "copy_data", "storage_method", "sorting_method",
    "filename_pattern", "job_file_mapping", "upload_file_order", "validation_params",
])
TASK_EQUALITY_FILTERS = (
    "project_id", "subset", "name", "owner", "assignee", "status", "mode", "dimension",
    "media_type", "project_name", "tracker_link", "validation_mode",
)
TASK_SEARCH_FIELDS = (
    "name", "project_name", "owner", "assignee", "status", "subset", "mode", "dimension",
)
PROJECT_EQUALITY_FILTERS = ("name", "owner", "assignee", "status")

# Response texts as CVAT 2.73.0 and Django REST framework send them.
SERVER_NAME = "Computer Vision Annotation Tool"
SERVER_DESCRIPTION = (
    "CVAT is completely re-designed and re-implemented version of Video Annotation Tool from "
    "Irvine, California, free, online, interactive video and image annotation tool for "
    "computer vision."
)
SERVER_SUBTITLE = "Open Data Annotation Platform"
NOT_FOUND = {"detail": "Not found."}
INVALID_PAGE = {"detail": "Invalid page."}
NO_CREDENTIALS = {"detail": "Authentication credentials were not provided."}
INVALID_TOKEN = "Invalid token."
INVALID_BASIC = "Invalid username/password."
PERMISSION_DENIED = "You do not have permission to perform this action."
ORGANIZATION_NOT_FOUND = {"detail": "Organization not found."}
SAME_ORGANIZATION = "The task and its project should be in the same organization."
MORE_DATA = "Adding more data is not supported"
DATA_IN_PROGRESS = "The data of this task is already being processed."
CONTENT_INTERNAL_ERROR = "An internal error has occurred"
BAD_CONTENT_PAGE_SIZE = "Wrong value for page_size was found"
BAD_NEXT_TOKEN = "Wrong value for next_token was found"
HTML_NOT_FOUND = (
    "<!doctype html>\n<html lang=\"en\">\n<head>\n  <title>Not Found</title>\n</head>\n"
    "<body>\n  <h1>Not Found</h1><p>The requested resource was not found on this server.</p>\n"
    "</body>\n</html>\n"
)
HTML_SERVER_ERROR = "<h1>Server Error (500)</h1>"
HTML_GATEWAY_TIMEOUT = (
    "<html>\r\n<head><title>504 Gateway Time-out</title></head>\r\n<body>\r\n"
    "<center><h1>504 Gateway Time-out</h1></center>\r\n</body>\r\n</html>\r\n"
)
SHARE_ROOT = "/home/django/share/"

# Dates of seeded objects are fixed, so that their responses are the same on every run.
SEED_DATE = datetime(2026, 2, 10, 9, 0, 0, tzinfo=timezone.utc)
_FROM_PROJECT = object()


def parse_version(text):
    """Return the leading numbers of a version string as a 3-tuple, e.g. (2, 73, 0)."""
    numbers = [int(part) for part in re.findall(r"\d+", str(text))[:3]]
    return tuple(numbers + [0] * (3 - len(numbers)))


def format_date(value):
    """Format a datetime as Django REST framework does: ISO 8601, microseconds, "Z"."""
    text = value.astimezone(timezone.utc).isoformat(timespec="microseconds")
    return text.replace("+00:00", "Z")


def now_text():
    return format_date(datetime.now(timezone.utc))


def seed_date_text(offset_minutes):
    return format_date(SEED_DATE + timedelta(minutes=offset_minutes))


def file_extension(key):
    name = key.rsplit("/", 1)[-1]
    return name.rsplit(".", 1)[-1].lower() if "." in name else ""


def mime_type_of(key):
    """Return the content-v2 mime_type of an object key: image, video, ..., or unknown."""
    extension = file_extension(key)
    if extension in IMAGE_EXTENSIONS:
        return "image"
    if extension in VIDEO_EXTENSIONS:
        return "video"
    if extension in AUDIO_EXTENSIONS:
        return "audio"
    if extension in ARCHIVE_EXTENSIONS:
        return "archive"
    if extension == "pdf":
        return "pdf"
    return "unknown"


def natural_sort_key(key):
    """Build a sort key that compares digit runs as numbers.

    The raw key breaks ties such as "2" against "02".
    """
    parts = re.split(r"(\d+)", key)
    return ([int(part) if part.isdigit() else part for part in parts], key)


def is_canonical_relative_path(path):
    """Return whether a server_files entry is relative and canonical ("dir/" is allowed)."""
    if not path or path.startswith("/") or "//" in path or "\\" in path:
        return False
    segments = path[:-1].split("/") if path.endswith("/") else path.split("/")
    return all(segment not in ("", ".", "..") for segment in segments)


def throttled_body(seconds):
    unit = "second" if seconds == 1 else "seconds"
    return {"detail": "Request was throttled. Expected available in {} {}.".format(seconds, unit)}


class HeaderDict(dict):
    """Request headers with their original case as keys and case-insensitive lookup."""

    def __init__(self, items=()):
        super().__init__()
        self._names = {}
        for name, value in items:
            self[name] = value

    def __setitem__(self, name, value):
        previous = self._names.get(name.lower())
        if previous is not None and previous != name:
            super().__delitem__(previous)
        self._names[name.lower()] = name
        super().__setitem__(name, value)

    def __getitem__(self, name):
        return super().__getitem__(self._names.get(str(name).lower(), name))

    def __contains__(self, name):
        return isinstance(name, str) and name.lower() in self._names

    def get(self, name, default=None):
        stored = self._names.get(str(name).lower())
        return default if stored is None else super().__getitem__(stored)


class RecordedRequest:
    """One request as the server received it.

    Attributes are also readable as items (``record["path"]``). ``status`` is the status sent,
    or None while the request is in progress or when the connection was dropped.
    """

    def __init__(self, method, path, query, headers, body, raw_body, received_at):
        self.method = method
        self.path = path
        self.query = query
        self.headers = headers
        self.body = body
        self.raw_body = raw_body
        self.time = received_at
        self.status = None
        self.query_pairs = []
        self.body_error = None

    def __getitem__(self, name):
        return getattr(self, name)

    def get(self, name, default=None):
        return getattr(self, name, default)

    def header(self, name, default=None):
        return self.headers.get(name, default)

    def __repr__(self):
        return "RecordedRequest({} {} -> {})".format(self.method, self.path, self.status)


class Fault:
    """A planned misbehaviour for requests that match a method and a path pattern."""

    def __init__(self, method, path_regex, status, body, headers, times, when, drop, delay,
                 query):
        if when not in ("before", "after"):
            raise ValueError("when must be 'before' or 'after', not {!r}".format(when))
        self.method = method.upper() if method else None
        self.path_regex = path_regex
        self.pattern = re.compile(path_regex)
        self.status = status
        self.body = body
        self.headers = dict(headers or {})
        self.times = times
        self.when = when
        self.drop = drop
        self.delay = delay
        self.query = {name: (None if value is None else re.compile(value))
                      for name, value in (query or {}).items()}
        self.used = 0

    @property
    def active(self):
        return self.times is None or self.used < self.times

    @property
    def replaces_reply(self):
        """Whether the fault sends its own response, or none, in place of the real one."""
        return self.drop or self.status is not None

    def matches(self, record):
        if self.method not in (None, "*", record.method):
            return False
        if not path_matches(self.pattern, record.path):
            return False
        for name, pattern in self.query.items():
            values = record.query.get(name)
            if not values:
                return False
            if pattern is not None and not pattern.fullmatch(values[0]):
                return False
        return True

    def reply(self):
        if isinstance(self.body, bytes):
            reply = Reply(self.status, self.body, "application/octet-stream")
        elif isinstance(self.body, str):
            reply = Reply.text(self.status, self.body)
        elif self.body is None:
            reply = Reply(self.status, b"", None)
        else:
            reply = Reply.json(self.status, self.body)
        reply.add_headers(self.headers)
        return reply


def path_matches(pattern, raw_path):
    """Match a pattern against the path as sent or, failing that, percent-decoded."""
    return bool(pattern.fullmatch(raw_path) or pattern.fullmatch(unquote(raw_path)))


class Reply:
    """A response to send: status, encoded body and headers."""

    def __init__(self, status, payload=b"", content_type=None, headers=None):
        self.status = status
        self.payload = payload
        self.headers = {}
        if content_type:
            self.headers["Content-Type"] = content_type
        self.add_headers(headers or {})

    def add_headers(self, headers):
        for name, value in headers.items():
            existing = [key for key in self.headers if key.lower() == name.lower()]
            for key in existing:
                del self.headers[key]
            self.headers[name] = str(value)
        return self

    @classmethod
    def json(cls, status, body, headers=None):
        payload = json.dumps(body).encode("utf-8")
        return cls(status, payload, JSON_CONTENT_TYPE, headers)

    @classmethod
    def text(cls, status, text, content_type="text/plain; charset=utf-8"):
        return cls(status, text.encode("utf-8"), content_type)

    @classmethod
    def empty(cls, status):
        return cls(status, b"", None)


class ApiError(Exception):
    """Stops request handling and sends the given reply."""

    def __init__(self, reply):
        super().__init__(reply.status)
        self.reply = reply


def fail(status, body, headers=None):
    raise ApiError(Reply.json(status, body, headers))


def forbid():
    fail(403, {"detail": PERMISSION_DENIED})


class Call:
    """A request being handled: the recorded request plus the caller and the org context.

    ``has_org_context`` is False when the request names no organization at all. With a
    context, ``org`` is the organization dict, or None for the personal sandbox.
    """

    def __init__(self, record, now, base):
        self.record = record
        self.method = record.method
        self.path = record.path
        self.query = record.query
        self.body = record.body
        self.now = now
        self.base = base
        self.user = None
        self.token = None
        self.has_org_context = False
        self.org = None

    def param(self, name, default=None):
        values = self.query.get(name)
        return values[0] if values else default

    @property
    def org_id(self):
        return self.org["id"] if self.org else None


class FakeCvat:
    """In-memory CVAT server on 127.0.0.1 with named seeds, settings and fault injection.

    State lives in plain dicts keyed by id (users, tokens, organizations, projects, tasks,
    jobs, cloud_storages) so that tests can read and change it directly. Every handled
    request is appended to ``requests``.
    """

    def __init__(self, version=DEFAULT_VERSION, latency=0.0, processing_seconds=0.3,
                 verbose=False, processing_steps=None):
        self.version = version
        self.latency = latency
        self.processing_seconds = processing_seconds
        # With a number N, a data job moves by status reads instead of time: queued at the
        # first read, started until read N, then done, so that a run's output is repeatable.
        self.processing_steps = processing_steps
        self.verbose = verbose
        self.task_page_size_cap = None
        self.content_page_size_cap = CONTENT_PAGE_SIZE
        self.shuffle_listing = False
        self.public_base = None
        self.echo_auth_in_401 = False
        self.next_task_id = 1
        self.max_jobs_per_task = MAX_JOBS_PER_TASK
        self.finished_request_ttl = FINISHED_REQUEST_TTL

        self.users = {}
        self.tokens = {}
        self.organizations = {}
        self.projects = {}
        self.tasks = {}
        self.jobs = {}
        self.cloud_storages = {}
        self.broken_keys = set()
        self.requests = []
        self.faults = []

        self._lock = threading.RLock()
        self._creation_requests = {}
        self._pending_task_ids = set()
        self._next_job_id = 1
        self._next_data_id = 1
        self._next_location_id = 1
        self._listing_calls = 0
        self._server = None
        self._thread = None
        self._scheme = "http"

        self.add_user(1, "alice")
        self.add_token("pat-good", "Bearer", user_id=1, write=True)
        self.add_token("key-good", "Token", user_id=1, write=True)
        self.add_token("pat-readonly", "Bearer", user_id=1, write=False)

    # Lifecycle.

    def start(self, port=0, ssl_context=None):
        """Bind 127.0.0.1 (port 0 picks a free port) and serve in a daemon thread.

        With an ssl.SSLContext for the server side, the server speaks HTTPS and url starts
        with https://. The TLS handshake runs when a connection is accepted.
        """
        if self._server is not None:
            raise RuntimeError("the server is already running at " + self.url)
        server = _Server(("127.0.0.1", port), _Handler)
        server.fake = self
        if ssl_context is not None:
            server.socket = ssl_context.wrap_socket(server.socket, server_side=True)
        self._scheme = "http" if ssl_context is None else "https"
        thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                  name="fake-cvat", daemon=True)
        thread.start()
        self._server = server
        self._thread = thread
        return self

    def stop(self):
        """Shut the server down and join its thread. Calling it twice is harmless."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is None:
            return
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)

    @property
    def url(self):
        if self._server is None:
            raise RuntimeError("the server is not running: call start() first")
        return "{}://127.0.0.1:{}".format(self._scheme, self._server.server_address[1])

    @property
    def port(self):
        return self._server.server_address[1] if self._server else None

    def __enter__(self):
        if self._server is None:
            self.start()
        return self

    def __exit__(self, *exc_info):
        self.stop()

    # State helpers. Each returns the stored dict.

    def add_user(self, id, username, is_admin=False):
        with self._lock:
            user = {"id": id, "username": username, "is_admin": is_admin,
                    "first_name": "", "last_name": "",
                    "email": "{}@example.com".format(username),
                    "date_joined": seed_date_text(-1000 + id)}
            self.users[id] = user
            return user

    def add_token(self, token, scheme="Bearer", user_id=1, write=True):
        if scheme not in ("Bearer", "Token"):
            raise ValueError("scheme must be 'Bearer' or 'Token', not {!r}".format(scheme))
        with self._lock:
            stored = {"token": token, "scheme": scheme, "user_id": user_id, "write": write}
            self.tokens[token] = stored
            return stored

    def add_organization(self, id, slug, name=None, members=None):
        """Add an organization. members maps user id to role and defaults to {1: "owner"}."""
        members = dict({1: "owner"} if members is None else members)
        for role in members.values():
            if role not in ORG_ROLES:
                raise ValueError("role must be one of {}, not {!r}".format(ORG_ROLES, role))
        with self._lock:
            organization = {"id": id, "slug": slug, "name": name or slug, "members": members,
                            "created_date": seed_date_text(-500 + id),
                            "updated_date": seed_date_text(-500 + id)}
            self.organizations[id] = organization
            return organization

    def add_project(self, id, name, organization_id=None, owner_id=1, assignee_id=None,
                    source_storage_id=None, target_storage_id=None):
        """Add a project. Storage ids, when given, become cloud-storage locations."""
        with self._lock:
            project = {"id": id, "name": name, "organization_id": organization_id,
                       "owner_id": owner_id, "assignee_id": assignee_id, "bug_tracker": "",
                       "status": "annotation",
                       "source_storage": self._storage_location(source_storage_id),
                       "target_storage": self._storage_location(target_storage_id),
                       "created_date": seed_date_text(id), "updated_date": seed_date_text(id)}
            self.projects[id] = project
            return project

    def add_task(self, id, name, project_id=None, subset="", size=None,
                 organization_id=_FROM_PROJECT, owner_id=1, assignee_id=None, segment_size=None,
                 jobs_count=None, image_quality=70):
        """Add a task.

        size=None means no data yet: no "size" key, data null, media_type "". size=0 means
        data was sent but has no frames (processing or failed). A positive size attaches that
        many frames and creates jobs of segment_size frames (default: one job), or
        jobs_count jobs when given. subset=None plays an old server that sends null.
        """
        with self._lock:
            if organization_id is _FROM_PROJECT:
                project = self.projects.get(project_id)
                organization_id = project["organization_id"] if project else None
            date = seed_date_text(id)
            task = {"id": id, "name": name, "project_id": project_id, "subset": subset,
                    "organization_id": organization_id, "owner_id": owner_id,
                    "assignee_id": assignee_id, "bug_tracker": "", "overlap": None,
                    "segment_size": segment_size or 0, "status": "annotation", "mode": "",
                    "created_date": date, "updated_date": date, "data": None, "size": None,
                    "image_quality": None, "media_type": "", "data_chunk_size": None,
                    "data_cloud_storage_id": None, "source_storage": None,
                    "target_storage": None, "job_ids": [], "files": []}
            self._inherit_project_storages(task)
            if size is not None:
                task["data"] = self._new_data_id()
                task["size"] = 0
                task["image_quality"] = image_quality
                if size > 0:
                    self._attach_frames(task, size, jobs_count=jobs_count)
            self.tasks[id] = task
            self.next_task_id = max(self.next_task_id, id + 1)
            return task

    def add_cloud_storage(self, id, resource, display_name=None, organization_id=None,
                          provider_type="AWS_S3_BUCKET", owner_id=1, prefix=""):
        """Add a cloud storage. prefix plays a storage registered with its own key prefix."""
        with self._lock:
            storage = {"id": id, "resource": resource, "display_name": display_name or resource,
                       "organization_id": organization_id, "provider_type": provider_type,
                       "owner_id": owner_id, "prefix": prefix,
                       "created_date": seed_date_text(-100 + id),
                       "updated_date": seed_date_text(-100 + id),
                       "keys": [], "key_set": set()}
            self.cloud_storages[id] = storage
            return storage

    def add_objects(self, storage_id, keys):
        """Add object keys to a storage's bucket. Keys ending in "/" are folder markers.

        The keys stay sorted so that listings use bisect. Keys that all sort after the stored
        ones are appended, a large batch re-sorts once, and a small one is inserted key by key.
        """
        with self._lock:
            storage = self.cloud_storages[storage_id]
            new_keys = sorted(key for key in set(keys) if key not in storage["key_set"])
            storage["key_set"].update(new_keys)
            stored = storage["keys"]
            if not new_keys:
                pass
            elif not stored or new_keys[0] > stored[-1]:
                stored.extend(new_keys)
            elif len(new_keys) > 64:
                storage["keys"] = sorted(storage["key_set"])
            else:
                for key in new_keys:
                    bisect.insort(stored, key)
            return storage

    def add_fault(self, method, path_regex, status=None, body=None, headers=None, times=1,
                  when="before", drop=False, delay=0.0, query=None):
        """Plan a fault for requests whose method and path (re.fullmatch) match.

        when="before" skips processing. when="after" processes the request first, so its
        state change happens, and then loses or replaces the response. drop=True closes the
        connection without a response. A fault with only a delay delays the real response.
        times=None means forever. query maps parameter names to a regex that the first
        value must fullmatch (None: the parameter must be present).
        """
        fault = Fault(method, path_regex, status, body, headers, times, when, drop, delay,
                      query)
        with self._lock:
            self.faults.append(fault)
        return fault

    def clear_faults(self):
        with self._lock:
            self.faults = []

    def find(self, method, path_regex):
        """Return the recorded requests with that method (None: any) and a matching path."""
        pattern = re.compile(path_regex)
        with self._lock:
            return [record for record in self.requests
                    if (method is None or record.method == method.upper())
                    and path_matches(pattern, record.path)]

    def clear_requests(self):
        with self._lock:
            self.requests = []

    # Seeds.

    def seed_demo(self):
        """Seed the demo state: organization "polycube", project 4 and a MinIO bucket."""
        with self._lock:
            _seed_demo(self)
        return self

    def seed_scenario(self, name):
        """Seed a named scenario (see scenario_names()). "demo" is accepted too."""
        if name == "demo":
            return self.seed_demo()
        if name not in SCENARIOS:
            raise ValueError("unknown scenario {!r}; known: demo, {}".format(
                name, ", ".join(scenario_names())))
        with self._lock:
            SCENARIOS[name](self)
        return self

    @staticmethod
    def scenario_names():
        return scenario_names()

    # Internal state changes, called with the lock held.

    def _storage_location(self, cloud_storage_id, location="cloud_storage"):
        if cloud_storage_id is None and location == "cloud_storage":
            return None
        stored = {"id": self._next_location_id, "location": location,
                  "cloud_storage_id": cloud_storage_id}
        self._next_location_id += 1
        return stored

    def _copy_location(self, location):
        if location is None:
            return None
        return self._storage_location(location["cloud_storage_id"], location["location"])

    def _inherit_project_storages(self, task):
        project = self.projects.get(task["project_id"])
        if project is None:
            return
        for field in ("source_storage", "target_storage"):
            if task[field] is None:
                task[field] = self._copy_location(project[field])

    def _new_data_id(self):
        data_id = self._next_data_id
        self._next_data_id += 1
        return data_id

    def _attach_frames(self, task, size, files=None, jobs_count=None, job_file_mapping=None):
        """Store the result of a successful data job: frames, media type and jobs."""
        task["size"] = size
        task["media_type"] = "image"
        task["mode"] = "annotation"
        task["data_chunk_size"] = DEFAULT_CHUNK_SIZE
        task["files"] = list(files or [])
        if task["segment_size"] == 0:
            task["segment_size"] = size
        if job_file_mapping:
            lengths = [len(group) for group in job_file_mapping]
        else:
            if jobs_count:
                segment = int(math.ceil(size / float(jobs_count)))
            else:
                segment = task["segment_size"]
            lengths = [min(segment, size - start) for start in range(0, size, segment)]
        start = 0
        for length in lengths:
            self._add_job(task, start, start + length - 1)
            start += length

    def _add_job(self, task, start_frame, stop_frame):
        job = {"id": self._next_job_id, "task_id": task["id"], "start_frame": start_frame,
               "stop_frame": stop_frame, "created_date": task["updated_date"]}
        self._next_job_id += 1
        self.jobs[job["id"]] = job
        task["job_ids"].append(job["id"])
        return job

    def _delete_task(self, task):
        for job_id in task["job_ids"]:
            self.jobs.pop(job_id, None)
        self._creation_requests.pop(task["id"], None)
        self._pending_task_ids.discard(task["id"])
        del self.tasks[task["id"]]

    def _settle(self, now):
        """Apply the outcome of every data job whose processing time has passed."""
        for task_id in list(self._pending_task_ids):
            request = self._creation_requests.get(task_id)
            if request is None or now < request["posted_at"] + request["duration"]:
                continue
            self._pending_task_ids.discard(task_id)
            task = self.tasks.get(task_id)
            if task is not None and request["outcome"] == "finished":
                self._attach_frames(task, len(request["files"]), files=request["files"],
                                    job_file_mapping=request["job_file_mapping"])
                task["updated_date"] = format_date(request["finished_date"])

    def _version_at_least(self, minimum):
        return parse_version(self.version) >= minimum

    # Permissions, called with the lock held.

    def _role(self, user, organization_id):
        organization = self.organizations.get(organization_id)
        if organization is None:
            return None
        return organization["members"].get(user["id"])

    def _is_task_staff(self, user, task):
        if user["id"] in (task["owner_id"], task["assignee_id"]):
            return True
        project = self.projects.get(task["project_id"])
        return project is not None and user["id"] in (project["owner_id"], project["assignee_id"])

    def _can_view_task(self, user, task):
        if user["is_admin"] or self._is_task_staff(user, task):
            return True
        return (task["organization_id"] is not None
                and self._role(user, task["organization_id"]) in ORG_VIEW_ALL_ROLES)

    def _can_change_task(self, user, task):
        if user["is_admin"] or self._is_task_staff(user, task):
            return True
        return (task["organization_id"] is not None
                and self._role(user, task["organization_id"]) in ORG_CHANGE_ROLES)

    def _is_project_staff(self, user, project):
        return user["id"] in (project["owner_id"], project["assignee_id"])

    def _can_view_project(self, user, project):
        if user["is_admin"] or self._is_project_staff(user, project):
            return True
        return (project["organization_id"] is not None
                and self._role(user, project["organization_id"]) is not None)

    def _storage_visible(self, call, storage):
        """Return whether the caller may use a storage in the request's org context.

        Without context, the storage's own organization applies. With a context, the
        storage must live in that organization (or in the sandbox for an empty value).
        """
        user = call.user
        if user["is_admin"]:
            return True
        if call.has_org_context and call.org_id != storage["organization_id"]:
            return False
        if storage["organization_id"] is None:
            return storage["owner_id"] == user["id"]
        return self._role(user, storage["organization_id"]) is not None

    def _visible_in_context(self, call, items, is_staff):
        """Filter tasks or projects by the list scoping rules of CVAT 2.73.0.

        No context: what the caller owns or is assigned to, from every workspace (admins see
        everything). Empty context: the sandbox only. An organization: all of it for
        supervisors and above, the caller's own items for workers, 403 for non-members.
        """
        user = call.user
        admin = user["is_admin"]
        if call.org is not None:
            role = self._role(user, call.org_id)
            if role is None and not admin:
                forbid()
            see_all = admin or role in ORG_VIEW_ALL_ROLES
            return [item for item in items if item["organization_id"] == call.org_id
                    and (see_all or is_staff(user, item))]
        if call.has_org_context:
            return [item for item in items if item["organization_id"] is None
                    and (admin or is_staff(user, item))]
        if admin:
            return list(items)
        return [item for item in items if is_staff(user, item)]

    # Request handling.

    def _record(self, method, raw_path, headers, raw_body):
        parts = urlsplit(raw_path)
        body = None
        body_error = None
        if raw_body:
            try:
                body = json.loads(raw_body.decode("utf-8"))
            except (UnicodeDecodeError, ValueError) as error:
                body_error = str(error)
        record = RecordedRequest(method, parts.path,
                                 parse_qs(parts.query, keep_blank_values=True),
                                 headers, body, raw_body, time.monotonic())
        record.query_pairs = parse_qsl(parts.query, keep_blank_values=True)
        record.body_error = body_error
        with self._lock:
            self.requests.append(record)
        return record

    def _take_fault(self, when, record):
        with self._lock:
            for fault in self.faults:
                if fault.when == when and fault.active and fault.matches(record):
                    fault.used += 1
                    return fault
        return None

    def _base_url(self, record):
        if self.public_base:
            return self.public_base.rstrip("/")
        host = record.headers.get("Host") or "127.0.0.1:{}".format(self.port)
        return "{}://{}".format(self._scheme, host)

    def _handle(self, record):
        """Build the reply for one request. State is read and changed under the lock."""
        with self._lock:
            now = time.monotonic()
            self._settle(now)
            call = Call(record, now, self._base_url(record))
            try:
                handler, groups = find_route(self, record.method, record.path)
                if handler is None:
                    return groups
                authenticate(self, call, allow_anonymous=handler is get_about)
                resolve_org_context(self, call)
                if call.method in WRITE_METHODS and call.token and not call.token["write"]:
                    forbid()
                if record.body_error is not None and call.method in WRITE_METHODS:
                    fail(400, {"detail": "JSON parse error - " + record.body_error})
                return handler(self, call, *groups)
            except ApiError as error:
                return error.reply
            except Exception:  # A bug here must reach the client and the test log.
                traceback.print_exc()
                return Reply.json(500, {"detail": "fake_cvat internal error: "
                                        + traceback.format_exc(limit=1).strip()})


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False
    allow_reuse_address = True

    def server_bind(self):
        # HTTPServer.server_bind resolves the host name, which can stall on some machines.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = self.server_address[:2]


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "fake-cvat"
    # Headers and body go out in separate writes; without TCP_NODELAY, Nagle's algorithm and
    # delayed ACKs add about 40 ms to every keep-alive request.
    disable_nagle_algorithm = True

    def do_GET(self):
        self._serve()

    do_POST = do_PATCH = do_PUT = do_DELETE = do_OPTIONS = do_GET

    def log_message(self, format, *args):
        pass  # Requests are logged by _log() when the server is verbose.

    def _serve(self):
        fake = self.server.fake
        raw_body = self._read_body()
        headers = HeaderDict(self.headers.items())
        record = fake._record(self.command, self.path, headers, raw_body)

        before = fake._take_fault("before", record)
        if before is not None:
            if before.replaces_reply:
                time.sleep(fake.latency + before.delay)
                self._send_fault(before, record)
                return
            time.sleep(before.delay)

        reply = fake._handle(record)
        after = fake._take_fault("after", record)
        time.sleep(fake.latency + (after.delay if after is not None else 0.0))
        if after is not None and after.replaces_reply:
            self._send_fault(after, record)
        else:
            self._send(reply, record)

    def _read_body(self):
        length = self.headers.get("Content-Length")
        if length:
            return self.rfile.read(int(length))
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            chunks = []
            while True:
                size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    self.rfile.readline()
                    return b"".join(chunks)
                chunks.append(self.rfile.read(size))
                self.rfile.readline()
        return b""

    def _send_fault(self, fault, record):
        if fault.drop:
            record.status = None
            self.close_connection = True
            self._log(record, "dropped")
            return
        self._send(fault.reply(), record)

    def _send(self, reply, record):
        # The status is recorded before writing, because a client may read the record as soon
        # as the response arrives.
        record.status = reply.status
        try:
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.payload)))
            self.end_headers()
            self.wfile.write(reply.payload)
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError):
            record.status = None
            self.close_connection = True
        self._log(record, record.status)

    def _log(self, record, outcome):
        if self.server.fake.verbose:
            sys.stderr.write("{} {} {}\n".format(record.method, record.path, outcome))
            sys.stderr.flush()


# Authentication and org context.

def authenticate(srv, call, allow_anonymous):
    """Set call.user from the Authorization header, or raise 401.

    As in Django REST framework, an unknown scheme (or Bearer before 2.48.0) counts as no
    credentials, so such a request reaches the anonymous server/about endpoint.
    """
    header = call.record.headers.get("Authorization", "")
    parts = header.split()
    scheme = parts[0].lower() if parts else ""
    schemes = ["token"]
    if srv._version_at_least(BEARER_TOKENS_SINCE):
        schemes.append("bearer")
    if scheme == "basic":
        fail(401, {"detail": INVALID_BASIC}, {"WWW-Authenticate": "Token"})
    if scheme not in schemes:
        if allow_anonymous:
            return
        fail(401, NO_CREDENTIALS, {"WWW-Authenticate": "Token"})
    if len(parts) == 1:
        reject_token(srv, header, "Invalid token header. No credentials provided.")
    if len(parts) > 2:
        reject_token(srv, header, "Invalid token header. Token string should not contain spaces.")
    token = srv.tokens.get(parts[1])
    if token is None or token["scheme"].lower() != scheme or token["user_id"] not in srv.users:
        reject_token(srv, header, INVALID_TOKEN)
    call.user = srv.users[token["user_id"]]
    call.token = token


def reject_token(srv, header, message):
    if srv.echo_auth_in_401:
        message = "Invalid token: " + header
    fail(401, {"detail": message}, {"WWW-Authenticate": "Token"})


def resolve_org_context(srv, call):
    """Read X-Organization, org and org_id as the CVAT 2.73.0 middleware does."""
    header = call.record.headers.get("X-Organization")
    slug = call.param("org")
    org_id = call.param("org_id")
    if org_id is not None and (slug is not None or header is not None):
        fail(400, ['You cannot specify "org_id" query parameter with "org" query parameter '
                   'or "X-Organization" HTTP header at the same time.'])
    if slug is not None and header is not None and slug != header:
        fail(400, ['You cannot specify "org" query parameter and "X-Organization" HTTP header '
                   'with different values.'])
    if slug is None:
        slug = header
    if slug is None and org_id is None:
        return
    call.has_org_context = True
    if slug:
        matches = [org for org in srv.organizations.values() if org["slug"] == slug]
        if not matches:
            fail(404, ORGANIZATION_NOT_FOUND)
        call.org = matches[0]
    elif org_id:
        if not org_id.isdigit() or int(org_id) not in srv.organizations:
            fail(404, ORGANIZATION_NOT_FOUND)
        call.org = srv.organizations[int(org_id)]


# Serializers: state dicts to the JSON shapes of CVAT 2.73.0.

def user_ref(srv, user_id, base):
    if user_id is None:
        return None
    user = srv.users.get(user_id, {"username": "user{}".format(user_id), "first_name": "",
                                   "last_name": ""})
    return {"url": "{}/api/users/{}".format(base, user_id), "id": user_id,
            "username": user["username"], "first_name": user["first_name"],
            "last_name": user["last_name"]}


def username_of(srv, user_id):
    user = srv.users.get(user_id)
    return user["username"] if user else None


def add_organization_fields(srv, body, organization_id):
    body["organization"] = organization_id
    if srv._version_at_least(ORGANIZATION_ID_FIELD_SINCE):
        body["organization_id"] = organization_id


def task_json(srv, task, base):
    task_id = task["id"]
    has_data = task["data"] is not None
    body = {
        "url": "{}/api/tasks/{}".format(base, task_id),
        "id": task_id,
        "name": task["name"],
        "project_id": task["project_id"],
        "mode": task["mode"],
        "owner": user_ref(srv, task["owner_id"], base),
        "assignee": user_ref(srv, task["assignee_id"], base),
        "bug_tracker": task["bug_tracker"],
        "created_date": task["created_date"],
        "updated_date": task["updated_date"],
        "overlap": task["overlap"],
        "segment_size": task["segment_size"],
        "status": task["status"],
        "data_chunk_size": task["data_chunk_size"],
        "data_compressed_chunk_type": "imageset" if task["size"] else None,
        "data_original_chunk_type": "imageset" if task["size"] else None,
        "guide_id": None,
        "data": task["data"],
        "dimension": "2d",
        "subset": task["subset"],
        "target_storage": task["target_storage"],
        "source_storage": task["source_storage"],
        "jobs": {"count": len(task["job_ids"]), "completed": 0, "validation": 0,
                 "url": "{}/api/jobs?task_id={}".format(base, task_id)},
        "labels": {"url": "{}/api/labels?task_id={}".format(base, task_id)},
        "assignee_updated_date": None,
        "validation_mode": None,
        "data_cloud_storage_id": task["data_cloud_storage_id"],
        "media_type": task["media_type"],
    }
    # Before any data call the task has no data row, so CVAT omits the fields read from it.
    if has_data:
        body["size"] = task["size"]
        body["image_quality"] = task["image_quality"]
    add_organization_fields(srv, body, task["organization_id"])
    return body


def project_json(srv, project, base):
    project_id = project["id"]
    tasks = [task for task in srv.tasks.values() if task["project_id"] == project_id]
    subsets = sorted({task["subset"] for task in tasks if task["subset"]})
    body = {
        "url": "{}/api/projects/{}".format(base, project_id),
        "id": project_id,
        "name": project["name"],
        "owner": user_ref(srv, project["owner_id"], base),
        "assignee": user_ref(srv, project["assignee_id"], base),
        "guide_id": None,
        "bug_tracker": project["bug_tracker"],
        "task_subsets": subsets,
        "created_date": project["created_date"],
        "updated_date": project["updated_date"],
        "status": project["status"],
        "dimension": "2d" if any(task["size"] for task in tasks) else None,
        "target_storage": project["target_storage"],
        "source_storage": project["source_storage"],
        "tasks": {"count": len(tasks), "url": "{}/api/tasks?project_id={}".format(base,
                                                                                  project_id)},
        "labels": {"url": "{}/api/labels?project_id={}".format(base, project_id)},
        "assignee_updated_date": None,
    }
    add_organization_fields(srv, body, project["organization_id"])
    return body


def job_json(srv, job, base):
    task = srv.tasks[job["task_id"]]
    return {
        "url": "{}/api/jobs/{}".format(base, job["id"]),
        "id": job["id"],
        "task_id": task["id"],
        "project_id": task["project_id"],
        "assignee": None,
        "guide_id": None,
        "dimension": "2d",
        "bug_tracker": task["bug_tracker"] or None,
        "status": "annotation",
        "stage": "annotation",
        "state": "new",
        "mode": task["mode"],
        "media_type": task["media_type"],
        "frame_count": job["stop_frame"] - job["start_frame"] + 1,
        "start_frame": job["start_frame"],
        "stop_frame": job["stop_frame"],
        "data_chunk_size": task["data_chunk_size"],
        "data_compressed_chunk_type": "imageset",
        "data_original_chunk_type": "imageset",
        "created_date": job["created_date"],
        "updated_date": job["created_date"],
        "issues": {"url": "{}/api/issues?job_id={}".format(base, job["id"]), "count": 0},
        "labels": {"url": "{}/api/labels?job_id={}".format(base, job["id"])},
        "type": "annotation",
        "organization": task["organization_id"],
        "target_storage": task["target_storage"],
        "source_storage": task["source_storage"],
        "assignee_updated_date": None,
        "parent_job_id": None,
    }


def organization_json(srv, organization, base):
    owners = [user_id for user_id, role in organization["members"].items() if role == "owner"]
    return {"id": organization["id"], "slug": organization["slug"],
            "name": organization["name"], "description": "", "contact": {},
            "owner": user_ref(srv, owners[0] if owners else 1, base),
            "created_date": organization["created_date"],
            "updated_date": organization["updated_date"]}


def cloud_storage_json(srv, storage, base):
    return {"id": storage["id"], "owner": user_ref(srv, storage["owner_id"], base),
            "manifests": [], "provider_type": storage["provider_type"],
            "resource": storage["resource"], "display_name": storage["display_name"],
            "created_date": storage["created_date"], "updated_date": storage["updated_date"],
            "credentials_type": "KEY_SECRET_KEY_PAIR", "specific_attributes": "",
            "description": "", "organization": storage["organization_id"]}


def self_json(srv, user, base):
    body = user_ref(srv, user["id"], base)
    body.update({"email": user["email"], "groups": ["admin"] if user["is_admin"] else ["user"],
                 "is_staff": user["is_admin"], "is_superuser": user["is_admin"],
                 "is_active": True, "last_login": now_text(),
                 "date_joined": user["date_joined"], "has_analytics_access": user["is_admin"]})
    return body


# Lists: filters, sorting and pagination.

def task_field(srv, task, name):
    """Return a task's value for a filter, search or sort field name."""
    if name in task:
        return task[name]
    if name in ("owner", "assignee"):
        return username_of(srv, task[name + "_id"])
    if name == "project_name":
        project = srv.projects.get(task["project_id"])
        return project["name"] if project else None
    if name == "tracker_link":
        return task["bug_tracker"]
    if name == "dimension":
        return "2d"
    return None


def project_field(srv, project, name):
    if name in ("owner", "assignee"):
        return username_of(srv, project[name + "_id"])
    return project.get(name)


def filter_items(srv, call, items, equality_fields, search_fields, field_value):
    """Apply equality filters, search and the JSON Logic filter of a list request."""
    for name in equality_fields:
        expected = call.param(name)
        if expected:
            items = [item for item in items
                     if str(field_value(srv, item, name)) == expected
                     and field_value(srv, item, name) is not None]
    search = (call.param("search") or "").lower()
    if search:
        items = [item for item in items
                 if any(search in str(field_value(srv, item, name) or "").lower()
                        for name in search_fields)]
    logic = call.param("filter")
    if logic:
        try:
            rule = json.loads(logic)
            items = [item for item in items
                     if evaluate_json_logic(rule, lambda name, item=item:
                                            field_value(srv, item, name))]
        except (ValueError, TypeError, KeyError, IndexError) as error:
            fail(400, {"filter": ["Invalid filter: {}".format(error)]})
    return items


def evaluate_json_logic(rule, lookup):
    """Evaluate the JSON Logic subset that CVAT filters use (var, and, or, !, comparisons, in)."""
    if isinstance(rule, list):
        return [evaluate_json_logic(item, lookup) for item in rule]
    if not isinstance(rule, dict):
        return rule
    if len(rule) != 1:
        raise ValueError("a JSON Logic rule has exactly one operator")
    operator, args = next(iter(rule.items()))
    if operator == "var":
        return lookup(args[0] if isinstance(args, list) else args)

    args = args if isinstance(args, list) else [args]
    if operator == "and":
        return all(evaluate_json_logic(arg, lookup) for arg in args)
    if operator == "or":
        return any(evaluate_json_logic(arg, lookup) for arg in args)
    if operator == "!":
        return not evaluate_json_logic(args[0], lookup)

    values = [evaluate_json_logic(arg, lookup) for arg in args]
    if operator == "==":
        return values[0] == values[1]
    if operator == "!=":
        return values[0] != values[1]
    if operator == "in":
        return values[0] in (values[1] or [])
    if operator in ("<", "<=", ">", ">="):
        if values[0] is None or values[1] is None:
            return False
        return {"<": values[0] < values[1], "<=": values[0] <= values[1],
                ">": values[0] > values[1], ">=": values[0] >= values[1]}[operator]
    raise ValueError("unsupported operator {!r}".format(operator))


def sort_items(srv, items, sort_param, fields, field_value):
    """Sort by a comma-separated field list ("-" for descending). Unknown fields are ignored."""
    items = list(items)
    for field in reversed([part.strip() for part in sort_param.split(",") if part.strip()]):
        descending = field.startswith("-")
        name = field.lstrip("-")
        if name not in fields:
            continue
        items.sort(key=lambda item: _sortable(field_value(srv, item, name)), reverse=descending)
    return items


def _sortable(value):
    return (value is None, "" if value is None else value)


def page_size_of(call, cap):
    raw = call.param("page_size")
    if cap is not None:
        return cap
    if raw == "all":
        return None
    if raw is not None and raw.isdigit() and int(raw) > 0:
        return int(raw)
    return DEFAULT_PAGE_SIZE


def page_url(call, page):
    """Build a next/previous link as Django REST framework does (parameters sorted)."""
    pairs = [(name, value) for name, value in call.record.query_pairs if name != "page"]
    if page is not None:
        pairs.append(("page", str(page)))
    pairs.sort(key=lambda pair: pair[0])
    query = urlencode(pairs)
    return call.base + call.path + ("?" + query if query else "")


def paginate(call, items, serialize, cap=None):
    size = page_size_of(call, cap)
    count = len(items)
    if size is None:
        size = max(count, 1)
    pages = max(1, int(math.ceil(count / float(size))))
    raw_page = call.param("page", "1")
    if raw_page == "last":
        page = pages
    elif raw_page.isdigit() and int(raw_page) >= 1:
        page = int(raw_page)
    else:
        fail(404, INVALID_PAGE)
    if page > pages:
        fail(404, INVALID_PAGE)
    chunk = items[(page - 1) * size:page * size]
    # Django REST framework drops the page parameter from the link to page 1.
    previous = None
    if page == 2:
        previous = page_url(call, None)
    elif page > 2:
        previous = page_url(call, page - 1)
    return Reply.json(200, {
        "count": count,
        "next": page_url(call, page + 1) if page < pages else None,
        "previous": previous,
        "results": [serialize(item) for item in chunk],
    })


# Request body validation.

def require_object(call):
    if not isinstance(call.body, dict):
        kind = "nothing" if call.body is None else type(call.body).__name__
        fail(400, {"non_field_errors": [
            "Invalid data. Expected a dictionary, but got {}.".format(kind)]})
    return call.body


def reject_unknown_fields(body, allowed):
    unknown = sorted(set(body) - allowed)
    if unknown:
        fail(400, {name: ["Unknown field: CVAT does not accept it here."] for name in unknown})


def clean_int(errors, name, value, minimum=None, maximum=INT32_MAX, allow_null=False):
    """Validate an integer as a DRF IntegerField does; integer strings are accepted."""
    if value is None:
        if not allow_null:
            errors[name] = ["This field may not be null."]
        return None
    number = None
    if isinstance(value, bool):
        number = None
    elif isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str) and re.fullmatch(r"\s*[-+]?\d+(\.0*)?\s*", value):
        number = int(float(value)) if "." in value else int(value)
    if number is None:
        errors[name] = ["A valid integer is required."]
        return None
    if minimum is not None and number < minimum:
        errors[name] = ["Ensure this value is greater than or equal to {}.".format(minimum)]
    elif maximum is not None and number > maximum:
        errors[name] = ["Ensure this value is less than or equal to {}.".format(maximum)]
    return number


def clean_text(errors, name, value, max_length, allow_blank=True):
    """Validate a string as a DRF CharField does: trimmed, numbers converted."""
    if value is None:
        errors[name] = ["This field may not be null."]
        return None
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        errors[name] = ["Not a valid string."]
        return None
    text = str(value).strip()
    if not text and not allow_blank:
        errors[name] = ["This field may not be blank."]
    elif len(text) > max_length:
        errors[name] = ["Ensure this field has no more than {} characters.".format(max_length)]
    return text


def clean_bool(errors, name, value):
    if value in (True, "true", "True", 1, "1"):
        return True
    if value in (False, "false", "False", 0, "0"):
        return False
    errors[name] = ["Must be a valid boolean."]
    return None


def clean_string_list(errors, name, value):
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        errors[name] = ['Expected a list of items but got type "{}".'.format(
            type(value).__name__)]
        return []
    return list(value)


def clean_user_id(srv, errors, name, value):
    user_id = clean_int(errors, name, value, minimum=0, allow_null=True)
    if user_id is not None and name not in errors and user_id not in srv.users:
        errors[name] = ['Invalid pk "{}" - object does not exist.'.format(user_id)]
    return user_id


def clean_storage(srv, call, errors, name, value):
    """Validate a source_storage or target_storage object and return (location, storage)."""
    if value is None:
        return None, None
    if not isinstance(value, dict):
        errors[name] = {"non_field_errors": [
            "Invalid data. Expected a dictionary, but got {}.".format(type(value).__name__)]}
        return None, None
    nested = {}
    unknown = sorted(set(value) - {"location", "cloud_storage_id"})
    for field in unknown:
        nested[field] = ["Unknown field: CVAT does not accept it here."]
    location = value.get("location", "local")
    if location not in STORAGE_LOCATIONS:
        nested["location"] = ['"{}" is not a valid choice.'.format(location)]

    storage_id = clean_int(nested, "cloud_storage_id", value.get("cloud_storage_id"),
                           minimum=0, allow_null=True)
    storage = None
    if location == "cloud_storage" and "cloud_storage_id" not in nested:
        if storage_id is None:
            nested["cloud_storage_id"] = ["This field is required for the cloud storage "
                                          "location."]
        else:
            storage = srv.cloud_storages.get(storage_id)
            if storage is None:
                nested["cloud_storage_id"] = [
                    "Cloud storage #{} does not exist.".format(storage_id)]

    if nested:
        errors[name] = nested
        return None, None
    return {"location": location, "cloud_storage_id": storage_id}, storage


# Endpoints. Each takes the server, the call and the path groups, and returns a Reply.

def get_about(srv, call):
    return Reply.json(200, {"name": SERVER_NAME, "description": SERVER_DESCRIPTION,
                            "version": srv.version,
                            "logo_url": call.base + "/api/server/logo",
                            "subtitle": SERVER_SUBTITLE})


def get_self(srv, call):
    return Reply.json(200, self_json(srv, call.user, call.base))


def list_organizations(srv, call):
    user = call.user
    items = [org for org in sorted(srv.organizations.values(), key=lambda org: org["id"])
             if user["is_admin"] or user["id"] in org["members"]]
    for name in ("slug", "name"):
        expected = call.param(name)
        if expected:
            items = [org for org in items if org[name] == expected]
    return paginate(call, items, lambda org: organization_json(srv, org, call.base))


def get_organization(srv, call, organization_id):
    organization = srv.organizations.get(int(organization_id))
    user = call.user
    if organization is None or not (user["is_admin"] or user["id"] in organization["members"]):
        fail(404, NOT_FOUND)
    return Reply.json(200, organization_json(srv, organization, call.base))


def list_projects(srv, call):
    items = srv._visible_in_context(call, srv.projects.values(), srv._is_project_staff)
    items = filter_items(srv, call, items, PROJECT_EQUALITY_FILTERS, ("name", "owner"),
                         project_field)
    items = sort_items(srv, items, call.param("sort") or "-id",
                       ("id", "name", "owner", "assignee", "status", "created_date",
                        "updated_date"), project_field)
    return paginate(call, items, lambda project: project_json(srv, project, call.base))


def get_project(srv, call, project_id):
    project = srv.projects.get(int(project_id))
    if project is None:
        fail(404, NOT_FOUND)
    if not srv._can_view_project(call.user, project):
        forbid()
    return Reply.json(200, project_json(srv, project, call.base))


def list_tasks(srv, call):
    items = srv._visible_in_context(call, srv.tasks.values(), srv._is_task_staff)
    items = filter_items(srv, call, items, TASK_EQUALITY_FILTERS, TASK_SEARCH_FIELDS,
                         task_field)
    items = sort_items(srv, items, call.param("sort") or "-id",
                       ("id", "name", "project_id", "subset", "owner", "assignee", "status",
                        "mode", "dimension", "created_date", "updated_date", "project_name",
                        "size"), task_field)
    return paginate(call, items, lambda task: task_json(srv, task, call.base),
                    cap=srv.task_page_size_cap)


def check_task_create_permission(srv, call, project):
    """Raise 403 unless the caller may create a task in the request's context."""
    user = call.user
    if user["is_admin"]:
        return
    if call.org is None:
        # Sandbox or no context: a project must be the caller's own or assigned one. For a
        # project in an organization this passes, and validation then rejects the pair.
        if project is not None and not srv._is_project_staff(user, project):
            forbid()
        return
    role = srv._role(user, call.org_id)
    if role is None:
        forbid()
    if project is not None and project["organization_id"] != call.org_id:
        forbid()
    if role in ORG_VIEW_ALL_ROLES:
        return
    if project is None or not srv._is_project_staff(user, project):
        forbid()


def create_task(srv, call):
    body = require_object(call)
    reject_unknown_fields(body, TASK_CREATE_FIELDS)
    project = None
    if body.get("project_id") is not None:
        project_errors = {}
        project_id = clean_int(project_errors, "project_id", body["project_id"], minimum=0)
        if project_errors:
            fail(400, project_errors)
        project = srv.projects.get(project_id)
        if project is None:
            fail(400, ["Project matching query does not exist."])
    check_task_create_permission(srv, call, project)

    errors = {}
    if "name" not in body:
        errors["name"] = ["This field is required."]
        name = None
    else:
        name = clean_text(errors, "name", body["name"], NAME_MAX_LENGTH, allow_blank=False)
    subset = clean_text(errors, "subset", body.get("subset", ""), SUBSET_MAX_LENGTH)
    segment_size = clean_int(errors, "segment_size", body.get("segment_size", 0), minimum=0)
    overlap = clean_int(errors, "overlap", body.get("overlap"), minimum=0, allow_null=True)
    bug_tracker = clean_text(errors, "bug_tracker", body.get("bug_tracker", ""),
                             BUG_TRACKER_MAX_LENGTH)
    owner_id = clean_user_id(srv, errors, "owner_id", body.get("owner_id"))
    assignee_id = clean_user_id(srv, errors, "assignee_id", body.get("assignee_id"))
    for replica_field in ("initial_replicas", "consensus_replicas"):
        if replica_field in body:
            clean_int(errors, replica_field, body[replica_field], minimum=0)
    locations = {}
    storages = []
    for field in ("source_storage", "target_storage"):
        locations[field], storage = clean_storage(srv, call, errors, field, body.get(field))
        if storage is not None:
            storages.append(storage)
    if errors:
        fail(400, errors)
    if project is not None and body.get("labels"):
        fail(400, ["Project must have only one of Label set or project_id"])
    if project is not None and project["organization_id"] != call.org_id:
        fail(400, [SAME_ORGANIZATION])
    if any(not srv._storage_visible(call, storage) for storage in storages):
        forbid()

    task_id = srv.next_task_id
    srv.next_task_id += 1
    date = now_text()
    task = {"id": task_id, "name": name, "project_id": project["id"] if project else None,
            "subset": subset, "organization_id": call.org_id,
            "owner_id": owner_id if owner_id is not None else call.user["id"],
            "assignee_id": assignee_id, "bug_tracker": bug_tracker, "overlap": overlap,
            "segment_size": segment_size, "status": "annotation", "mode": "",
            "created_date": date, "updated_date": date, "data": None, "size": None,
            "image_quality": None, "media_type": "", "data_chunk_size": None,
            "data_cloud_storage_id": None, "job_ids": [], "files": []}
    for field in ("source_storage", "target_storage"):
        location = locations[field]
        task[field] = (srv._storage_location(location["cloud_storage_id"], location["location"])
                       if location else None)
    srv._inherit_project_storages(task)
    srv.tasks[task_id] = task
    body = task_json(srv, task, call.base)
    return Reply.json(201, body, {"Location": body["url"]})


def find_task(srv, call, task_id, change=False):
    """Return the task or raise 404 or 403. The org context plays no part here."""
    task = srv.tasks.get(int(task_id))
    if task is None:
        fail(404, NOT_FOUND)
    allowed = (srv._can_change_task if change else srv._can_view_task)(call.user, task)
    if not allowed:
        forbid()
    return task


def get_task(srv, call, task_id):
    return Reply.json(200, task_json(srv, find_task(srv, call, task_id), call.base))


def patch_task(srv, call, task_id):
    task = find_task(srv, call, task_id, change=True)
    body = require_object(call)
    reject_unknown_fields(body, TASK_PATCH_FIELDS)

    errors = {}
    changes = {}
    if "name" in body:
        changes["name"] = clean_text(errors, "name", body["name"], NAME_MAX_LENGTH,
                                     allow_blank=False)
    if "subset" in body:
        changes["subset"] = clean_text(errors, "subset", body["subset"], SUBSET_MAX_LENGTH)
    if "bug_tracker" in body:
        changes["bug_tracker"] = clean_text(errors, "bug_tracker", body["bug_tracker"],
                                            BUG_TRACKER_MAX_LENGTH)
    for field in ("owner_id", "assignee_id"):
        if field in body:
            changes[field] = clean_user_id(srv, errors, field, body[field])

    if "project_id" in body:
        project_id = clean_int(errors, "project_id", body["project_id"], minimum=0,
                               allow_null=True)
        if project_id is not None and "project_id" not in errors:
            if project_id not in srv.projects:
                errors["project_id"] = ["The specified project #{} does not exist.".format(
                    project_id)]
        changes["project_id"] = project_id
    if "organization_id" in body:
        organization_id = clean_int(errors, "organization_id", body["organization_id"],
                                    minimum=0, allow_null=True)
        if organization_id is not None and organization_id not in srv.organizations:
            errors["organization_id"] = ["Organization #{} does not exist.".format(
                organization_id)]
        changes["organization_id"] = organization_id

    for field in ("source_storage", "target_storage"):
        if field in body:
            location, _ = clean_storage(srv, call, errors, field, body[field])
            changes[field] = (srv._storage_location(location["cloud_storage_id"],
                                                    location["location"])
                              if location else None)
    if errors:
        fail(400, errors)

    task.update(changes)
    task["updated_date"] = now_text()
    return Reply.json(200, task_json(srv, task, call.base))


def delete_task(srv, call, task_id):
    task = find_task(srv, call, task_id, change=True)
    srv._delete_task(task)
    return Reply.empty(204)


def clean_data_request(srv, body):
    """Validate a DataRequest body and return the options that the data job needs."""
    errors = {}
    options = {"server_files": [], "server_files_exclude": [], "job_file_mapping": None,
               "sorting_method": "lexicographical", "cloud_storage_id": None,
               "image_quality": None}
    if "image_quality" in body:
        options["image_quality"] = clean_int(errors, "image_quality", body["image_quality"],
                                             minimum=1, maximum=100)
    elif not srv._version_at_least(IMAGE_QUALITY_OPTIONAL_SINCE):
        errors["image_quality"] = ["This field is required."]

    for name in ("use_zip_chunks", "use_cache", "copy_data"):
        if name in body:
            clean_bool(errors, name, body[name])
    for name in ("chunk_size", "start_frame", "stop_frame"):
        if name in body:
            clean_int(errors, name, body[name], minimum=0, allow_null=name == "chunk_size")
    if body.get("sorting_method", "lexicographical") not in SORTING_METHODS:
        errors["sorting_method"] = ['"{}" is not a valid choice.'.format(body["sorting_method"])]
    else:
        options["sorting_method"] = body.get("sorting_method", "lexicographical")
    if body.get("storage_method", "cache") not in STORAGE_METHODS:
        errors["storage_method"] = ['"{}" is not a valid choice.'.format(body["storage_method"])]

    for name in ("server_files", "server_files_exclude", "remote_files", "upload_file_order"):
        if name in body:
            options[name] = clean_string_list(errors, name, body[name])
    bad_paths = [path for path in options["server_files"] + options["server_files_exclude"]
                 if not is_canonical_relative_path(path) or len(path) > KEY_MAX_LENGTH]
    if bad_paths:
        errors.setdefault("server_files", []).append(
            "Paths must be relative and canonical (no leading '/', no '.' or '..' segments, "
            "no '//'): {}".format(", ".join(repr(path) for path in bad_paths[:5])))
    if "job_file_mapping" in body:
        mapping = body["job_file_mapping"]
        if not isinstance(mapping, list) or not all(isinstance(group, list) for group in mapping):
            errors["job_file_mapping"] = ["Expected a list of lists of file names."]
        else:
            options["job_file_mapping"] = mapping
    if errors:
        fail(400, errors)

    if body.get("filename_pattern") is not None:
        if options["server_files_exclude"]:
            fail(400, ["The filename_pattern and server_files_exclude cannot be used together."])
        if any(not path.endswith(".jsonl") for path in options["server_files"]):
            fail(400, ["The filename_pattern can only be used with an empty server_files list "
                       "or a single manifest file."])
    if options["job_file_mapping"] and (body.get("filename_pattern") is not None
                                        or options["server_files_exclude"]):
        fail(400, ["The job_file_mapping cannot be combined with filename_pattern or "
                   "server_files_exclude."])
    options["cloud_storage_id"] = body.get("cloud_storage_id")
    return options


def expand_server_files(storage, server_files, excludes):
    """Turn server_files into object keys: a "dir/" entry takes every key below it."""
    keys = storage["keys"]
    result = []
    for path in server_files:
        if not path.endswith("/"):
            result.append(path)
            continue
        start = bisect.bisect_left(keys, path)
        for index in range(start, len(keys)):
            key = keys[index]
            if not key.startswith(path):
                break
            if not key.endswith("/"):
                result.append(key)
    if excludes:
        result = [key for key in result if not any(
            key == exclude or (exclude.endswith("/") and key.startswith(exclude))
            for exclude in excludes)]
    return list(dict.fromkeys(result))


def sort_frames(keys, method, seed):
    if method == "natural":
        return sorted(keys, key=natural_sort_key)
    if method == "predefined":
        return list(keys)
    if method == "random":
        shuffled = list(keys)
        random.Random(seed).shuffle(shuffled)
        return shuffled
    return sorted(keys)


def plan_data_job(srv, task, options):
    """Decide, at POST time, how the data job ends: ("finished", files) or ("failed", text).

    Checks run in this order: image_quality, cloud_storage_id, storage lookup, keys outside
    the storage prefix, missing objects, file types, unreadable images, the job limit.
    """
    server_files = options["server_files"]
    if options["image_quality"] is None:
        # NOTE: guessed text. From 2.65.0 the POST is accepted and the job fails.
        return "failed", "KeyError: 'image_quality'", []
    if not server_files:
        return "failed", "No media data found", []
    storage_id = options["cloud_storage_id"]
    if not isinstance(storage_id, int) or isinstance(storage_id, bool):
        # Without a storage id, CVAT reads server_files from its connected file share.
        return "failed", "FileNotFoundError: [Errno 2] No such file or directory: '{}{}'".format(
            SHARE_ROOT, server_files[0]), []
    storage = srv.cloud_storages.get(storage_id)
    if storage is None:
        return "failed", "CloudStorage matching query does not exist.", []
    keys = expand_server_files(storage, server_files, options["server_files_exclude"])
    keys = [key for key in keys if key.startswith(storage["prefix"])]
    if not keys:
        return "failed", "No media data found", []
    for key in keys:
        if key not in storage["key_set"]:
            return "failed", ("FileNotFoundError: The object '{}' was not found in the bucket "
                              "'{}'".format(key, storage["resource"])), []
    for key in keys:
        if file_extension(key) not in IMAGE_EXTENSIONS:
            return "failed", "Unsupported file type: {}".format(key), []
    for key in keys:
        if key in srv.broken_keys:
            return "failed", "Failed to read the image file '{}'".format(key), []
    files = sort_frames(keys, options["sorting_method"], task["id"])
    if options["job_file_mapping"]:
        jobs_count = len(options["job_file_mapping"])
    else:
        segment = task["segment_size"] or len(files)
        jobs_count = int(math.ceil(len(files) / float(segment)))
    if jobs_count > srv.max_jobs_per_task:
        # NOTE: guessed text for the error of CVAT's limit on jobs per task.
        return "failed", ("ValidationError: The task would have {} jobs, more than the limit "
                          "of {} jobs per task".format(jobs_count, srv.max_jobs_per_task)), []
    return "finished", "", files


def creation_rq_id(srv, task_id):
    if srv._version_at_least(ACTION_RQ_ID_SINCE):
        return "action=create&target=task&target_id={}".format(task_id)
    return "create:task-{}".format(task_id)


def request_phase(request, now):
    """Return (status, progress) of a creation request at monotonic time now."""
    steps = request.get("steps")
    if steps:
        if request["polls"] == 0:
            return "queued", None
        if request["polls"] < steps:
            return "started", round(request["polls"] / steps, 3)
        return request["outcome"], 1.0 if request["outcome"] == "finished" else None
    elapsed = now - request["posted_at"]
    queued_for = request["duration"] * QUEUED_SHARE
    if elapsed < queued_for:
        return "queued", None
    if elapsed < request["duration"]:
        running = request["duration"] - queued_for
        return "started", round((elapsed - queued_for) / running, 3)
    if request["outcome"] == "finished":
        return "finished", 1.0
    return "failed", None


def post_task_data(srv, call, task_id):
    task = find_task(srv, call, task_id, change=True)
    if task["size"]:
        fail(400, MORE_DATA)
    if call.record.headers.get("Upload-Start") is not None:
        return Reply.json(202, {})
    body = require_object(call)
    reject_unknown_fields(body, DATA_FIELDS)
    options = clean_data_request(srv, body)
    active = srv._creation_requests.get(task["id"])
    if active is not None and request_phase(active, call.now)[0] in ("queued", "started"):
        if srv._version_at_least(RQ_ID_IN_CONFLICT_SINCE):
            fail(409, {"rq_id": active["id"]})
        # NOTE: guessed body, because servers before 2.37.0 sent no rq_id with the 409.
        fail(409, [DATA_IN_PROGRESS])
    storage = srv.cloud_storages.get(options["cloud_storage_id"]) if isinstance(
        options["cloud_storage_id"], int) else None
    # NOTE: assumed behaviour. A storage outside the task's workspace is rejected at POST time.
    if storage is not None and storage["organization_id"] != task["organization_id"]:
        forbid()

    outcome, message, files = plan_data_job(srv, task, options)
    posted = datetime.now(timezone.utc)
    request = {"id": creation_rq_id(srv, task["id"]), "task_id": task["id"],
               "owner_id": call.user["id"], "project_id": task["project_id"],
               "org_id": task["organization_id"], "posted_at": call.now,
               "duration": max(0.0, float(srv.processing_seconds)), "created_date": posted,
               "outcome": outcome, "message": message, "files": files,
               "job_file_mapping": options["job_file_mapping"],
               "steps": srv.processing_steps, "polls": 0}
    request["finished_date"] = posted + timedelta(seconds=request["duration"])
    srv._creation_requests[task["id"]] = request
    srv._pending_task_ids.add(task["id"])
    if task["data"] is None:
        task["data"] = srv._new_data_id()
    task["size"] = 0
    task["image_quality"] = options["image_quality"] or 50
    task["data_cloud_storage_id"] = storage["id"] if storage else None
    task["updated_date"] = format_date(posted)
    if not srv._version_at_least(REQUESTS_API_SINCE):
        return Reply.json(202, {})
    return Reply.json(202, {"rq_id": request["id"]})


def request_json(srv, request, now):
    status, progress = request_phase(request, now)
    created = request["created_date"]
    queued_for = timedelta(seconds=request["duration"] * QUEUED_SHARE)
    finished = request["finished_date"]
    expiry = None
    if status == "finished":
        expiry = format_date(finished + timedelta(seconds=srv.finished_request_ttl))
    elif status == "failed":
        retention = (FAILED_REQUEST_RETENTION if srv._version_at_least(ACTION_RQ_ID_SINCE)
                     else OLD_FAILED_REQUEST_RETENTION)
        expiry = format_date(finished + retention)
    if status == "started":
        message = ("Downloading the files from the cloud storage" if progress < 0.5
                   else "Creating the data chunks")
    elif status == "failed":
        message = request["message"]
    else:
        message = ""
    owner = srv.users.get(request["owner_id"], {"username": "user{}".format(
        request["owner_id"])})
    return {
        "id": request["id"],
        "status": status,
        "message": message,
        "progress": progress,
        "operation": {"type": "create:task", "target": "task",
                      "project_id": request["project_id"], "task_id": request["task_id"],
                      "job_id": None, "org_id": request["org_id"], "format": None,
                      "function_id": None},
        "created_date": format_date(created),
        "started_date": format_date(created + queued_for) if status != "queued" else None,
        "finished_date": format_date(finished) if status in ("finished", "failed") else None,
        "expiry_date": expiry,
        "owner": {"id": request["owner_id"], "username": owner["username"]},
        "result_url": None,
        "result_id": None,
    }


def find_creation_request(srv, call, task_id):
    """Return the live creation request of a task, dropping it when it has expired."""
    request = srv._creation_requests.get(task_id)
    if request is None:
        return None
    status = request_phase(request, call.now)[0]
    expires_at = request["posted_at"] + request["duration"] + srv.finished_request_ttl
    if status == "finished" and call.now >= expires_at:
        del srv._creation_requests[task_id]
        return None
    return request


def get_request(srv, call, raw_id):
    rq_id = unquote(raw_id)
    match = re.fullmatch(r"action=create&target=task&target_id=(\d+)", rq_id)
    if match is None or not srv._version_at_least(ACTION_RQ_ID_SINCE):
        match = re.fullmatch(r"create:task-(\d+)", rq_id)
    request = find_creation_request(srv, call, int(match.group(1))) if match else None
    if request is None:
        return Reply.text(404, "Not Found")
    task = srv.tasks.get(request["task_id"])
    if request["owner_id"] != call.user["id"] and (
            task is None or not srv._can_view_task(call.user, task)):
        forbid()
    body = request_json(srv, request, call.now)
    request["polls"] += 1
    return Reply.json(200, body)


def get_task_status(srv, call, task_id):
    """Serve the legacy status endpoint of servers before 2.16.0."""
    task = find_task(srv, call, task_id)
    request = find_creation_request(srv, call, task["id"])
    if request is None:
        state = "Finished" if task["size"] else "Unknown"
        return Reply.json(200, {"state": state, "message": "", "progress": 0})
    body = request_json(srv, request, call.now)
    request["polls"] += 1
    percent = int(round((body["progress"] or 0) * 100))
    return Reply.json(200, {"state": body["status"].capitalize(), "message": body["message"],
                            "progress": percent})


def list_jobs(srv, call):
    tasks = srv._visible_in_context(call, srv.tasks.values(), srv._is_task_staff)
    for param, field in (("task_id", "id"), ("project_id", "project_id")):
        expected = call.param(param)
        if expected:
            tasks = [task for task in tasks if str(task[field]) == expected]
    jobs = [srv.jobs[job_id] for task in tasks for job_id in task["job_ids"]]
    # Every job of the test server has the same stage, state and type.
    for name, value in (("stage", "annotation"), ("state", "new"), ("type", "annotation")):
        expected = call.param(name)
        if expected and expected != value:
            jobs = []
    jobs = sort_items(srv, jobs, call.param("sort") or "-id", ("id", "task_id", "start_frame"),
                      lambda _srv, job, name: job.get(name))
    return paginate(call, jobs, lambda job: job_json(srv, job, call.base))


def get_job(srv, call, job_id):
    job = srv.jobs.get(int(job_id))
    if job is None:
        fail(404, NOT_FOUND)
    find_task(srv, call, job["task_id"])
    return Reply.json(200, job_json(srv, job, call.base))


def list_cloud_storages(srv, call):
    items = [storage for storage in sorted(srv.cloud_storages.values(),
                                           key=lambda storage: -storage["id"])
             if srv._storage_visible(call, storage)]
    filters = {"resource": "resource", "name": "display_name", "display_name": "display_name",
               "provider_type": "provider_type"}
    for param, field in filters.items():
        expected = call.param(param)
        if expected:
            items = [storage for storage in items if storage[field] == expected]
    return paginate(call, items, lambda storage: cloud_storage_json(srv, storage, call.base))


def get_cloud_storage(srv, call, storage_id):
    storage = srv.cloud_storages.get(int(storage_id))
    if storage is None:
        fail(404, NOT_FOUND)
    if not srv._storage_visible(call, storage):
        fail(403, PERMISSION_DENIED)
    return Reply.json(200, cloud_storage_json(srv, storage, call.base))


def encode_next_token(key):
    return base64.urlsafe_b64encode(key.encode("utf-8")).decode("ascii")


def decode_next_token(token):
    try:
        return base64.urlsafe_b64decode(token.encode("ascii")).decode("utf-8")
    except (binascii.Error, UnicodeError, ValueError):
        raise ApiError(Reply.text(400, BAD_NEXT_TOKEN))


def list_bucket_level(keys, prefix, scope, start_key, page_size):
    """List one level of keys below prefix, as S3 ListObjectsV2 with delimiter "/" does.

    keys is sorted; only keys starting with scope (the prefix, or the storage's own prefix
    when that is longer) count. A folder becomes one DIR entry, and the scan jumps past it
    with bisect, so a page costs O(page_size * log n). Returns (entries, next start key).
    """
    base = prefix[:prefix.rfind("/") + 1]
    index = bisect.bisect_left(keys, max(scope, start_key or ""))
    entries = []
    while index < len(keys) and len(entries) < page_size:
        key = keys[index]
        if not key.startswith(scope):
            break
        rest = key[len(base):]
        slash = rest.find("/")
        if slash >= 0:
            name = rest[:slash]
            entries.append({"name": name, "type": "DIR", "mime_type": "DIR"})
            # "0" follows "/" in code point order, so this skips the whole folder.
            index = bisect.bisect_left(keys, base + name + "0", index + 1)
        else:
            if rest:
                entries.append({"name": rest, "type": "REG", "mime_type": mime_type_of(rest)})
            index += 1
    more = index < len(keys) and keys[index].startswith(scope)
    return entries, keys[index] if more else None


def get_storage_content(srv, call, storage_id):
    storage = srv.cloud_storages.get(int(storage_id))
    if storage is None:
        # CVAT 2.73.0 turns the lookup error of an unknown id into a generic 500.
        return Reply.json(500, CONTENT_INTERNAL_ERROR)
    if not srv._storage_visible(call, storage):
        return Reply.json(403, PERMISSION_DENIED)

    raw_size = call.param("page_size", str(CONTENT_PAGE_SIZE))
    if not raw_size.isdigit() or int(raw_size) < 1:
        return Reply.text(400, BAD_CONTENT_PAGE_SIZE)
    page_size = int(raw_size)
    if srv.content_page_size_cap is not None:
        page_size = min(page_size, srv.content_page_size_cap)

    # NOTE: manifest_path is accepted and ignored, so listings always come from the bucket.
    prefix = call.param("prefix", "").lstrip("/")
    token = call.param("next_token")
    start_key = decode_next_token(token) if token else None
    own_prefix = storage["prefix"]
    if prefix.startswith(own_prefix) or own_prefix.startswith(prefix):
        scope = prefix if len(prefix) >= len(own_prefix) else own_prefix
        entries, next_key = list_bucket_level(storage["keys"], prefix, scope, start_key,
                                              page_size)
    else:
        entries, next_key = [], None

    directories = [entry for entry in entries if entry["type"] == "DIR"]
    files = [entry for entry in entries if entry["type"] == "REG"]
    if srv.shuffle_listing:
        srv._listing_calls += 1
        shuffler = random.Random("{}:{}".format(prefix, srv._listing_calls))
        shuffler.shuffle(directories)
        shuffler.shuffle(files)
    return Reply.json(200, {"content": directories + files,
                            "next": encode_next_token(next_key) if next_key else None})


# Routes: method, path pattern, handler, and the server versions that have the endpoint.

ANY_VERSION = ((0, 0, 0), (99, 0, 0))
ROUTES = [
    ("GET", r"/api/server/about", get_about, ANY_VERSION),
    ("GET", r"/api/users/self", get_self, ANY_VERSION),
    ("GET", r"/api/organizations", list_organizations, ANY_VERSION),
    ("GET", r"/api/organizations/(\d+)", get_organization, ANY_VERSION),
    ("GET", r"/api/projects", list_projects, ANY_VERSION),
    ("GET", r"/api/projects/(\d+)", get_project, ANY_VERSION),
    ("GET", r"/api/tasks", list_tasks, ANY_VERSION),
    ("POST", r"/api/tasks", create_task, ANY_VERSION),
    ("GET", r"/api/tasks/(\d+)", get_task, ANY_VERSION),
    ("PATCH", r"/api/tasks/(\d+)", patch_task, ANY_VERSION),
    ("DELETE", r"/api/tasks/(\d+)", delete_task, ANY_VERSION),
    # CVAT's TaskViewSet routes the data action with url_path r"data/?$", and cvat-sdk 2.80.0
    # posts to "/api/tasks/{id}/data/".
    ("POST", r"/api/tasks/(\d+)/data/?", post_task_data, ANY_VERSION),
    ("GET", r"/api/tasks/(\d+)/status", get_task_status, ((0, 0, 0), REQUESTS_API_SINCE)),
    ("GET", r"/api/requests/([^/]+)", get_request, (REQUESTS_API_SINCE, (99, 0, 0))),
    ("GET", r"/api/jobs", list_jobs, ANY_VERSION),
    ("GET", r"/api/jobs/(\d+)", get_job, ANY_VERSION),
    ("GET", r"/api/cloudstorages", list_cloud_storages, ANY_VERSION),
    ("GET", r"/api/cloudstorages/(\d+)", get_cloud_storage, ANY_VERSION),
    ("GET", r"/api/cloudstorages/(\d+)/content-v2", get_storage_content, ANY_VERSION),
]
COMPILED_ROUTES = [(method, re.compile(pattern), handler, versions)
                   for method, pattern, handler, versions in ROUTES]


def find_route(srv, method, path):
    """Return (handler, groups), or (None, reply) for an unknown path or method."""
    version = parse_version(srv.version)
    allowed = []
    for route_method, pattern, handler, (since, until) in COMPILED_ROUTES:
        match = pattern.fullmatch(path)
        if match is None or not since <= version < until:
            continue
        if route_method == method:
            return handler, match.groups()
        allowed.append(route_method)
    if allowed:
        return None, Reply.json(405, {"detail": 'Method "{}" not allowed.'.format(method)},
                                {"Allow": ", ".join(allowed)})
    return None, Reply.text(404, HTML_NOT_FOUND, "text/html; charset=utf-8")


# Seeds and scenarios.

DEMO_FOLDER = "nrt/Parc-Omnisport-Suzanne-Lenglen_2026-02-14/validation/"


def _seed_demo(srv):
    srv.add_token("demo-token", "Bearer", user_id=1, write=True)
    srv.add_organization(1, "polycube", "Polycube", members={1: "maintainer"})
    srv.add_cloud_storage(3, "cvat-internal", "MinIO CVAT Internal", organization_id=1)
    srv.add_cloud_storage(4, "datasets", "MinIO Datasets", organization_id=1)
    keys = [DEMO_FOLDER + "frame_{:06d}.jpg".format(number) for number in range(1, 2389)]
    keys += [DEMO_FOLDER + name for name in ("classes.txt", "manifest.jsonl", ".DS_Store")]
    keys += [DEMO_FOLDER + "thumbs/frame_000001.jpg", DEMO_FOLDER + "thumbs/frame_000002.jpg"]
    srv.add_objects(4, keys)
    srv.add_project(4, "Polyvision 4 classes", organization_id=1, source_storage_id=4,
                    target_storage_id=3)
    srv.add_task(14, "Polyvision 4cls - full dataset v1.1.6", project_id=4, subset="train",
                 size=1495, segment_size=1000)
    srv.add_task(17, "Stade-de-la-Tour-aux-Parachutes_2026-02-10_155217", project_id=4,
                 subset="train", size=4836, segment_size=1000)
    srv.add_task(19, "Vincennes-Athletic-small_2026-02-10_201919", project_id=4, subset="train",
                 size=3930, segment_size=1000)
    srv.next_task_id = 20


def _seed_field_base(srv, organization_id=None, project_owner_id=1):
    """Seed what every scenario shares: storages 3 and 4, project 4, site-a/images/."""
    srv.add_user(2, "bob")
    storage_owner = project_owner_id
    srv.add_cloud_storage(3, "cvat-internal", "MinIO CVAT Internal",
                          organization_id=organization_id, owner_id=storage_owner)
    srv.add_cloud_storage(4, "datasets", "MinIO Datasets", organization_id=organization_id,
                          owner_id=storage_owner)
    srv.add_objects(4, ["site-a/images/f_{}.jpg".format(number) for number in (1, 2, 3)])
    srv.add_project(4, "Field dataset", organization_id=organization_id,
                    owner_id=project_owner_id, source_storage_id=4, target_storage_id=3)


def scenario_bucket_prefix(srv):
    """Bucket "datasets" (storage 4) contains site-a/images/f_1.jpg..f_3.jpg. Project 4 is empty.

    A prefix that starts with the bucket name lists nothing (200, empty content).
    """
    _seed_field_base(srv)


def scenario_missing_storage_id(srv):
    """Same bucket as bucket-prefix. A data call without an int cloud_storage_id fails.

    The request ends failed with a FileNotFoundError for /home/django/share/<first key>.
    """
    _seed_field_base(srv)


def scenario_mixed_files(srv):
    """site-c/images/ mixes five images with labels, a manifest, junk and thumbs/a_1.jpg."""
    _seed_field_base(srv)
    names = ["a_1.jpg", "a_2.JPG", "a_3.jpeg", "a_4.png", "a_5.PNG", "a_1.txt", "classes.txt",
             "manifest.jsonl", ".DS_Store", "Thumbs.db", "notes.md", "a_6.jpg.tmp",
             "thumbs/a_1.jpg"]
    srv.add_objects(4, ["site-c/images/" + name for name in names])


def scenario_natural_order(srv):
    """site-e/seq/ contains frame names that sort differently in natural and code point order.

    Entries inside each listing page come back in a new random order on every call.
    """
    _seed_field_base(srv)
    names = ["frame_1.jpg", "frame_2.jpg", "frame_10.jpg", "frame_100.jpg", "frame_9.jpg",
             "Frame_11.jpg", "frame_2b.jpg", "frame_02.jpg"]
    srv.add_objects(4, ["site-e/seq/" + name for name in names])
    srv.shuffle_listing = True


def scenario_failed_processing(srv):
    """site-f/img/ contains ok_1.jpg, ok_2.jpg and the unreadable broken_3.jpg.

    The data request goes queued, started, failed with "Failed to read the image file
    'site-f/img/broken_3.jpg'" and the task stays with size 0.
    """
    _seed_field_base(srv)
    srv.add_objects(4, ["site-f/img/ok_1.jpg", "site-f/img/ok_2.jpg", "site-f/img/broken_3.jpg"])
    srv.broken_keys.add("site-f/img/broken_3.jpg")


def scenario_failed_processing_delete_fails(srv):
    """As failed-processing, and every DELETE /api/tasks/N returns 500."""
    scenario_failed_processing(srv)
    srv.add_fault("DELETE", r"/api/tasks/\d+", status=500, body=HTML_SERVER_ERROR,
                  headers={"Content-Type": "text/html; charset=utf-8"}, times=None)


def scenario_lost_data_answer(srv):
    """The first data call is processed, then its connection drops without a response.

    The job still runs (site-a/images/, 3 frames): a second data call gets 409 with the
    rq_id while it runs and 400 after it finished.
    """
    _seed_field_base(srv)
    srv.add_fault("POST", r"/api/tasks/\d+/data/?", when="after", drop=True)


def scenario_lost_data_answer_504(srv):
    """As lost-data-answer, but the proxy returns 504 Gateway Time-out after processing."""
    _seed_field_base(srv)
    srv.add_fault("POST", r"/api/tasks/\d+/data/?", when="after", status=504,
                  body=HTML_GATEWAY_TIMEOUT, headers={"Content-Type": "text/html"})


def scenario_lost_data_answer_expired(srv):
    """The data response is lost, the derived request id returns 404, the task keeps size 0.

    All site-a/images/ keys are unreadable, so the task never gets frames.
    """
    _seed_field_base(srv)
    srv.broken_keys.update("site-a/images/f_{}.jpg".format(number) for number in (1, 2, 3))
    srv.add_fault("POST", r"/api/tasks/\d+/data/?", when="after", drop=True)
    srv.add_fault("GET", r"/api/requests/.+", status=404, body="Not Found", times=None)


def scenario_long_task_list(srv):
    """Project 4 contains 23 tasks (101-123) and task lists return 10 per page at most.

    101-111 "train" of 1,000 frames, 112-118 "validation" of 250, 119-123 "test" of 120
    (13,350 frames). Task 123 is named "t12".
    """
    _seed_field_base(srv)
    for task_id in range(101, 124):
        if task_id <= 111:
            subset, size = "train", 1000
        elif task_id <= 118:
            subset, size = "validation", 250
        else:
            subset, size = "test", 120
        name = "t12" if task_id == 123 else "field-{}".format(task_id)
        srv.add_task(task_id, name, project_id=4, subset=subset, size=size)
    srv.task_page_size_cap = 10


def _seed_field_team(srv, project_owner_id):
    srv.add_user(2, "bob")
    srv.add_organization(1, "polycube", "Polycube", members={1: "maintainer", 2: "owner"})
    srv.add_organization(2, "field-team", "Field team", members={1: "maintainer", 2: "owner"})
    _seed_field_base(srv, organization_id=2, project_owner_id=project_owner_id)
    layout = [(31, 1, "train", 1000), (32, 2, "train", 1000), (33, 2, "train", 1000),
              (34, 1, "validation", 250), (35, 2, "validation", 250), (36, 2, "test", 120)]
    for task_id, owner_id, subset, size in layout:
        srv.add_task(task_id, "field-{}".format(task_id), project_id=4, subset=subset,
                     size=size, owner_id=owner_id)


def scenario_organization(srv):
    """Project 4 (owned by bob) lives in organization "field-team" (id 2) with 6 tasks.

    Alice is a maintainer of field-team and of "polycube" (id 1) and owns tasks 31 and 34.
    Without org context a task list shows only those 2 and POST /api/tasks for project 4
    gets 403. With X-Organization: field-team or org_id=2 all 6 show and creation works.
    Tasks: 31-33 train 1,000, 34-35 validation 250, 36 test 120 frames.
    """
    _seed_field_team(srv, project_owner_id=2)


def scenario_organization_own_project(srv):
    """As organization, but alice owns project 4.

    Without org context the task list shows all 6 tasks (project owner) and POST /api/tasks
    for project 4 gets 400 "The task and its project should be in the same organization."
    """
    _seed_field_team(srv, project_owner_id=1)


def scenario_token_kinds(srv):
    """Tokens "Bearer pat-good", "Token key-good" and read-only "Bearer pat-readonly".

    A rejected token gets 401 with a body that repeats the Authorization header.
    Project 4 contains tasks 19, 17 and 14.
    """
    _seed_field_base(srv)
    srv.add_task(19, "Vincennes-Athletic-small_2026-02-10_201919", project_id=4,
                 subset="train", size=3930, segment_size=1000)
    srv.add_task(17, "Stade-de-la-Tour-aux-Parachutes_2026-02-10_155217", project_id=4,
                 subset="train", size=4836, segment_size=1000)
    srv.add_task(14, "Polyvision 4cls - full dataset v1.1.6", project_id=4,
                 subset="validation", size=1495, segment_size=1000)
    srv.echo_auth_in_401 = True


def scenario_subset_names(srv):
    """Tasks 19 "validation", 20 "train", 21 "" are in project 4, task 22 in another org.

    Task 22 belongs to bob in organization "other-team" (id 3) where alice is no member,
    so it returns 403. Task 99 does not exist.
    """
    _seed_field_base(srv)
    srv.add_organization(3, "other-team", "Other team", members={2: "owner"})
    srv.add_task(19, "Vincennes-Athletic-small_2026-02-10_201919", project_id=4,
                 subset="validation", size=3930)
    srv.add_task(20, "Parc-Omnisport-Suzanne-Lenglen_2026-02-14", project_id=4,
                 subset="train", size=2388)
    srv.add_task(21, "Stade-Charlety_2026-02-15", project_id=4, subset="", size=50)
    srv.add_task(22, "other-team-task", organization_id=3, owner_id=2, subset="", size=100)


def scenario_odd_groups(srv):
    """Project 4 mixes cases, an empty subset, a null subset and a task still processing.

    Tasks: 19 train 3,930, 17 train 4,836, 14 train 1,495, 20 validation 2,388, 24 Validation
    300, 25 "" 50, and 26 with a null subset and size 0 (total 12,999). Project 5 has no tasks.
    """
    _seed_field_base(srv)
    layout = [(19, "train", 3930), (17, "train", 4836), (14, "train", 1495),
              (20, "validation", 2388), (24, "Validation", 300), (25, "", 50), (26, None, 0)]
    for task_id, subset, size in layout:
        srv.add_task(task_id, "field-{}".format(task_id), project_id=4, subset=subset,
                     size=size)
    srv.add_project(5, "Empty project", source_storage_id=4, target_storage_id=3)


def scenario_throttled(srv):
    """site-b/img/ contains 1,200 images and the server throttles with 429 and Retry-After.

    The second content-v2 page (the first call with next_token) gets 429 with Retry-After 2
    once, the first two request polls get 429 with Retry-After 1, and the first
    POST /api/tasks gets 429 with Retry-After 1.
    """
    _seed_field_base(srv)
    srv.add_objects(4, ["site-b/img/img_{:04d}.jpg".format(number) for number in range(1, 1201)])
    srv.add_fault("GET", r"/api/cloudstorages/\d+/content-v2", status=429,
                  body=throttled_body(2), headers={"Retry-After": "2"},
                  query={"next_token": None})
    srv.add_fault("GET", r"/api/requests/.+", status=429, body=throttled_body(1),
                  headers={"Retry-After": "1"}, times=2)
    srv.add_fault("POST", r"/api/tasks", status=429, body=throttled_body(1),
                  headers={"Retry-After": "1"})


def scenario_quality_and_segments(srv):
    """site-d/img/ contains 5,000 images and site-d/more/ 5,001, around the 5,000-job limit.

    The data call rejects image_quality above 100 with 400.
    """
    _seed_field_base(srv)
    srv.add_objects(4, ["site-d/img/frame_{:05d}.jpg".format(number)
                        for number in range(1, 5001)])
    srv.add_objects(4, ["site-d/more/frame_{:05d}.jpg".format(number)
                        for number in range(1, 5002)])


SCENARIOS = {
    "bucket-prefix": scenario_bucket_prefix,
    "missing-storage-id": scenario_missing_storage_id,
    "mixed-files": scenario_mixed_files,
    "natural-order": scenario_natural_order,
    "failed-processing": scenario_failed_processing,
    "failed-processing-delete-fails": scenario_failed_processing_delete_fails,
    "lost-data-answer": scenario_lost_data_answer,
    "lost-data-answer-504": scenario_lost_data_answer_504,
    "lost-data-answer-expired": scenario_lost_data_answer_expired,
    "long-task-list": scenario_long_task_list,
    "organization": scenario_organization,
    "organization-own-project": scenario_organization_own_project,
    "token-kinds": scenario_token_kinds,
    "subset-names": scenario_subset_names,
    "odd-groups": scenario_odd_groups,
    "throttled": scenario_throttled,
    "quality-and-segments": scenario_quality_and_segments,
}


def scenario_names():
    """Return the scenario names accepted by seed_scenario() ("demo" is accepted as well)."""
    return list(SCENARIOS)


# Standalone mode.

def main(argv=None):
    parser = argparse.ArgumentParser(description="Run the local CVAT test server on 127.0.0.1.")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0 picks a free one)")
    parser.add_argument("--seed", help="state to load: demo or a scenario name ({})".format(
        ", ".join(scenario_names())))
    parser.add_argument("--version", default=None,
                        help="server version to play (default {})".format(DEFAULT_VERSION))
    parser.add_argument("--latency-ms", type=float, default=0.0,
                        help="delay before every response, in milliseconds")
    parser.add_argument("--processing-seconds", type=float, default=0.3,
                        help="time from a data call to the end of its job, in seconds")
    parser.add_argument("--echo-auth-in-401", action="store_true",
                        help="repeat the received Authorization header in 401 bodies")
    parser.add_argument("--verbose", action="store_true",
                        help="log method, path and status of each request to stderr")
    args = parser.parse_args(argv)

    srv = FakeCvat(latency=args.latency_ms / 1000.0,
                   processing_seconds=args.processing_seconds, verbose=args.verbose)
    if args.seed:
        try:
            srv.seed_scenario(args.seed)
        except ValueError as error:
            parser.error(str(error))
    if args.version:
        srv.version = args.version
    if args.echo_auth_in_401:
        srv.echo_auth_in_401 = True
    # The handlers come first, so that a caller may send SIGTERM as soon as it reads the URL.
    stopping = threading.Event()
    for signal_number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signal_number, lambda *_: stopping.set())
    srv.start(port=args.port)
    print("FAKE_CVAT_URL=" + srv.url, flush=True)
    # The second line goes to stderr, so that callers reading the URL from stdout are unaffected.
    print("tokens: CVAT_ACCESS_TOKEN=pat-good (write), pat-readonly (read-only)%s; CVAT_TOKEN=key-good"
          % (", demo-token" if args.seed == "demo" else ""), file=sys.stderr, flush=True)
    while not stopping.wait(0.2):
        pass
    srv.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
