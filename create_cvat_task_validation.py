#!/usr/bin/env python3
"""Create a CVAT task in a project from the images under a prefix of a cloud storage (MinIO, S3).

Example:
    python3 create_cvat_task_validation.py --prefix site-a/images/ --name site-a-val --subset validation

Steps: list the prefix through CVAT (content-v2, every page) and keep the image files in natural
order (img2 before img10). Reject an empty list or a task name already in the project. Create the
task in the project's organization, attach the files from the cloud storage, wait for CVAT to
process them, and print the task id, frames, jobs and URL. --dry-run stops before the first write.

If CVAT rejects the files or fails to process them, the script deletes the empty task it made and
prints why. If it is interrupted or times out while CVAT is still processing, it leaves the task
and prints its id and how to check or delete it.

Reads CVAT_URL, CVAT_ACCESS_TOKEN or CVAT_TOKEN, and CVAT_ORG (see cvat_common.py).
Exit codes: 0 task created, 1 failed, 2 bad usage or configuration (nothing sent), 130 interrupted.
"""

import math
import re
import sys
import time

from cvat_common import (
    ArgumentParser,
    CvatClient,
    CvatError,
    EXIT_INTERRUPTED,
    HttpError,
    PollTimeout,
    RequestGone,
    UsageError,
    check_subset,
    describe_server_message,
    enter_project_organization,
    fetch_legacy_task_state,
    fetch_request_state,
    load_config,
    log,
    parse_version,
    poll,
    positive_int,
    read_project,
    run,
    CONTENT_PAGE_SIZE,
)

# Project the new task joins (Polyvision 4 classes).
PROJECT_ID = 4
# Cloud storage that contains the images (MinIO Datasets).
CLOUD_STORAGE_ID = 4
# Cloud storage for the task's exports and backups (MinIO CVAT Internal).
TARGET_CLOUD_STORAGE_ID = 3
# Folder inside the bucket, without the bucket name, e.g. "site-a/images/".
MINIO_PREFIX = "path/to/images"
# Name of the new task.
TASK_NAME = "task-name"
# Subset of the new task: train, validation or test.
SUBSET = "validation"
# JPEG quality of the chunks CVAT makes, 1-100. CVAT's UI uses 70, which keeps the chunk cache far smaller.
IMAGE_QUALITY = 100
# Frames per job.
SEGMENT_SIZE = 1000
# Seconds to wait for CVAT to process the data before giving up (processing goes on regardless).
TIMEOUT = 3600

# File name endings CVAT decodes as images; everything else under the prefix is skipped.
IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif",
    ".pbm", ".pgm", ".ppm", ".jp2", ".heic", ".heif",
)
# Jobs one task may have in CVAT's default settings.
MAX_JOBS = 5000
# Jobs count from which the script warns about a very small segment size.
MANY_JOBS = 1000
# Attempts at creating the task when its response is lost; each repeat follows a check by name.
CREATE_ATTEMPTS = 3
# A run of digits inside a key, compared as a number when sorting.
DIGIT_RUN = re.compile(r"\d+")
# Keys shown at each end of the list in a dry run.
DRY_RUN_SAMPLE = 3


