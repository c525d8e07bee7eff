//! The ServiceAccount token of `--token-file`: read afresh for each call
//! (kubelet rotates a projected token), checked, and kept in a [`Secret`].

use super::BrokerError;
use crate::secret::Secret;
use std::io::Read;
use std::path::Path;

/// Far above a ServiceAccount token (about 1 KiB); a bigger file is not one.
const MAX_TOKEN_BYTES: u64 = 64 * 1024;

/// Reads the token. Errors name the flag and the path, never the content.
pub fn read(path: &Path) -> Result<Secret, BrokerError> {
    let unreadable = |source| BrokerError::TokenUnreadable {
        path: path.to_path_buf(),
        source,
    };
    let invalid = |problem| BrokerError::TokenInvalid {
        path: path.to_path_buf(),
        problem,
    };
    let mut bytes = Vec::new();
    std::fs::File::open(path)
        .and_then(|file| file.take(MAX_TOKEN_BYTES + 1).read_to_end(&mut bytes))
        .map_err(unreadable)?;
    if bytes.len() as u64 > MAX_TOKEN_BYTES {
        return Err(invalid("is larger than 64 KiB: not a ServiceAccount token"));
    }
    let text =
        String::from_utf8(bytes).map_err(|_| invalid("is not text: not a ServiceAccount token"))?;
    let token = text.trim();
    if token.is_empty() {
        return Err(invalid("is empty"));
    }
    if !token.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(invalid(
            "holds spaces, control or non-ASCII characters: not a ServiceAccount token",
        ));
    }
    Ok(Secret::new(token))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(content: &[u8]) -> tempfile::NamedTempFile {
        let mut f = tempfile::NamedTempFile::new().unwrap();
        std::io::Write::write_all(&mut f, content).unwrap();
        f
    }

    #[test]
    fn a_token_is_trimmed_and_kept_secret() {
        let f = file(b"eyJhbGciOi.payload.sig\n");
        let token = read(f.path()).unwrap();
        assert_eq!(token.expose(), "eyJhbGciOi.payload.sig");
        assert_eq!(format!("{token:?}"), "<redacted>");
    }

    #[test]
    fn bad_files_are_named_with_the_fix_and_never_quoted() {
        let missing = Path::new("/nonexistent/metastudio-operator/token");
        let cases: Vec<(Result<Secret, BrokerError>, &str)> = vec![
            (read(missing), "No such file"),
            (read(file(b" \n").path()), "is empty"),
            (read(file(b"secret-part other-part").path()), "spaces"),
            (read(file(&[0xff, 0xfe]).path()), "not text"),
            (read(file(&vec![b'a'; 70_000]).path()), "64 KiB"),
            (read(Path::new("/")), "--token-file /"),
        ];
        for (result, want) in cases {
            let message = result.unwrap_err().to_string();
            assert!(message.contains(want), "{message}");
            assert!(message.contains("--token-file"), "{message}");
            assert!(
                message.contains("projected serviceAccountToken"),
                "{message}"
            );
            assert!(!message.contains("secret-part"), "{message}");
        }
    }
}
