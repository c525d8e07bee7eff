//! Export Secrets as manifest files: `DIR/{namespace}/{name}.yaml`, one
//! directory per namespace, so Secrets of different namespaces never share
//! a file (namespace `a-b` with Secret `c` and namespace `a` with Secret
//! `b-c` land in `a-b/c.yaml` and `a/b-c.yaml`).
//!
//! A file is replaced atomically: the manifest goes to a new temporary file
//! beside it (created exclusively, mode 0600), is fsynced and renamed over
//! the target. A reader sees the old manifest or the new one, never part of
//! one, and the file is 0600 even where a wider one stood before. A failed
//! write removes its temporary file. Directories the export creates are
//! 0700.
//!
//! Symbolic links: below DIR the export never writes through one. A link in
//! place of `DIR/{namespace}` or of the file itself is refused with an error
//! naming it, and nothing is written. DIR itself may be a link and is
//! followed: it is the directory the user named with `--export-dir` (say a
//! link to a mounted volume), so following it is what they asked for. The
//! checks catch links left in the directory; they do not defend against a
//! process that swaps entries while the export runs, as whoever can write
//! DIR can replace the exports anyway.

use std::fs::{DirBuilder, File, Metadata, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};

/// Why an export file could not be written. Names paths, never values.
#[derive(Debug, thiserror::Error)]
pub enum ExportFileError {
    #[error(
        "{what} `{name}` is not a single file name (it is empty, `.` or `..`, or holds a path separator): give it a DNS name such as `lobby-codes`"
    )]
    Name { what: &'static str, name: String },
    #[error(
        "{} is a symbolic link: remove the symbolic link (exports are never written through one), then run again",
        path.display()
    )]
    Symlink { path: PathBuf },
    #[error(
        "{} is not a directory: move it out of the export directory, then run again",
        path.display()
    )]
    NotADirectory { path: PathBuf },
    #[error("cannot {step} {}: {source}", path.display())]
    Io {
        step: &'static str,
        path: PathBuf,
        source: std::io::Error,
    },
}

impl ExportFileError {
    fn io(step: &'static str, path: &Path, source: std::io::Error) -> Self {
        Self::Io {
            step,
            path: path.to_owned(),
            source,
        }
    }
}

/// Writes `contents` to `dir/{namespace}/{name}.yaml`, replacing the file
/// atomically, readable by its owner only.
pub fn write(
    dir: &Path,
    namespace: &str,
    name: &str,
    contents: &[u8],
) -> Result<(), ExportFileError> {
    check_name("namespace", namespace)?;
    check_name("Secret name", name)?;
    create_root(dir)?;
    let namespace_dir = dir.join(namespace);
    let handle = open_namespace_dir(&namespace_dir)?;
    let target = namespace_dir.join(format!("{name}.yaml"));
    // A link in place of the file is refused (the rename would replace it).
    entry(&target)?;
    replace(&namespace_dir, &target, contents)?;
    // Best effort, as for the status file: some file systems refuse fsync
    // on a directory, and the file itself is synced.
    if let Some(handle) = handle {
        let _ = handle.sync_all();
    }
    Ok(())
}

/// Refuses a name that is not one path component. Namespaces and Secret
/// names are validated as DNS names before they get here; this is the
/// last line.
fn check_name(what: &'static str, name: &str) -> Result<(), ExportFileError> {
    if name.is_empty() || name == "." || name == ".." || name.chars().any(std::path::is_separator) {
        return Err(ExportFileError::Name {
            what,
            name: name.to_owned(),
        });
    }
    Ok(())
}

/// Creates DIR and its missing parents (0700). DIR may be a symbolic link
/// (see the module documentation).
fn create_root(dir: &Path) -> Result<(), ExportFileError> {
    let mut builder = DirBuilder::new();
    builder.recursive(true);
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    builder
        .create(dir)
        .map_err(|source| ExportFileError::io("create directory", dir, source))
}

/// What is at `path`, without following a symbolic link: `None` when
/// nothing is, an error when a link is.
fn entry(path: &Path) -> Result<Option<Metadata>, ExportFileError> {
    match std::fs::symlink_metadata(path) {
        Ok(meta) if meta.file_type().is_symlink() => Err(ExportFileError::Symlink {
            path: path.to_owned(),
        }),
        Ok(meta) => Ok(Some(meta)),
        Err(err) if err.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(source) => Err(ExportFileError::io("inspect", path, source)),
    }
}