def parse_args(argv):
    parser = ArgumentParser(
        description="Create a CVAT task from the images under a cloud storage prefix and wait for it."
    )
    parser.add_argument("--project-id", default=PROJECT_ID, help="project of the new task (default: %(default)s)")
    parser.add_argument(
        "--cloud-storage-id", default=CLOUD_STORAGE_ID, help="cloud storage holding the images (default: %(default)s)"
    )
    parser.add_argument(
        "--target-storage-id",
        default=TARGET_CLOUD_STORAGE_ID,
        help="cloud storage for exports and backups (default: %(default)s)",
    )
    parser.add_argument(
        "--prefix", default=MINIO_PREFIX, help="folder inside the bucket, without the bucket name (default: %(default)s)"
    )
    parser.add_argument("--name", default=TASK_NAME, help="name of the new task (default: %(default)s)")
    parser.add_argument("--subset", default=SUBSET, help="train, validation or test (default: %(default)s)")
    parser.add_argument(
        "--image-quality", default=IMAGE_QUALITY, help="chunk JPEG quality, 1-100 (default: %(default)s)"
    )
    parser.add_argument("--segment-size", default=SEGMENT_SIZE, help="frames per job (default: %(default)s)")
    parser.add_argument(
        "--timeout", default=TIMEOUT, help="seconds to wait for CVAT to process the data (default: %(default)s)"
    )
    parser.add_argument("--dry-run", action="store_true", help="list and check, then print the plan; write nothing")
    parser.add_argument(
        "--allow-duplicate-name", action="store_true", help="create the task even if the project has one of that name"
    )
    parser.add_argument("--recursive", action="store_true", help="also take images from sub-folders of the prefix")
    args = parser.parse_args(argv)

    args.project_id = positive_int(args.project_id, "--project-id")
    args.cloud_storage_id = positive_int(args.cloud_storage_id, "--cloud-storage-id")
    args.target_storage_id = positive_int(args.target_storage_id, "--target-storage-id")
    args.image_quality = positive_int(args.image_quality, "--image-quality", upper=100)
    args.segment_size = positive_int(args.segment_size, "--segment-size")
    args.timeout = positive_int(args.timeout, "--timeout (seconds)")
    args.subset = check_subset(args.subset)
    args.prefix = check_prefix(args.prefix)
    args.name = check_name(args.name)
    return args


def check_prefix(value):
    """Return the prefix as a folder key inside the bucket ending in "/", or raise UsageError."""
    prefix = value.strip()
    if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*://", prefix):
        raise UsageError(
            "invalid prefix %r: give the folder inside the bucket, without scheme, host or bucket "
            "name (e.g. site-a/images/)" % value
        )
    prefix = prefix.lstrip("/")
    if not prefix:
        raise UsageError(
            "the prefix is empty: set MINIO_PREFIX or --prefix to the folder inside the bucket "
            "that contains the images, e.g. site-a/images/"
        )
    if "//" in prefix or any(part in (".", "..") for part in prefix.split("/")):
        raise UsageError("invalid prefix %r: remove the '//', '.' or '..' parts" % value)
    if not prefix.endswith("/"):
        prefix += "/"
    return prefix


def check_name(value):
    """Return the task name without surrounding spaces, or raise UsageError."""
    name = value.strip()
    if not name:
        raise UsageError("the task name is empty: set TASK_NAME or --name")
    if len(name) > 256:
        raise UsageError("invalid task name: it has %d characters, CVAT allows 256" % len(name))
    if not name.isprintable():
        raise UsageError("invalid task name %r: remove the line breaks and control characters" % value)
    return name


def natural_key(key):
    """Return a sort key that compares digit runs as numbers and letters without case.

    Each digit run becomes its length (4 digits) and its digits without leading zeros, so
    img2 sorts before img10. Names equal under that rule (frame_02 and frame_2) fall back to
    the raw key, so the order does not depend on the listing order. One string per key keeps
    the memory of sorting 100,000 keys small.
    """
    return DIGIT_RUN.sub(encode_number, key.casefold()) + "\0" + key


def encode_number(match):
    digits = match.group().lstrip("0") or "0"
    return "%04d%s" % (len(digits), digits)


def is_image(name):
    return name.lower().endswith(IMAGE_EXTENSIONS)


def read_cloud_storage(client, storage_id, role):
    """Return a cloud storage; explain a missing or hidden one in one line."""
    try:
        return client.get("/api/cloudstorages/%d" % storage_id, "reading %s cloud storage %d" % (role, storage_id))
    except HttpError as error:
        if error.status in (403, 404, 500):
            raise CvatError(
                "%s cloud storage %d not found or not accessible in the project's organization "
                "(HTTP %d: %s): check the id in CVAT under Cloud Storages"
                % (role, storage_id, error.status, error.server_message)
            )
        raise


