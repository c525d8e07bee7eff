#!/usr/bin/env python3
"""Packs files into a one-layer image tarball in the docker-archive format
(what `docker save` writes), without Docker and without a registry.

  scripts/docker_archive.py --tag NAME:TAG --entrypoint PATH [--user UID:GID]
                         [--env KEY=VALUE]... -o OUT.tar SRC:DEST [SRC:DEST ...]

Each SRC file lands at the absolute path DEST in the image, owned by root,
mode 0755 if SRC is executable and 0644 otherwise. The archive is
deterministic: fixed mtimes, owners and member order, so the same inputs give
the same bytes and the same image ID, which it prints (sha256:...).

Load it with `ctr -n k8s.io images import OUT.tar` (scripts/control-plane's
node exports CONTROL_PLANE_LOAD_IMAGE for that), `docker load` or
`kind load image-archive`.

As a module it is the writer behind scripts/image_pack.py (the operator's
image) too: `tar_bytes` and `archive`.
"""

import argparse
import hashlib
import io
import json
import os
import platform
import sys
import tarfile

ARCHITECTURES = {"x86_64": "amd64", "aarch64": "arm64"}


def add(archive, name, data=None, mode=0o644, uid=0):
    """Adds a regular file (or, without data, a directory) with fixed metadata."""
    info = tarfile.TarInfo(name)
    info.mtime = 0
    info.uid = info.gid = uid
    info.uname = info.gname = ""
    info.mode = mode
    if data is None:
        info.type = tarfile.DIRTYPE
        archive.addfile(info)
    else:
        info.size = len(data)
        archive.addfile(info, io.BytesIO(data))


def tar_bytes(members):
    """A tar (USTAR) of members: (name, data or None for a directory, mode[,
    uid]), byte for byte the same for the same members."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w", format=tarfile.USTAR_FORMAT) as archive:
        for member in members:
            add(archive, *member)
    return buffer.getvalue()


def layer(files):
    """The layer tar: every DEST with its parent directories, sorted."""
    members = {}
    for source, dest in files:
        parts = dest.strip("/").split("/")
        for depth in range(1, len(parts)):
            members["/".join(parts[:depth]) + "/"] = (None, 0o755)
        with open(source, "rb") as f:
            data = f.read()
        members["/".join(parts)] = (data, 0o755 if os.access(source, os.X_OK) else 0o644)
    return tar_bytes((name, data, mode) for name, (data, mode) in sorted(members.items()))


def image_config(layer_digest, runtime, created_by):
    """The image config of one layer; `runtime` is its `config` (Entrypoint,
    User, Env, ...). No build time in it: the same layer, the same id."""
    return {
        "architecture": ARCHITECTURES.get(platform.machine(), platform.machine()),
        "os": "linux",
        "config": runtime,
        "rootfs": {"type": "layers", "diff_ids": ["sha256:" + layer_digest]},
        "history": [{"created_by": created_by}],
    }


def canonical(value):
    return json.dumps(value, sort_keys=True, separators=(",", ":")).encode()


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", required=True, help="image name, e.g. localhost/pause:3.4")
    parser.add_argument("--entrypoint", required=True, action="append", help="repeat for arguments")
    parser.add_argument("--user", help="UID:GID the image runs as")
    parser.add_argument("--env", action="append", default=[], help="KEY=VALUE")
    parser.add_argument("-o", "--output", required=True)
    parser.add_argument("files", nargs="+", metavar="SRC:DEST")
    args = parser.parse_args()
    files = []
    for spec in args.files:
        source, sep, dest = spec.rpartition(":")
        if not sep or not source or not dest.startswith("/"):
            parser.error(f"{spec!r}: expected SRC:DEST with an absolute DEST, e.g. bin/pause:/pause")
        if not os.path.isfile(source):
            parser.error(f"{spec!r}: {source} is not a file")
        files.append((source, dest))
    return args, files


def archive(tag, layer_tar, runtime, created_by):
    """The docker-archive tarball of a one-layer image, and the image id
    (sha256:<digest of its config>, what `crictl images` shows)."""
    layer_digest = hashlib.sha256(layer_tar).hexdigest()
    config = canonical(image_config(layer_digest, runtime, created_by))
    config_digest = hashlib.sha256(config).hexdigest()
    manifest = canonical(
        [{"Config": config_digest + ".json", "RepoTags": [tag], "Layers": [layer_digest + "/layer.tar"]}]
    )
    tarball = tar_bytes(
        [
            (layer_digest + "/", None, 0o755),
            (layer_digest + "/layer.tar", layer_tar, 0o644),
            (config_digest + ".json", config, 0o644),
            ("manifest.json", manifest, 0o644),
        ]
    )
    return tarball, "sha256:" + config_digest


def main():
    args, files = parse_args()
    runtime = {"Entrypoint": args.entrypoint, "WorkingDir": "/"}
    if args.env:
        runtime["Env"] = args.env
    if args.user:
        runtime["User"] = args.user
    tarball, image_id = archive(args.tag, layer(files), runtime, "scripts/docker_archive.py")
    with open(args.output, "wb") as f:
        f.write(tarball)
    print(image_id)


if __name__ == "__main__":
    sys.exit(main())