/// `DIR/{namespace}`, created (0700) when missing and refused when it is a
/// link or no directory; opened without following a link, to be fsynced
/// once the file is renamed into it.
fn open_namespace_dir(path: &Path) -> Result<Option<File>, ExportFileError> {
    if entry(path)?.is_none() {
        create_private_dir(path)?;
    }
    match entry(path)? {
        Some(meta) if meta.is_dir() => open_dir(path),
        _ => Err(ExportFileError::NotADirectory {
            path: path.to_owned(),
        }),
    }
}

/// Creates one directory, 0700; one that appeared meanwhile (another
/// export into the same namespace) is checked by the caller.
fn create_private_dir(path: &Path) -> Result<(), ExportFileError> {
    let mut builder = DirBuilder::new();
    #[cfg(unix)]
    std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
    match builder.create(path) {
        Err(err) if err.kind() != std::io::ErrorKind::AlreadyExists => {
            Err(ExportFileError::io("create directory", path, err))
        }
        _ => Ok(()),
    }
}

/// Opens a directory with O_NOFOLLOW | O_DIRECTORY: a link put in its
/// place since it was inspected is refused, not followed.
#[cfg(unix)]
fn open_dir(path: &Path) -> Result<Option<File>, ExportFileError> {
    use std::os::unix::fs::OpenOptionsExt;
    OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_DIRECTORY)
        .open(path)
        .map(Some)
        .map_err(|source| match entry(path) {
            Err(refused) => refused,
            Ok(_) => ExportFileError::io("open directory", path, source),
        })
}

/// Elsewhere a directory cannot be opened as a file: the inspection is
/// the only check, and nothing is fsynced.
#[cfg(not(unix))]
fn open_dir(_path: &Path) -> Result<Option<File>, ExportFileError> {
    Ok(None)
}

/// Writes `contents` to a new temporary file in `dir`, fsyncs it and
/// renames it over `target`; removes the temporary file on failure.
fn replace(dir: &Path, target: &Path, contents: &[u8]) -> Result<(), ExportFileError> {
    let (file, temp) = create_temp(dir, target)?;
    let replaced = fill(file, contents)
        .map_err(|source| ExportFileError::io("write", &temp, source))
        .and_then(|()| {
            std::fs::rename(&temp, target)
                .map_err(|source| ExportFileError::io("replace", target, source))
        });
    if replaced.is_err() {
        let _ = std::fs::remove_file(&temp);
    }
    replaced
}

/// A new file `.{target's name}.{random}.tmp` in `dir`, mode 0600, created
/// exclusively (O_EXCL): never an existing file, never through a link. The
/// name ends in `.tmp` so `kubectl apply -f` skips one left by a kill.
fn create_temp(dir: &Path, target: &Path) -> Result<(File, PathBuf), ExportFileError> {
    let name = target.file_name().unwrap_or_default().to_string_lossy();
    let temp = dir.join(format!(".{name}.{:016x}.tmp", rand::random::<u64>()));
    let mut options = OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    let file = options
        .open(&temp)
        .map_err(|source| ExportFileError::io("create", &temp, source))?;
    Ok((file, temp))
}