def list_folder(client, storage_id, folder):
    """Yield the entries of one folder level of a cloud storage, following every next_token."""
    token = None
    seen_tokens = set()
    while True:
        params = {"prefix": folder, "page_size": CONTENT_PAGE_SIZE}
        if token:
            params["next_token"] = token
        page = client.get(
            "/api/cloudstorages/%d/content-v2" % storage_id,
            "listing %s in cloud storage %d" % (folder, storage_id),
            params=params,
        )
        for entry in page.get("content") or []:
            yield entry

        token = page.get("next")
        if not token:
            return
        if token in seen_tokens:
            raise CvatError("listing %s in cloud storage %d failed: CVAT repeated a page token" % (folder, storage_id))
        seen_tokens.add(token)


def list_images(client, storage_id, prefix, recursive):
    """Return (image keys, skipped file keys, skipped folder keys) under prefix."""
    images, skipped_files, skipped_folders = [], [], []
    folders = [prefix]
    while folders:
        folder = folders.pop(0)
        for entry in list_folder(client, storage_id, folder):
            key = folder + entry["name"]
            if entry.get("type") == "DIR":
                if recursive:
                    folders.append(key + "/")
                else:
                    skipped_folders.append(key + "/")
            elif is_image(entry["name"]):
                images.append(key)
            else:
                skipped_files.append(key)
    images.sort(key=natural_key)
    return images, skipped_files, skipped_folders


def plural(count, word):
    return "%s %s%s" % ("{:,}".format(count), word, "" if count == 1 else "s")


def explain_empty_listing(args, storage, skipped_files, skipped_folders):
    """Return the error line for a prefix with no images, naming the likely cause."""
    message = "no images found under %r in cloud storage %d" % (args.prefix, args.cloud_storage_id)
    if skipped_files or skipped_folders:
        message += " (it contains %s and %s that were skipped" % (
            plural(len(skipped_files), "other file"),
            plural(len(skipped_folders), "folder"),
        )
        message += "; add --recursive to take images from sub-folders)" if skipped_folders else ")"

    bucket = (storage.get("resource") or "").strip("/")
    if bucket and (args.prefix == bucket + "/" or args.prefix.startswith(bucket + "/")):
        inside = args.prefix[len(bucket) + 1:] or "<folder>/"
        message += (
            "; the prefix must not start with the bucket name %r: keys are relative to the bucket, "
            "so try --prefix %s" % (bucket, inside)
        )
    else:
        message += "; check the prefix: it is the folder inside bucket %r, and letters are case-sensitive" % bucket
    return message


def check_jobs(count, segment_size):
    """Return the number of jobs the task will have; reject more than CVAT's cap."""
    jobs = math.ceil(count / segment_size)
    if jobs > MAX_JOBS:
        smallest = math.ceil(count / MAX_JOBS)
        raise CvatError(
            "{} with segment size {} make {}, more than CVAT's default limit of {:,} per task: "
            "use --segment-size {} or more, or split the prefix into several tasks".format(
                plural(count, "image"), segment_size, plural(jobs, "job"), MAX_JOBS, smallest
            )
        )
    if jobs >= MANY_JOBS:
        log("warning: segment size %d makes %s for this task; a larger --segment-size gives fewer, longer jobs"
            % (segment_size, plural(jobs, "job")))
    return jobs


def find_tasks_by_name(client, project_id, name):
    """Return the tasks of the project whose name is exactly name, from every page."""
    tasks = client.list_all(
        "/api/tasks",
        "looking for task %r in project %d" % (name, project_id),
        params={"project_id": project_id, "name": name},
    )
    return [task for task in tasks if task.get("name") == name and task.get("project_id", project_id) == project_id]


def task_body(args):
    """Return the POST /api/tasks body: the storages only set defaults, they attach no data."""
    return {
        "name": args.name,
        "project_id": args.project_id,
        "subset": args.subset,
        "segment_size": args.segment_size,
        "source_storage": {"location": "cloud_storage", "cloud_storage_id": args.cloud_storage_id},
        "target_storage": {"location": "cloud_storage", "cloud_storage_id": args.target_storage_id},
    }


