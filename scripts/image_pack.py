#!/usr/bin/env python3
"""Packs the operator's binary into a minimal container image, without
Docker or a registry: a docker-archive tarball (`docker load`,
`ctr images import`, `kind load image-archive`, `k3d image import`).

The image holds exactly what the binary needs to run as the chart runs it:

- /metastudio-operator, the binary (ENTRYPOINT, CMD ["run"]);
- the shared libraries `ldd` names for it, and its program interpreter,
  copied from this machine at the paths the loader looks for them;
- /etc/ssl/certs/ca-certificates.crt, the CA roots for https to MetaStudio;
- /etc/passwd and /etc/group with the unprivileged user 65532 (`nonroot`),
  its home /home/nonroot, and /tmp (the chart mounts an emptyDir there);
- no shell, no package manager, nothing else.

The same inputs give the same bytes, hence the same digest: entries are
sorted, every time stamp is the epoch, owners are numeric, and the config
carries no build time. The Dockerfile builds the same layout on distroless
(user, entrypoint, command, ports, paths); scripts/chart_check.py compares
the two through the constants below.
"""

import argparse
import os
import re
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import docker_archive  # noqa: E402  (the writer the pause image uses too)

# The layout the Dockerfile's final stage has too.
BINARY = "/metastudio-operator"
USER = "65532:65532"
ENTRYPOINT = [BINARY]
CMD = ["run"]
EXPOSED_PORTS = ["8080/tcp"]
CA_BUNDLE = "/etc/ssl/certs/ca-certificates.crt"
LABELS = {
    "org.opencontainers.image.title": "metastudio-operator",
    "org.opencontainers.image.description":
        "Keeps Huawei Cloud MetaStudio activation codes as ActivationCode resources declare",
    "org.opencontainers.image.licenses": "Apache-2.0",
}
ENV = [
    "PATH=/usr/local/bin:/usr/bin:/bin",
    f"SSL_CERT_FILE={CA_BUNDLE}",
]

NONROOT = 65532
PASSWD = "root:x:0:0:root:/root:/sbin/nologin\nnonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin\n"
GROUP = "root:x:0:\nnonroot:x:65532:\n"


class PackError(Exception):
    pass


def shared_libraries(binary):
    """The files the loader maps for `binary`, as `ldd` names them: the
    libraries and the program interpreter; empty for a static binary."""
    result = subprocess.run(["ldd", binary], capture_output=True, text=True)
    text = result.stdout + result.stderr
    if "not a dynamic executable" in text or "statically linked" in text:
        return []
    if result.returncode != 0:
        raise PackError(f"ldd {binary} failed: {text.strip()}")
    paths = []
    for line in result.stdout.splitlines():
        line = line.strip()
        if "not found" in line:
            raise PackError(f"{binary} needs a library this machine lacks: {line}")
        match = re.match(r"^(?:\S+ => )?(/\S+) \(0x[0-9a-f]+\)$", line)
        if match:
            paths.append(match.group(1))
        elif "=>" in line or line.startswith("/"):
            raise PackError(f"cannot read this ldd line: {line!r}")
        # linux-vdso.so.1 and the like live in the kernel: nothing to copy.
    return sorted(set(paths))


class Entry:
    """One entry of the layer: a directory or a regular file."""

    def __init__(self, path, mode, uid=0, data=None):
        self.path = path.strip("/")
        self.mode = mode
        self.uid = uid
        self.data = data

    @property
    def is_dir(self):
        return self.data is None


def read(path):
    with open(path, "rb") as f:
        return f.read()


def entries(binary, libraries, ca_bundle):
    files = [
        Entry(BINARY, 0o755, data=read(binary)),
        Entry("/etc/passwd", 0o644, data=PASSWD.encode()),
        Entry("/etc/group", 0o644, data=GROUP.encode()),
        Entry(CA_BUNDLE, 0o644, data=read(ca_bundle)),
    ]
    # Copied by content (symlinks followed) to the path the loader asks for.
    files += [Entry(lib, 0o755, data=read(lib)) for lib in libraries]
    dirs = {
        "home/nonroot": Entry("/home/nonroot", 0o700, uid=NONROOT),
        "tmp": Entry("/tmp", 0o1777),
    }
    for entry in files + list(dirs.values()):
        parent = os.path.dirname(entry.path)
        while parent and parent not in dirs:
            dirs[parent] = Entry(parent, 0o755)
            parent = os.path.dirname(parent)
    return sorted(files + list(dirs.values()), key=lambda e: e.path)


def layer(entries_):
    return docker_archive.tar_bytes(
        (e.path + ("/" if e.is_dir else ""), e.data, e.mode, e.uid) for e in entries_
    )


def runtime_config():
    return {
        "User": USER,
        "Entrypoint": ENTRYPOINT,
        "Cmd": CMD,
        "ExposedPorts": {port: {} for port in EXPOSED_PORTS},
        "Env": ENV,
        "WorkingDir": "/",
        "Labels": LABELS,
    }


def describe(entries_, image_id, name, archive_size, out):
    owner = lambda e: "nonroot" if e.uid == NONROOT else "root"
    lines = [f"image {name}", f"  id      {image_id}", f"  archive {out} ({archive_size / 1048576:.1f} MiB)"]
    lines.append(f"  user {USER}, entrypoint {ENTRYPOINT}, cmd {CMD}, ports {EXPOSED_PORTS}")
    lines.append("  contents:")
    for e in entries_:
        size = "dir" if e.is_dir else f"{len(e.data):>10,} B"
        lines.append(f"    {oct(e.mode)[2:]:>5} {owner(e):<8} {size:>14}  /{e.path}")
    total = sum(len(e.data) for e in entries_ if not e.is_dir)
    lines.append(f"  files total {total / 1048576:.1f} MiB")
    return "\n".join(lines)


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--binary", required=True, help="the metastudio-operator binary to pack")
    parser.add_argument("--name", required=True, help="the image reference, e.g. localhost/metastudio-operator:0.1.0")
    parser.add_argument("--out", required=True, help="where to write the docker-archive tarball")
    parser.add_argument("--ca-bundle", default=CA_BUNDLE, help="the CA roots to copy (default: this machine's)")
    parser.add_argument("--quiet", action="store_true", help="print only the image id")
    args = parser.parse_args()
    try:
        for path in (args.binary, args.ca_bundle):
            if not os.path.isfile(path):
                raise PackError(f"{path} does not exist")
        contents = entries(args.binary, shared_libraries(args.binary), args.ca_bundle)
    except PackError as err:
        sys.exit(f"image_pack: {err}")
    archive, image_id = docker_archive.archive(args.name, layer(contents), runtime_config(), "scripts/image")
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    tmp = args.out + ".tmp"
    with open(tmp, "wb") as f:
        f.write(archive)
    os.replace(tmp, args.out)
    print(image_id if args.quiet else describe(contents, image_id, args.name, len(archive), args.out))


if __name__ == "__main__":
    main()
