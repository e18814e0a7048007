#!/usr/bin/env python3
"""Move CVAT tasks to the train, validation or test subset, or clear their subset.

Example:
    python3 update_task_subset.py train 19 17 14
    python3 update_task_subset.py none 21

SUBSET is matched without case and sent in lower case ("Train" becomes "train"); "none" or ""
clears the subset. Each task gets one PATCH with only the subset field. Tasks are updated in
parallel, so the PATCHes may reach CVAT in any order, but the results are printed in the order
given. Every task is tried even when others fail. With CVAT_ORG set, a task of another organization is
reported and left unchanged. Ctrl-C stops sending, waits up to INTERRUPT_WAIT seconds for the
calls already sent, and names the tasks that were changed.

Reads CVAT_URL, CVAT_ACCESS_TOKEN or CVAT_TOKEN, and CVAT_ORG (see cvat_common.py).
Exit codes: 0 all tasks updated, 1 any task failed, 2 bad usage or configuration (nothing
sent), 130 interrupted.
"""

import sys
import threading
from concurrent.futures import ThreadPoolExecutor, wait

from cvat_common import (
    ArgumentParser,
    CvatClient,
    CvatError,
    EXIT_INTERRUPTED,
    HttpError,
    UsageError,
    check_subset,
    load_config,
    log,
    organization_id_of,
    run,
)

# Tasks updated at the same time.
MAX_PARALLEL = 8
# Seconds to wait after Ctrl-C for the calls already sent, so the report can name what changed.
INTERRUPT_WAIT = 10


def parse_args(argv):
    parser = ArgumentParser(
        description="Set the subset of CVAT tasks to train, validation or test, or clear it with none."
    )
    parser.add_argument("subset", metavar="SUBSET", help="train, validation, test, or none to clear")
    parser.add_argument("task_ids", metavar="TASK_ID", nargs="+", help="ids of the tasks to move")
    args = parser.parse_args(argv)
    args.subset = check_subset(args.subset, allow_clear=True)
    args.task_ids = check_task_ids(args.task_ids)
    return args


def check_task_ids(values):
    """Return the task ids as ints, once each and in the given order, or raise UsageError."""
    ids = []
    for value in values:
        text = value.strip()
        if not text.isdigit() or not text.isascii() or int(text) < 1:
            raise UsageError(
                "invalid TASK_ID %r: task ids are positive integers separated by spaces, e.g. 19 17 14"
                % value
            )
        if int(text) not in ids:
            ids.append(int(text))
    return ids


def show_subset(subset):
    return "(none)" if not subset else subset


def find_organization_id(client, slug):
    """Return the id of the organization whose slug is CVAT_ORG, or raise CvatError."""
    organizations = client.list_all("/api/organizations", "looking up CVAT_ORG %r" % slug, params={"slug": slug})
    for organization in organizations:
        if organization.get("slug") == slug:
            return organization["id"]
    raise CvatError("CVAT_ORG is %r, but no organization with that slug is visible to this token: fix or unset it" % slug)


def update_task(client, task_id, subset, org_id, stop):
    """Read the task's current subset, then PATCH the new one; return a result dict.

    Nothing is sent once stop is set (Ctrl-C), and the PATCH is skipped when the task belongs
    to an organization other than org_id (CVAT_ORG) or the token was rejected.
    """
    result = {"id": task_id, "old": None, "error": None, "status": None, "read_status": None, "sent": False}
    if stop.is_set():
        return result
    try:
        task = client.get("/api/tasks/%d" % task_id, "reading task %d" % task_id)
        result["old"] = task.get("subset") or ""
    except HttpError as error:
        # The PATCH below reports the failure with its own status; the old subset stays unknown.
        result["read_status"] = error.status
        if error.status == 401:
            result["status"] = error.status
            result["error"] = error.message
            return result
    except CvatError as error:
        result["error"] = error.message
        return result

    if org_id is not None and result["read_status"] is None and organization_id_of(task) != org_id:
        result["error"] = "task %d belongs to organization id %s, not to CVAT_ORG %r: left unchanged" % (
            task_id,
            organization_id_of(task),
            client.config.org,
        )
        return result
    if stop.is_set():
        return result

    result["sent"] = True
    try:
        task = client.call(
            "PATCH",
            "/api/tasks/%d" % task_id,
            "setting the subset of task %d" % task_id,
            json_body={"subset": subset},
        )
        # CVAT returns the whole task; anything else means the change is not confirmed.
        if not isinstance(task, dict) or task.get("subset") != subset:
            result["error"] = "CVAT did not confirm the new subset of task %d: check it in CVAT" % task_id
    except HttpError as error:
        result["status"] = error.status
        result["error"] = describe_failure(task_id, error, result["read_status"], client.config.org)
    except CvatError as error:
        result["error"] = error.message
    return result