def data_body(args, keys):
    """Return the POST /api/tasks/{id}/data body: full keys inside the bucket, read from the storage."""
    return {
        "cloud_storage_id": args.cloud_storage_id,
        "server_files": keys,
        "image_quality": args.image_quality,
        "use_zip_chunks": True,
        "use_cache": True,
        "sorting_method": "natural",
    }


def create_task(client, args, known_ids):
    """Create the task and return it. After a lost response, look the task up by name before any new attempt."""
    what = "creating task %r in project %d" % (args.name, args.project_id)
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            response = client.send("POST", "/api/tasks", json_body=task_body(args))
        except CvatError as error:
            lost = error.message
        else:
            if response.status_code == 201:
                return client.parse_json(response, "POST", what)
            if response.status_code < 500:
                raise client.http_error(response, "POST", what)
            lost = "HTTP %d" % response.status_code
            server_message = describe_server_message(response)
            if server_message:
                lost += ": %s" % server_message

        try:
            made = [task for task in find_tasks_by_name(client, args.project_id, args.name) if task["id"] not in known_ids]
        except CvatError as error:
            raise CvatError(
                "%s: no response (%s), and looking the task up failed too (%s); look for task %r in "
                "project %d before running again" % (what, lost, error.message, args.name, args.project_id)
            )
        if len(made) == 1:
            log("the response to the create call was lost, but task #%d exists: going on with it" % made[0]["id"])
            return made[0]
        if len(made) > 1:
            ids = ", ".join("#%d" % task["id"] for task in made)
            raise CvatError("%s: the response was lost and several tasks were created (%s); delete the extra ones" % (what, ids))
        if attempt == CREATE_ATTEMPTS:
            raise CvatError("%s failed: %s; no task was created (checked by name), run again later" % (what, lost))
        log("creating the task failed (%s) and no task exists: trying again" % lost)
        time.sleep(client.config.backoff * 2 ** attempt)


def check_concurrent_task(client, args, task_id, known_ids):
    """Delete this run's task if another run made a task of the same name at the same time.

    Two runs can both pass the name check before either creates its task. The task with the
    lowest id is kept and the later one is deleted before any data is attached, so exactly one
    remains whichever run gets here first.
    """
    rivals = [
        task["id"]
        for task in find_tasks_by_name(client, args.project_id, args.name)
        if task["id"] not in known_ids and task["id"] < task_id
    ]
    if rivals:
        delete_empty_task(
            client,
            task_id,
            "another run created task #%d named %r at the same time" % (min(rivals), args.name),
        )


def send_data(client, task_id, body):
    """POST the data call once and return its request id, "" if CVAT gave none, or None if lost.

    The call is never repeated: after a lost response the script polls the task's request.
    """
    path = "/api/tasks/%d/data" % task_id
    try:
        response = client.send("POST", path, json_body=body)
    except CvatError:
        log("the data call of task #%d got no response; checking the task's request instead of "
            "sending the data again" % task_id)
        return None

    if response.status_code in (202, 409):
        # 409: a creation job for this task is already running; its body names the same request.
        try:
            response_body = response.json()
        except ValueError:
            response_body = None
        if isinstance(response_body, dict) and response_body.get("rq_id"):
            return response_body["rq_id"]
        return ""
    if response.status_code >= 500:
        log("the data call of task #%d got HTTP %d; checking its request instead of sending again"
            % (task_id, response.status_code))
        return None
    raise client.http_error(response, "POST", "attaching %s to task #%d" % (plural(len(body["server_files"]), "file"), task_id))


def derived_request_ids(task_id, version):
    """Return the ids CVAT gives a task's creation request, newest form first."""
    if version >= (2, 38, 0):
        return ["action=create&target=task&target_id=%d" % task_id, "create:task-%d" % task_id]
    if version >= (2, 16, 0):
        return ["create:task-%d" % task_id]
    return []


