#!/usr/bin/env python3
"""Writes request-signing test vectors with the official Huawei Cloud SDK's signer.

The Rust signer (src/metastudio/signer.rs) is tested byte for byte against
the JSON this prints (tests/data/signer_vectors.json). Regenerate with

    python3 scripts/signer_vectors.py > tests/data/signer_vectors.json

CI regenerates it with the pinned SDK and fails when it differs from the
committed file, so the vectors always come from the SDK, never from us.
"""

import copy
import json
import sys
from importlib.metadata import version

from huaweicloudsdkcore.sdk_request import SdkRequest
from huaweicloudsdkcore.signer.signer import Signer

AK = "HPUAEXAMPLEACCESSKEY"
SK = "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY"
DATE = "20261122T133000Z"
PROJECT = "70b76e1c2d3f4a253880af501cd1a2b3"
ROBOT = "4d54c0ffee446249aa00bb11cc226526"
CODE = "39b9cedccec1f19b33d8f7ce1a6d35b9"
BASE = "/v1/%s/digital-human-chat" % PROJECT
UA = "metastudio-operator/0.1.0"


class Credentials:
    ak = AK
    sk = SK


def headers(**extra):
    h = {
        "Content-Type": "application/json",
        "User-Agent": UA,
        "X-Project-Id": PROJECT,
        "X-Sdk-Date": DATE,
    }
    h.update({k.replace("__", "-"): v for k, v in extra.items()})
    return h


CASES = [
    ("list first page", "GET", "metastudio.cn-north-4.myhuaweicloud.com", BASE + "/active-code",
     [("offset", 0), ("limit", 100), ("robot_id", ROBOT)], headers(), None),
    ("list a later page, parameters unsorted", "GET", "metastudio.cn-north-4.myhuaweicloud.com",
     BASE + "/active-code", [("robot_id", ROBOT), ("offset", 200), ("limit", 100)], headers(), None),
    ("query values with space plus slash tilde", "GET", "metastudio.cn-north-4.myhuaweicloud.com",
     BASE + "/active-code", [("robot_id", "a b+c/d~e"), ("offset", 0), ("limit", 1)], headers(), None),
    ("query values non-ascii and reserved", "GET", "metastudio.cn-north-4.myhuaweicloud.com",
     BASE + "/active-code", [("robot_id", "机器人-é*'()!=&?#"), ("limit", 10)], headers(), None),
    ("query keys sorted, equal keys sorted by value", "GET", "metastudio.ap-southeast-1.myhuaweicloud.com",
     BASE + "/active-code", [("z", "1"), ("a", "b"), ("a", "a"), ("m", "")], headers(), None),
    ("show with endpoint port", "GET", "127.0.0.1:8443", BASE + "/active-code/" + CODE, [], headers(), None),
    ("update PUT with json body", "PUT", "metastudio.cn-north-4.myhuaweicloud.com",
     BASE + "/active-code/" + CODE, [], headers(), json.dumps({"valid_period": 10})),
    ("reset PUT with no body", "PUT", "metastudio.cn-north-4.myhuaweicloud.com",
     BASE + "/active-code/" + CODE + "/reset", [], headers(), None),
    ("reset PUT keeping credentials", "PUT", "metastudio.cn-north-4.myhuaweicloud.com",
     BASE + "/active-code/" + CODE + "/reset", [], headers(), json.dumps({"clean_auth_credential": False})),
    ("once-code POST with no body", "POST", "metastudio.cn-north-4.myhuaweicloud.com",
     BASE + "/once-code", [], headers(), None),
    ("create POST with body", "POST", "metastudio.cn-north-4.myhuaweicloud.com", BASE + "/active-code", [],
     headers(), json.dumps({"robot_id": ROBOT, "valid_period": 3})),
    ("delete POST with array body", "POST", "metastudio.cn-north-4.myhuaweicloud.com",
     BASE + "/active-code/delete", [], headers(), json.dumps([CODE, "abc"])),
    ("with X-App-UserId", "PUT", "metastudio.cn-north-4.myhuaweicloud.com", BASE + "/active-code/" + CODE, [],
     headers(X__App__UserId="kiosk-user-42"), json.dumps({"valid_period": 0})),
    ("with security token", "GET", "metastudio.cn-north-4.myhuaweicloud.com", BASE + "/active-code",
     [("robot_id", ROBOT)], headers(X__Security__Token="gQpjbi1ub3J0aC00jW+temporary/token=="), None),
    ("with X-App-UserId and security token", "POST", "metastudio.cn-north-4.myhuaweicloud.com",
     BASE + "/once-code", [], headers(X__App__UserId="u1", X__Security__Token="tok+/="), None),
    ("header with underscore is not signed, values trimmed", "GET", "metastudio.cn-north-4.myhuaweicloud.com",
     BASE + "/active-code", [("robot_id", ROBOT)], dict(headers(), **{"X_Trace_Id": "t1", "X-App-UserId": "  padded  "}),
     None),
    ("path segment needing escape", "GET", "metastudio.cn-north-4.myhuaweicloud.com",
     BASE + "/active-code/a%20b%2Bc", [], headers(), None),
    ("body with non-ascii", "POST", "metastudio.cn-north-4.myhuaweicloud.com", BASE + "/active-code", [],
     headers(), json.dumps({"robot_id": "é"}, ensure_ascii=False)),
]


def vector(name, method, host, path, query, header_params, body):
    request = SdkRequest(method=method, schema="https", host=host, resource_path=path,
                         query_params=copy.deepcopy(query), header_params=dict(header_params), body=body)
    probe = copy.deepcopy(request)
    signer = Signer(Credentials())
    signed = signer.sign(request)

    # Recompute the intermediate strings with the SDK's own steps, on a copy
    # in the state the signer saw (Host added, body as bytes).
    if isinstance(probe.body, str):
        probe.body = probe.body.encode("utf-8")
    probe.header_params["Host"] = host
    names = signer._process_signed_headers(probe)
    canonical = signer._process_canonical_request(probe, names)
    sdk_date = signer._process_header_time(probe)
    to_sign = signer._process_string_to_sign(canonical, sdk_date)

    sent = {k: v for k, v in header_params.items()}
    sent["Host"] = host
    return {
        "name": name,
        "method": method,
        "path": path,
        "query": [[k, str(v).lower() if isinstance(v, bool) else str(v)] for k, v in query],
        "headers": [[k, v] for k, v in sent.items()],
        "body": body or "",
        "expected": {
            "canonical_request": canonical,
            "string_to_sign": to_sign,
            "authorization": signed.header_params["Authorization"],
            "uri": signed.uri,
        },
    }


def main():
    out = {
        "generator": "huaweicloudsdkcore %s Signer (SDK-HMAC-SHA256)" % version("huaweicloudsdkcore"),
        "access_key": AK,
        "secret_key": SK,
        "vectors": [vector(*case) for case in CASES],
    }
    json.dump(out, sys.stdout, indent=2, ensure_ascii=False)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
