#!/usr/bin/env python3
"""The official Huawei Cloud Python SDK's side of `cargo bench --bench
converge -- --sdk`: converges the same fleet the operator does. Each robot's
codes are listed (all pages) and every code whose valid_period differs from
the desired one is updated, SDK_THREADS robots at a time, with the SDK's
own retries on (HttpConfig.retry_times: 429 with Retry-After and connection
errors). Prints one JSON line: wall time and what failed. The simulator's
counters, read by the bench, give the calls and the 429s.

Environment: SDK_ENDPOINT, SDK_PROJECT_ID, SDK_AK, SDK_SK, SDK_ROBOTS
(comma-separated), SDK_DESIRED_DAYS, SDK_THREADS, SDK_RETRIES.
"""

import json
import os
import sys
import time
from concurrent.futures import ThreadPoolExecutor

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkcore.http.http_config import HttpConfig
from huaweicloudsdkmetastudio.v1 import (
    ListActiveCodeRequest,
    MetaStudioClient,
    UpdateActiveCodeReq,
    UpdateActiveCodeRequest,
)

PAGE = 100


def client():
    config = HttpConfig.get_default_config()
    config.retry_times = int(os.environ["SDK_RETRIES"])
    config.pool_maxsize = int(os.environ["SDK_THREADS"])
    credentials = BasicCredentials(os.environ["SDK_AK"], os.environ["SDK_SK"], os.environ["SDK_PROJECT_ID"])
    return MetaStudioClient.new_builder() \
        .with_http_config(config) \
        .with_credentials(credentials) \
        .with_endpoints([os.environ["SDK_ENDPOINT"]]) \
        .build()


def converge(sdk, robot, desired):
    """Returns the updates that failed; raises when the listing fails."""
    codes, offset = [], 0
    while True:
        page = sdk.list_active_code(ListActiveCodeRequest(robot_id=robot, offset=offset, limit=PAGE))
        codes.extend(page.data or [])
        offset += PAGE
        if offset >= (page.count or 0):
            break
    failed = 0
    for code in codes:
        if code.valid_period == desired:
            continue
        request = UpdateActiveCodeRequest(
            active_code_id=code.active_code_id, body=UpdateActiveCodeReq(valid_period=desired))
        try:
            sdk.update_active_code(request)
        except exceptions.SdkException:
            failed += 1
    return failed


def main():
    sdk = client()
    robots = os.environ["SDK_ROBOTS"].split(",")
    desired = int(os.environ["SDK_DESIRED_DAYS"])

    def one(robot):
        try:
            return converge(sdk, robot, desired), 0
        except exceptions.SdkException:
            return 0, 1

    started = time.monotonic()
    with ThreadPoolExecutor(max_workers=int(os.environ["SDK_THREADS"])) as pool:
        results = list(pool.map(one, robots))
    wall = time.monotonic() - started
    print(json.dumps({
        "wall_secs": wall,
        "failed_updates": sum(r[0] for r in results),
        "failed_robots": sum(r[1] for r in results),
    }))
    return 0


if __name__ == "__main__":
    sys.exit(main())