class CreationWatcher:
    """Fetch the state of a task's creation from its request, or from the task on older servers."""

    def __init__(self, client, task_id, rq_id, version):
        self.client = client
        self.task_id = task_id
        if rq_id:
            self.request_ids = [rq_id]
        else:
            self.request_ids = derived_request_ids(task_id, version)
        self.seen = False

    def __call__(self):
        while self.request_ids:
            try:
                state = fetch_request_state(self.client, self.request_ids[0], self.seen)
                self.seen = True
                return state
            except RequestGone as gone:
                if gone.seen:
                    return self.state_from_task("the request expired")
                self.request_ids.pop(0)
        if self.client.version < (2, 16, 0):
            return fetch_legacy_task_state(self.client, self.task_id)
        return self.state_from_task("CVAT has no creation request for this task")

    def state_from_task(self, reason):
        """Decide the outcome from the task itself once the request cannot be read."""
        task = self.client.get("/api/tasks/%d" % self.task_id, "reading task #%d" % self.task_id)
        if (task.get("size") or 0) > 0 and task.get("media_type"):
            return {"status": "finished", "message": "", "progress": 1.0}
        return {"status": "failed", "message": "%s and the task has no data" % reason, "progress": None}


def count_jobs(client, task):
    """Return the number of jobs of a task, from its summary or from the job list."""
    jobs = task.get("jobs")
    if isinstance(jobs, dict) and "count" in jobs:
        return jobs["count"]
    page = client.get("/api/jobs", "listing the jobs of task #%d" % task["id"], params={"task_id": task["id"], "page_size": 1})
    return page.get("count", 0)


def delete_command(client, task_id):
    variable = client.config.token_variable
    return 'curl -X DELETE -H "Authorization: %s $%s" %s/api/tasks/%d' % (
        client.config.token_scheme, variable, client.base_url, task_id)


def delete_empty_task(client, task_id, reason):
    """Delete a task that got no data and raise the failure, saying whether the task is gone."""
    try:
        client.call("DELETE", "/api/tasks/%d" % task_id, "deleting task #%d" % task_id, expected=(204, 404))
    except CvatError as error:
        raise CvatError(
            "%s; deleting the empty task failed too (%s), so task #%d is left without data: "
            "delete it in CVAT or with: %s" % (reason, error.message, task_id, delete_command(client, task_id))
        )
    raise CvatError("%s; the empty task #%d was deleted" % (reason, task_id))


def print_plan(args, project, storage, keys, jobs):
    print("Dry run: nothing was created.")
    print("Task: %s" % args.name)
    print("  Project: %d (%s), subset: %s" % (args.project_id, project.get("name", ""), args.subset))
    print("  Images: %s from cloud storage %d (bucket %s), prefix %s"
          % ("{:,}".format(len(keys)), args.cloud_storage_id, storage.get("resource", "?"), args.prefix))
    print("  Jobs: {:,} (segment size {}), image quality {}".format(jobs, args.segment_size, args.image_quality))
    shown = keys if len(keys) <= 2 * DRY_RUN_SAMPLE else keys[:DRY_RUN_SAMPLE] + ["..."] + keys[-DRY_RUN_SAMPLE:]
    for key in shown:
        print("    %s" % key)


def print_result(client, args, project, task, sent):
    frames = task.get("size") or 0
    print("Task #%d created: %s" % (task["id"], task.get("name", args.name)))
    print("  Project: %d (%s), subset: %s" % (args.project_id, project.get("name", ""), task.get("subset", args.subset)))
    print("  Frames: %s in %s (segment size %d)"
          % ("{:,}".format(frames), plural(count_jobs(client, task), "job"), args.segment_size))
    print("  URL: %s" % client.task_url(task["id"]))
    if frames != sent:
        log("warning: %s were sent but the task has %s; check the storage's own prefix in CVAT"
            % (plural(sent, "file"), plural(frames, "frame")))


