//! The image `scripts/image` packs (scripts/image_pack.py): the same
//! binary gives the same bytes and id, it holds exactly the binary, the
//! libraries it links, CA roots and the passwd entry of user 65532 (no
//! shell), and the binary runs from it as that user.
//!
//! It packs the test build of the binary: the release build `scripts/image`
//! packs differs only in size.

use std::path::{Path, PathBuf};
use std::process::Command;

fn pack(out: &Path) -> String {
    let output = Command::new("python3")
        .arg(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/scripts/image_pack.py"
        ))
        .args(["--binary", env!("CARGO_BIN_EXE_metastudio-operator")])
        .args([
            "--name",
            "localhost/metastudio-operator:test",
            "--quiet",
            "--out",
        ])
        .arg(out)
        .output()
        .expect("python3 runs");
    assert!(
        output.status.success(),
        "image_pack.py failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap().trim().to_owned()
}

fn tar(args: &[&str], dir: &Path) -> String {
    let output = Command::new("tar")
        .args(args)
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(output.status.success(), "tar {args:?}: {output:?}");
    String::from_utf8(output.stdout).unwrap()
}

/// The archive's manifest and config, and the layer unpacked into `root`.
fn unpack(archive: &Path, dir: &Path) -> (serde_json::Value, serde_json::Value, PathBuf) {
    tar(&["xf", archive.to_str().unwrap()], dir);
    let read = |name: &str| -> serde_json::Value {
        serde_json::from_slice(&std::fs::read(dir.join(name)).unwrap()).unwrap()
    };
    let manifest = read("manifest.json");
    let config = read(manifest[0]["Config"].as_str().unwrap());
    let root = dir.join("root");
    std::fs::create_dir(&root).unwrap();
    let layer = dir.join(manifest[0]["Layers"][0].as_str().unwrap());
    tar(&["xf", layer.to_str().unwrap()], &root);
    (manifest, config, root)
}

#[test]
fn the_same_binary_packs_into_the_same_image() {
    let dir = tempfile::tempdir().unwrap();
    let (a, b) = (dir.path().join("a.tar"), dir.path().join("b.tar"));
    let first = pack(&a);
    let second = pack(&b);
    assert!(first.starts_with("sha256:"), "{first}");
    assert_eq!(first, second, "same inputs, same image id");
    assert_eq!(
        std::fs::read(&a).unwrap(),
        std::fs::read(&b).unwrap(),
        "same inputs, same archive bytes"
    );
}

#[test]
fn the_image_holds_the_binary_its_libraries_ca_roots_and_user_65532_only() {
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    let id = pack(&archive);
    let (manifest, config, root) = unpack(&archive, dir.path());
    assert_eq!(
        manifest[0]["RepoTags"][0],
        "localhost/metastudio-operator:test"
    );
    assert_eq!(
        format!(
            "sha256:{}",
            manifest[0]["Config"]
                .as_str()
                .unwrap()
                .trim_end_matches(".json")
        ),
        id
    );
    let run = &config["config"];
    assert_eq!(run["User"], "65532:65532");
    assert_eq!(
        run["Entrypoint"],
        serde_json::json!(["/metastudio-operator"])
    );
    assert_eq!(run["Cmd"], serde_json::json!(["run"]));
    assert!(run["ExposedPorts"].get("8080/tcp").is_some());

    let layer = dir.path().join(manifest[0]["Layers"][0].as_str().unwrap());
    let listed = tar(&["tf", layer.to_str().unwrap()], dir.path());
    let files: Vec<&str> = listed.lines().filter(|l| !l.ends_with('/')).collect();
    let libraries: Vec<&&str> = files.iter().filter(|f| f.contains(".so")).collect();
    assert!(
        libraries.iter().any(|l| l.ends_with("libc.so.6")) || libraries.is_empty(),
        "a dynamic binary brings its libc: {files:?}"
    );
    let others: Vec<&&str> = files.iter().filter(|f| !f.contains(".so")).collect();
    assert_eq!(
        others,
        [
            &"etc/group",
            &"etc/passwd",
            &"etc/ssl/certs/ca-certificates.crt",
            &"metastudio-operator"
        ],
        "nothing but the binary, its libraries, CA roots and the user: {files:?}"
    );
    assert!(!root.join("bin/sh").exists(), "no shell");
    let passwd = std::fs::read_to_string(root.join("etc/passwd")).unwrap();
    assert!(passwd.contains("nonroot:x:65532:65532:"), "{passwd}");
}

/// The binary starts from the image's files alone, as user 65532: the
/// libraries `ldd` named are all it needs. Needs root for `chroot`.
#[test]
fn the_binary_runs_from_the_image_as_user_65532() {
    if !is_root() {
        eprintln!("skipped: chroot needs root (CI runs as root)");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let archive = dir.path().join("image.tar");
    pack(&archive);
    let (_, _, root) = unpack(&archive, dir.path());
    let output = Command::new("chroot")
        .args(["--userspec=65532:65532"])
        .arg(&root)
        .args(["/metastudio-operator", "--version"])
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap_or_default())
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "the binary did not start from the image: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).starts_with("metastudio-operator "));
}

fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines()
            .find(|l| l.starts_with("Uid:"))
            .is_some_and(|l| l.split_whitespace().nth(1) == Some("0"))
    })
}
