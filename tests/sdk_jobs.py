#!/usr/bin/env python3
"""The benchmark's baseline: the jobs of the cvat-scripts written with the official cvat-sdk.

    python3 tests/sdk_jobs.py show PROJECT_ID
    python3 tests/sdk_jobs.py create --prefix P --name N [--dry-run] [--project-id ...] ...
    python3 tests/sdk_jobs.py update SUBSET TASK_ID [TASK_ID ...]

Each job uses the SDK as its documentation shows. The client comes from make_client() with an
access token, and work inside an organization sets the organization slug on the client.
Project.get_tasks() reads a project's tasks, the generated cloudstorages_api lists content-v2
pages, and TasksRepo.list() looks a task up by name. TasksRepo.create_from_data() with
ResourceType.SHARE attaches bucket keys and waits, and Task.update() sets a subset. Nothing is
tuned for speed beyond the SDK's defaults, which include polling every 5 seconds
(Config.status_check_period).

Reads CVAT_URL, CVAT_ACCESS_TOKEN and CVAT_ORG (the organization slug, used by create).
Written for cvat-sdk 2.80.0; tests/benchmark.py runs it as a subprocess.
"""

import argparse
import os
import re
import sys

from cvat_sdk import make_client, models
from cvat_sdk.core.proxies.tasks import ResourceType

# File name endings taken as images, the same list create_cvat_task_validation.py uses.
IMAGE_EXTENSIONS = (
    ".jpg", ".jpeg", ".jpe", ".png", ".bmp", ".tif", ".tiff", ".webp", ".gif",
    ".pbm", ".pgm", ".ppm", ".jp2", ".heic", ".heif",
)


def connect():
    """Return an SDK client logged in with CVAT_ACCESS_TOKEN, in the CVAT_ORG organization if set."""
    client = make_client(os.environ["CVAT_URL"], access_token=os.environ["CVAT_ACCESS_TOKEN"])
    org = os.environ.get("CVAT_ORG")
    if org:
        client.organization_slug = org
    return client


def natural_key(key):
    parts = re.split(r"(\d+)", key)
    return [int(part) if part.isdigit() else part.casefold() for part in parts]


def show(client, project_id):
    """Print the tasks and frames of a project per subset."""
    project = client.projects.retrieve(project_id)
    # get_tasks() sends org_id=<project's organization>, so colleagues' tasks are included.
    tasks = project.get_tasks()

    groups = {}
    for task in tasks:
        subset = task.subset or "(none)"
        counts = groups.setdefault(subset, {"tasks": 0, "frames": 0})
        counts["tasks"] += 1
        counts["frames"] += getattr(task, "size", 0) or 0

    total = sum(counts["frames"] for counts in groups.values())
    print("%s - Dataset Split" % project.name)
    print("Total frames: {:,}".format(total))
    for subset in sorted(groups):
        counts = groups[subset]
        share = 100.0 * counts["frames"] / total if total else 0.0
        print("Subset: %s, tasks: %d, frames: {:,} (%.1f%%)".format(counts["frames"])
              % (subset, counts["tasks"], share))


def list_images(client, storage_id, prefix):
    """Return the image keys directly under prefix, in natural order, following every page."""
    api = client.api_client.cloudstorages_api
    keys = []
    token = None
    while True:
        params = {"prefix": prefix}
        if token:
            params["next_token"] = token
        page, _ = api.retrieve_content_v2(storage_id, **params)
        for entry in page.content:
            if entry.type.value == "REG" and entry.name.lower().endswith(IMAGE_EXTENSIONS):
                keys.append(prefix + entry.name)
        token = page.next
        if not token:
            break
    keys.sort(key=natural_key)
    return keys


def create(client, args):
    """Create a task in the project from the images under the prefix and wait for it."""
    project = client.projects.retrieve(args.project_id)
    keys = list_images(client, args.cloud_storage_id, args.prefix)
    if not keys:
        sys.exit("no images found under %r" % args.prefix)

    existing = client.tasks.list(project_id=args.project_id, name=args.name)
    if existing:
        sys.exit("project %d already has a task named %r" % (args.project_id, args.name))

    if args.dry_run:
        print("Dry run: nothing was created.")
        print("  Project: %d (%s)" % (project.id, project.name))
        print("  Images: {:,}".format(len(keys)))
        for key in keys[:3] + keys[-3:]:
            print("    %s" % key)
        return

    spec = models.TaskWriteRequest(
        name=args.name,
        project_id=args.project_id,
        subset=args.subset,
        segment_size=args.segment_size,
        source_storage=models.StorageRequest(
            location=models.LocationEnum("cloud_storage"), cloud_storage_id=args.cloud_storage_id
        ),
        target_storage=models.StorageRequest(
            location=models.LocationEnum("cloud_storage"), cloud_storage_id=args.target_storage_id
        ),
    )
    task = client.tasks.create_from_data(
        spec=spec,
        resources=keys,
        resource_type=ResourceType.SHARE,
        data_params={
            "cloud_storage_id": args.cloud_storage_id,
            "image_quality": args.image_quality,
            "use_cache": True,
            "use_zip_chunks": True,
            "sorting_method": "natural",
        },
    )
    print("Task #%d created: %s" % (task.id, task.name))
    print("  Frames: {:,} in %d jobs".format(task.size) % task.jobs.count)


def update(client, subset, task_ids):
    """Set the subset of each task, one after the other, printing the old and the new value."""
    for task_id in task_ids:
        task = client.tasks.retrieve(task_id)
        old = task.subset or "(none)"
        task.update({"subset": subset})
        print("#%d: %s -> %s" % (task_id, old, subset or "(none)"), flush=True)


def parse_args(argv):
    parser = argparse.ArgumentParser(description="Run one cvat-scripts job with cvat-sdk.")
    jobs = parser.add_subparsers(dest="job", required=True)

    show_parser = jobs.add_parser("show", help="print a project's split over subsets")
    show_parser.add_argument("project_id", type=int)

    create_parser = jobs.add_parser("create", help="create a task from a cloud storage prefix")
    create_parser.add_argument("--project-id", type=int, default=4)
    create_parser.add_argument("--cloud-storage-id", type=int, default=4)
    create_parser.add_argument("--target-storage-id", type=int, default=3)
    create_parser.add_argument("--prefix", required=True, help="folder inside the bucket, ending in /")
    create_parser.add_argument("--name", required=True)
    create_parser.add_argument("--subset", default="validation")
    create_parser.add_argument("--image-quality", type=int, default=70)
    create_parser.add_argument("--segment-size", type=int, default=1000)
    create_parser.add_argument("--dry-run", action="store_true")

    update_parser = jobs.add_parser("update", help="set the subset of tasks")
    update_parser.add_argument("subset", help="new subset, or none to clear it")
    update_parser.add_argument("task_ids", type=int, nargs="+")
    return parser.parse_args(argv)


def main(argv=None):
    args = parse_args(argv)
    with connect() as client:
        if args.job == "show":
            show(client, args.project_id)
        elif args.job == "create":
            create(client, args)
        else:
            update(client, "" if args.subset == "none" else args.subset, args.task_ids)
    return 0


if __name__ == "__main__":
    sys.exit(main())