def attach_and_wait(client, args, task, keys):
    """Attach the files to the new task and wait for CVAT; return the finished task."""
    task_id = task["id"]
    try:
        rq_id = send_data(client, task_id, data_body(args, keys))
    except HttpError as error:
        delete_empty_task(client, task_id, error.message)

    watcher = CreationWatcher(client, task_id, rq_id, client.version)
    try:
        state = poll(watcher, args.timeout, "task #%d" % task_id)
    except PollTimeout:
        raise CvatError(
            "task #%d is still being processed after %d s; CVAT goes on with it: check it at %s, "
            "and if it ends up without data delete it with: %s"
            % (task_id, args.timeout, client.task_url(task_id), delete_command(client, task_id))
        )
    except CvatError as error:
        raise CvatError(
            "%s; task #%d may still be processing in CVAT: check it at %s, and if it ends up "
            "without data delete it with: %s"
            % (error.message, task_id, client.task_url(task_id), delete_command(client, task_id))
        )

    if state["status"] == "failed":
        delete_empty_task(client, task_id, "processing the data of task #%d failed: %s" % (task_id, state["message"]))
    finished = client.get("/api/tasks/%d" % task_id, "reading task #%d" % task_id)
    if not finished.get("size"):
        delete_empty_task(client, task_id, "CVAT finished task #%d but it has no frames" % task_id)
    return finished


def main(argv=None):
    args = parse_args(argv)
    config = load_config()
    client = CvatClient(config)

    about = client.get("/api/server/about", "checking the CVAT server at %s" % config.url)
    client.version = parse_version(about.get("version"))
    project = read_project(client, args.project_id)
    enter_project_organization(client, project)
    storage = read_cloud_storage(client, args.cloud_storage_id, "source")
    if args.target_storage_id != args.cloud_storage_id:
        read_cloud_storage(client, args.target_storage_id, "target")

    keys, skipped_files, skipped_folders = list_images(client, args.cloud_storage_id, args.prefix, args.recursive)
    if not keys:
        raise CvatError(explain_empty_listing(args, storage, skipped_files, skipped_folders))
    log("found %s under %s in cloud storage %d (skipped %s and %s)" % (
        plural(len(keys), "image"), args.prefix, args.cloud_storage_id,
        plural(len(skipped_files), "other file"), plural(len(skipped_folders), "folder")))
    jobs = check_jobs(len(keys), args.segment_size)

    existing = find_tasks_by_name(client, args.project_id, args.name)
    if existing and not args.allow_duplicate_name:
        ids = ", ".join("#%d" % task["id"] for task in existing)
        raise CvatError(
            "project %d already has a task named %r (%s): choose another --name, or pass "
            "--allow-duplicate-name to create one more" % (args.project_id, args.name, ids)
        )
    if args.dry_run:
        print_plan(args, project, storage, keys, jobs)
        return 0

    try:
        task = create_task(client, args, {task["id"] for task in existing})
    except KeyboardInterrupt:
        raise CvatError(
            "interrupted while creating task %r: look for it in project %d before running again"
            % (args.name, args.project_id),
            EXIT_INTERRUPTED,
        )
    task_id = task["id"]
    try:
        if not args.allow_duplicate_name:
            check_concurrent_task(client, args, task_id, {task["id"] for task in existing})
        # "created" is printed only once the task has its frames, because it may still fail and be deleted.
        log("attaching %s to the new task #%d" % (plural(len(keys), "file"), task_id))
        finished = attach_and_wait(client, args, task, keys)
    except KeyboardInterrupt:
        raise CvatError(
            "interrupted while task #%d was being set up; CVAT may still be processing it: check %s, "
            "and if it has no data delete it in CVAT or with: %s"
            % (task_id, client.task_url(task_id), delete_command(client, task_id)),
            EXIT_INTERRUPTED,
        )

    print_result(client, args, project, finished, len(keys))
    return 0


if __name__ == "__main__":
    sys.exit(run(main))
