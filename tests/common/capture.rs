//! Log capture for secret-hygiene checks: a tracing writer that keeps every
//! line in memory, and the assertion that no secret appears in a text.

use std::collections::{HashMap, HashSet};
use std::io::Write;
use std::sync::{Arc, Mutex};

/// Everything a tracing subscriber wrote, shared with the test.
#[derive(Clone, Default)]
pub struct Captured(Arc<Mutex<Vec<u8>>>);

impl Captured {
    /// The captured lines so far.
    pub fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).expect("logs are UTF-8")
    }
}

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for Captured {
    type Writer = Captured;
    fn make_writer(&'a self) -> Self::Writer {
        self.clone()
    }
}

/// A subscriber that writes every event of every crate, at trace level,
/// to `logs`. Install it with `tracing::subscriber::set_default` on the
/// thread of a current-thread runtime so it sees every task.
pub fn trace_subscriber(logs: &Captured) -> impl tracing::Subscriber + Send + Sync + 'static {
    tracing_subscriber::fmt()
        .with_max_level(tracing::Level::TRACE)
        .with_writer(logs.clone())
        .with_ansi(false)
        .finish()
}

/// Fails when any of `secrets` occurs in `text`; the message names the
/// secret's length and where it leaked, never the secret. One pass over the
/// text, so megabytes of trace logs against thousands of code values stay
/// quick.
pub fn assert_clean(text: &str, secrets: &[String]) {
    let mut by_length: HashMap<usize, HashSet<&[u8]>> = HashMap::new();
    let mut starts = [false; 256];
    for secret in secrets {
        assert!(!secret.is_empty(), "an empty secret matches everything");
        by_length
            .entry(secret.len())
            .or_default()
            .insert(secret.as_bytes());
        starts[usize::from(secret.as_bytes()[0])] = true;
    }
    let bytes = text.as_bytes();
    for at in 0..bytes.len() {
        if !starts[usize::from(bytes[at])] {
            continue;
        }
        for (&length, set) in &by_length {
            if bytes.len() - at >= length && set.contains(&bytes[at..at + length]) {
                let line_start = bytes[..at]
                    .iter()
                    .rposition(|&b| b == b'\n')
                    .map_or(0, |n| n + 1);
                panic!(
                    "a secret ({length} chars) leaked; the line starts: {:?}",
                    String::from_utf8_lossy(&bytes[line_start..at])
                );
            }
        }
    }
}
