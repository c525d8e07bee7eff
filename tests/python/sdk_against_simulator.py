#!/usr/bin/env python3
"""Drives the simulator with the official Huawei Cloud Python SDK.

Run by tests/python_sdk.rs with SIM_ENDPOINT, SIM_PROJECT_ID, SIM_AK, SIM_SK
and SIM_ROBOT set. With the right keys, list, update, reset and once-code
must succeed; with a wrong SK each must get 401. Prints one JSON line of
results and exits non-zero on any surprise.
"""

import json
import os
import sys

from huaweicloudsdkcore.auth.credentials import BasicCredentials
from huaweicloudsdkcore.exceptions import exceptions
from huaweicloudsdkmetastudio.v1 import (
    CreateOnceCodeRequest,
    ListActiveCodeRequest,
    MetaStudioClient,
    ResetActiveCodeReq,
    ResetActiveCodeRequest,
    UpdateActiveCodeReq,
    UpdateActiveCodeRequest,
)


def client(sk):
    credentials = BasicCredentials(os.environ["SIM_AK"], sk, os.environ["SIM_PROJECT_ID"])
    return MetaStudioClient.new_builder() \
        .with_credentials(credentials) \
        .with_endpoints([os.environ["SIM_ENDPOINT"]]) \
        .build()


def calls(c, code_id):
    robot = os.environ["SIM_ROBOT"]
    return [
        ("list", lambda: c.list_active_code(ListActiveCodeRequest(robot_id=robot, offset=0, limit=100))),
        ("update", lambda: c.update_active_code(
            UpdateActiveCodeRequest(active_code_id=code_id, body=UpdateActiveCodeReq(valid_period=10)))),
        ("reset", lambda: c.reset_active_code(
            ResetActiveCodeRequest(active_code_id=code_id, body=ResetActiveCodeReq(clean_auth_credential=True)))),
        ("once-code", lambda: c.create_once_code(CreateOnceCodeRequest())),
    ]


def main():
    good = client(os.environ["SIM_SK"])
    listed = good.list_active_code(ListActiveCodeRequest(robot_id=os.environ["SIM_ROBOT"], limit=100))
    code = listed.data[0]
    results = {"listed": listed.count, "ok": {}, "wrong_sk": {}}

    for name, call in calls(good, code.active_code_id):
        response = call()
        results["ok"][name] = response.x_request_id is not None
    results["updated_valid_period"] = good.list_active_code(
        ListActiveCodeRequest(robot_id=os.environ["SIM_ROBOT"], limit=100)).data[0].valid_period

    bad = client(os.environ["SIM_SK"] + "-wrong")
    for name, call in calls(bad, code.active_code_id):
        try:
            call()
            results["wrong_sk"][name] = "accepted"
        except exceptions.ClientRequestException as e:
            results["wrong_sk"][name] = "%s %s" % (e.status_code, e.error_code)

    print(json.dumps(results, sort_keys=True))
    ok = all(results["ok"].values()) and len(results["ok"]) == 4 \
        and all(v == "401 APIGW.0301" for v in results["wrong_sk"].values()) and len(results["wrong_sk"]) == 4
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
