//! A panic in one reconcile is that resource's fault, not the process's
//! end: [`catch`] runs a future and turns a panic in it into a
//! [`Panicked`], which says where the code panicked but never what the
//! panic said when that could carry values.
//!
//! A panic's message is text the panicking code built: a literal
//! (`panic!("...")`, `unwrap()` on `None`, an arithmetic overflow) is safe
//! to show, but a formatted one (`expect` on a `Result` quotes the error's
//! `Debug`, an assertion quotes its operands, an index out of bounds its
//! numbers) may hold whatever those values held, a credential or a code
//! included. So a caught panic is described by its
//! source location and, when the message is a literal, that literal; a
//! formatted message is withheld, from the log as from status and Events.
//! For panics inside [`catch`] the process's panic hook logs that line
//! instead of printing the message; every other panic (a test's failed
//! assertion, a panic outside a reconcile) is printed as before.

use futures::FutureExt;
use std::any::Any;
use std::cell::{Cell, RefCell};
use std::fmt;
use std::future::Future;
use std::panic::{AssertUnwindSafe, Location};
use std::sync::Once;
use std::task::Poll;

thread_local! {
    /// How many [`catch`] scopes are polling on this thread.
    static CATCHING: Cell<u32> = const { Cell::new(0) };
    /// Where the last panic inside a scope happened.
    static LOCATION: RefCell<Option<String>> = const { RefCell::new(None) };
}

/// A caught panic: where it happened and, when it was a literal, what it
/// said.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Panicked {
    /// `file:line:column` in the operator's source (or a dependency's).
    pub location: Option<String>,
    /// The panic's message when it was a literal; `None` when it was
    /// formatted (withheld: it may carry values).
    pub message: Option<&'static str>,
}

impl Panicked {
    fn of(payload: &(dyn Any + Send), location: Option<String>) -> Self {
        Self {
            location,
            message: payload.downcast_ref::<&'static str>().copied(),
        }
    }
}

impl fmt::Display for Panicked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let location = self.location.as_deref().unwrap_or("an unknown place");
        match self.message {
            Some(message) => write!(f, "panicked at {location}: {message}"),
            None => write!(
                f,
                "panicked at {location} (its message is withheld: it may carry values)"
            ),
        }
    }
}

/// Runs `work`; a panic while it is polled becomes `Err`. The work is
/// dropped at the panic (what it held is released, what it did stays done:
/// the engine's recorded intents make the next reconcile settle it).
pub async fn catch<F: Future>(work: F) -> Result<F::Output, Panicked> {
    install_hook();
    let mut work = std::pin::pin!(AssertUnwindSafe(work).catch_unwind());
    futures::future::poll_fn(|cx| {
        CATCHING.with(|depth| depth.set(depth.get() + 1));
        let polled = work.as_mut().poll(cx);
        CATCHING.with(|depth| depth.set(depth.get() - 1));
        match polled {
            Poll::Pending => Poll::Pending,
            Poll::Ready(Ok(output)) => Poll::Ready(Ok(output)),
            Poll::Ready(Err(payload)) => {
                let location = LOCATION.with(|l| l.borrow_mut().take());
                Poll::Ready(Err(Panicked::of(&*payload, location)))
            }
        }
    })
    .await
}

/// Installs, once, the hook that describes panics inside [`catch`] without
/// their formatted messages and hands every other panic to the hook that
/// was there before.
fn install_hook() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if CATCHING.with(Cell::get) == 0 {
                return previous(info);
            }
            let location = info.location().map(Location::to_string);
            let caught = Panicked::of(info.payload(), location.clone());
            LOCATION.with(|l| *l.borrow_mut() = location);
            tracing::error!(
                "a reconcile {caught}; the resource is marked InternalError and the operator goes on"
            );
        }));
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_literal_panic_is_described_with_its_place_and_message() {
        let caught = catch(async { panic!("a literal") }).await;
        let panicked: Panicked = caught.unwrap_err();
        assert_eq!(panicked.message, Some("a literal"));
        let location = panicked.location.clone().unwrap();
        assert!(location.starts_with("src/panics.rs:"), "{location}");
        assert_eq!(
            panicked.to_string(),
            format!("panicked at {location}: a literal")
        );
    }

    #[tokio::test]
    async fn a_formatted_message_is_withheld() {
        let secret = String::from("SK-very-secret");
        let caught = catch(async {
            "not a number"
                .parse::<u8>()
                .map_err(|_| secret.clone())
                .expect("parse")
        })
        .await;
        let text = caught.unwrap_err().to_string();
        assert!(!text.contains("SK-very-secret"), "{text}");
        assert!(text.contains("withheld"), "{text}");
    }

    #[tokio::test]
    async fn work_that_does_not_panic_gives_its_output_across_awaits() {
        let output = catch(async {
            tokio::task::yield_now().await;
            41 + 1
        })
        .await;
        assert_eq!(output, Ok(42));
    }

    #[tokio::test]
    async fn a_panic_after_an_await_is_caught_too() {
        let caught = catch(async {
            tokio::task::yield_now().await;
            let empty: Vec<u8> = Vec::new();
            empty[3]
        })
        .await;
        assert!(caught.unwrap_err().message.is_none());
    }
}