def describe_failure(task_id, error, read_status, org):
    """Return the per-task failure text for an HTTP error of the PATCH."""
    if error.status == 404:
        # CVAT also returns 404 when the X-Organization header names an unknown organization.
        return "task %d not found (HTTP 404: %s): check the id%s" % (
            task_id,
            error.server_message,
            " and CVAT_ORG" if org else "",
        )
    if error.status == 403 and read_status == 403:
        # Reading the task was forbidden too, so the token's write access is not the cause.
        return (
            "task %d is forbidden to this account (HTTP 403: %s): check the id and your role in "
            "the task's organization" % (task_id, error.server_message)
        )
    return error.message


def print_result(result, subset):
    if not result["sent"] and not result["error"]:
        log("#%d: not sent (interrupted)" % result["id"])
        return
    if result["error"]:
        log("#%d: failed: %s" % (result["id"], result["error"]))
        return
    old = "?" if result["old"] is None else show_subset(result["old"])
    same = " (unchanged)" if result["old"] == subset else ""
    sys.stdout.write("#%d: %s -> %s%s\n" % (result["id"], old, show_subset(subset), same))
    sys.stdout.flush()


def summarize_failures(results, token_variable):
    """Return the final error line naming the tasks that failed."""
    failed = [result for result in results if result["error"]]
    names = ", ".join(
        "#%d%s" % (result["id"], " (HTTP %d)" % result["status"] if result["status"] else "")
        for result in failed
    )
    message = "%d of %d tasks were not updated: %s" % (len(failed), len(results), names)
    if all(result["status"] == 401 for result in failed):
        message += "; CVAT rejected the token in %s: check that it is current" % token_variable
    elif len(failed) == len(results) and all(
        result["status"] == 403 and result["read_status"] is None for result in failed
    ):
        # Every task could be read but none changed: the usual sign of a read-only token.
        message += "; every update was forbidden, so the token may be read-only: use a personal access token with write access"
    return message


def main(argv=None):
    args = parse_args(argv)
    config = load_config()
    client = CvatClient(config)
    org_id = find_organization_id(client, config.org) if config.org else None

    stop = threading.Event()
    pool = ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(args.task_ids)))
    futures = [pool.submit(update_task, client, task_id, args.subset, org_id, stop) for task_id in args.task_ids]
    results = []
    try:
        for future in futures:
            results.append(future.result())
            if len(args.task_ids) > 1:
                print_result(results[-1], args.subset)
    except KeyboardInterrupt:
        raise CvatError(interrupted_message(futures, args.task_ids, stop), EXIT_INTERRUPTED)
    pool.shutdown()

    if len(results) == 1 and results[0]["error"]:
        raise CvatError("#%d: %s" % (results[0]["id"], results[0]["error"]))
    if len(results) == 1:
        print_result(results[0], args.subset)
    if any(result["error"] for result in results):
        raise CvatError(summarize_failures(results, config.token_variable))
    return 0


def interrupted_message(futures, task_ids, stop):
    """Stop sending, wait a little for the calls already sent, and return the line naming the tasks.

    The wait ends after INTERRUPT_WAIT seconds or at a second Ctrl-C; tasks whose call is still
    out then are named as unknown.
    """
    stop.set()
    try:
        wait(futures, timeout=INTERRUPT_WAIT)
    except KeyboardInterrupt:
        pass

    changed, failed, unsent, unknown = [], [], [], []
    for task_id, future in zip(task_ids, futures):
        if not future.done():
            unknown.append(str(task_id))
            continue
        result = future.result()
        if result["error"]:
            failed.append(str(task_id))
        elif result["sent"]:
            changed.append(str(task_id))
        else:
            unsent.append(str(task_id))

    message = "interrupted: changed tasks %s" % (" ".join(changed) or "none")
    if failed:
        message += "; failed %s" % " ".join(failed)
    if unknown:
        message += "; unknown %s (their calls were still out, check them in CVAT)" % " ".join(unknown)
    if unsent:
        message += "; not sent %s, run again with those ids" % " ".join(unsent)
    return message


if __name__ == "__main__":
    sys.exit(run(main))