fn fill(mut file: File, contents: &[u8]) -> std::io::Result<()> {
    file.write_all(contents)?;
    file.sync_all()
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The names in `dir`, sorted.
    fn names(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn names_that_used_to_collide_land_in_different_files() {
        let dir = tempfile::tempdir().unwrap();
        write(dir.path(), "a-b", "c", b"first").unwrap();
        write(dir.path(), "a", "b-c", b"second").unwrap();
        let read = |path: &str| std::fs::read_to_string(dir.path().join(path)).unwrap();
        assert_eq!(read("a-b/c.yaml"), "first");
        assert_eq!(read("a/b-c.yaml"), "second");
        assert_eq!(names(dir.path()), ["a", "a-b"]);
    }

    #[test]
    fn a_missing_export_directory_is_created_with_its_parents() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("out/exports");
        write(&root, "team", "codes", b"x").unwrap();
        assert_eq!(names(&root.join("team")), ["codes.yaml"]);
    }

    #[cfg(unix)]
    #[test]
    fn the_file_is_0600_over_an_older_0644_one_and_a_new_directory_0700() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let mode = |path: &Path| std::fs::metadata(path).unwrap().permissions().mode() & 0o777;
        write(dir.path(), "team", "codes", b"old").unwrap();
        let target = dir.path().join("team/codes.yaml");
        assert_eq!(mode(&dir.path().join("team")), 0o700);
        std::fs::set_permissions(&target, std::fs::Permissions::from_mode(0o644)).unwrap();

        write(dir.path(), "team", "codes", b"new").unwrap();
        assert_eq!(mode(&target), 0o600);
        assert_eq!(std::fs::read_to_string(&target).unwrap(), "new");
        assert_eq!(names(&dir.path().join("team")), ["codes.yaml"]);
    }

    #[cfg(unix)]
    #[test]
    fn a_linked_file_is_refused_and_its_target_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let victim = dir.path().join("victim");
        std::fs::write(&victim, "keep").unwrap();
        let root = dir.path().join("out");
        std::fs::create_dir_all(root.join("team")).unwrap();
        let link = root.join("team/codes.yaml");
        std::os::unix::fs::symlink(&victim, &link).unwrap();

        let err = write(&root, "team", "codes", b"values").unwrap_err();
        assert!(matches!(&err, ExportFileError::Symlink { path } if path == &link));
        let text = err.to_string();
        assert!(text.contains(&link.display().to_string()), "{text}");
        assert!(text.contains("remove the symbolic link"), "{text}");
        assert_eq!(std::fs::read_to_string(&victim).unwrap(), "keep");
        assert!(link.symlink_metadata().unwrap().file_type().is_symlink());
        assert_eq!(
            names(&root.join("team")),
            ["codes.yaml"],
            "no temporary file"
        );
    }

    #[cfg(unix)]
    #[test]
    fn a_linked_namespace_directory_is_refused_and_its_target_left_alone() {
        let dir = tempfile::tempdir().unwrap();
        let elsewhere = dir.path().join("elsewhere");
        std::fs::create_dir(&elsewhere).unwrap();
        let root = dir.path().join("out");
        std::fs::create_dir(&root).unwrap();
        let link = root.join("team");
        std::os::unix::fs::symlink(&elsewhere, &link).unwrap();

        let err = write(&root, "team", "codes", b"values").unwrap_err();
        assert!(matches!(&err, ExportFileError::Symlink { path } if path == &link));
        assert!(
            err.to_string().contains("remove the symbolic link"),
            "{err}"
        );
        assert!(names(&elsewhere).is_empty(), "nothing written through it");
    }

    #[cfg(unix)]
    #[test]
    fn the_export_directory_itself_may_be_a_link() {
        let dir = tempfile::tempdir().unwrap();
        let real = dir.path().join("volume");
        std::fs::create_dir(&real).unwrap();
        let root = dir.path().join("out");
        std::os::unix::fs::symlink(&real, &root).unwrap();
        write(&root, "team", "codes", b"x").unwrap();
        assert_eq!(names(&real.join("team")), ["codes.yaml"]);
    }

    #[test]
    fn a_failed_write_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        // A non-empty directory where the file goes: the rename fails.
        let target = dir.path().join("team/codes.yaml");
        std::fs::create_dir_all(&target).unwrap();
        std::fs::write(target.join("inside"), "").unwrap();

        let err = write(dir.path(), "team", "codes", b"values").unwrap_err();
        assert!(
            matches!(
                err,
                ExportFileError::Io {
                    step: "replace",
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains(&target.display().to_string()));
        assert_eq!(names(&dir.path().join("team")), ["codes.yaml"]);
        assert_eq!(names(&target), ["inside"]);
    }

    #[test]
    fn a_file_where_the_namespace_directory_goes_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("team"), "mine").unwrap();
        let err = write(dir.path(), "team", "codes", b"values").unwrap_err();
        assert!(
            matches!(err, ExportFileError::NotADirectory { .. }),
            "{err}"
        );
        assert!(err.to_string().contains("is not a directory"), "{err}");
        assert_eq!(
            std::fs::read_to_string(dir.path().join("team")).unwrap(),
            "mine"
        );
    }

    #[test]
    fn names_that_are_not_one_path_component_are_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path().join("out");
        for (namespace, name) in [("..", "codes"), (".", "codes"), ("", "codes")] {
            let err = write(&root, namespace, name, b"values").unwrap_err();
            assert!(err.to_string().starts_with("namespace `"), "{err}");
        }
        for name in ["..", ".", "a/b", "../../etc/passwd", ""] {
            let err = write(&root, "team", name, b"values").unwrap_err();
            let text = err.to_string();
            assert!(text.starts_with(&format!("Secret name `{name}`")), "{text}");
            assert!(text.contains("not a single file name"), "{text}");
        }
        assert!(!root.exists());
    }
}
