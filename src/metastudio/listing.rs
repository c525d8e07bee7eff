//! A robot's codes, every page, and whether the pages added up.
//!
//! A listing is *complete* only when every page reported the same `count`
//! and the distinct codes received equal it. Codes created or deleted while
//! paging shift the offsets (a code is skipped, or seen twice), and a
//! server may answer a short or empty page: such a listing still returns
//! what it saw, but callers must not read a missing code as a deleted one.
//!
//! A listing is bounded whatever the server answers: a page holds at most
//! the codes asked for (see [`MetaStudioClient::list_page`]); a `count`
//! over [`MAX_LISTED_CODES`] ends the listing at the page that reports it,
//! before another page is asked for; the codes it keeps are covered by its
//! share of the process's listing budget ([`super::listing_budget`]), taken
//! at its first page; and it ends within the listing deadline
//! ([`super::ClientOptions::listing_deadline`]), however slowly the endpoint
//! answers.

use super::client::{MAX_LIST_PAGES, MAX_PAGE_SIZE, shown_request_id};
use super::listing_budget::ListingHold;
use super::{ActiveCode, ApiError, ApiErrorKind, MetaStudioClient, Operation};
use std::collections::HashSet;

/// The most codes of one robot a listing reads. Above the 30,000 codes one
/// resource manages (`engine::limits`), so that a larger robot split into
/// resources by `roomId` or `activeCodeIds` is still listed; low enough
/// that a listing's memory stays bounded whatever the server sends (with
/// fields of at most `models::MAX_FIELD_BYTES`).
pub const MAX_LISTED_CODES: u32 = 100_000;

/// The codes of one robot, in remote order, each once.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Listing {
    pub codes: Vec<ActiveCode>,
    /// The pages agreed on `count` and delivered exactly that many codes.
    pub complete: bool,
}

/// Pages folded into a listing, and the share of the listing budget
/// their codes hold.
struct Pages {
    codes: Vec<ActiveCode>,
    seen: HashSet<String>,
    count: Option<u32>,
    /// No page contradicted another so far.
    consistent: bool,
    hold: ListingHold,
}

impl Pages {
    fn new(hold: ListingHold) -> Self {
        Self {
            codes: Vec::new(),
            seen: HashSet::new(),
            count: None,
            consistent: true,
            hold,
        }
    }

    /// Adds one page; returns how many new codes it had.
    fn add(&mut self, count: u32, data: Vec<ActiveCode>) -> usize {
        if self.count.is_some_and(|c| c != count) {
            self.consistent = false;
        }
        self.count = Some(count);
        let before = self.codes.len();
        for code in data {
            if self.seen.insert(code.active_code_id.clone()) {
                self.codes.push(code);
            } else {
                // The offsets shifted under the pages.
                self.consistent = false;
            }
        }
        self.codes.len() - before
    }

    /// The listing the pages make (the hold stays with them).
    fn finish(&mut self) -> Listing {
        let complete =
            self.consistent && self.count.is_some_and(|c| c as usize == self.codes.len());
        self.seen = HashSet::new();
        Listing {
            codes: std::mem::take(&mut self.codes),
            complete,
        }
    }
}

/// How one reading of the pages ended.
enum Read {
    Done(Listing, ListingHold),
    /// A page said the robot has more codes than the hold covers, and the
    /// listing budget has no more free now: wait for this many, and read
    /// again from the first page.
    NeedsHold(u32),
}

impl MetaStudioClient {
    /// Every code of a robot, page by page, and whether the pages added
    /// up; with the share of the listing budget the codes hold, to be kept
    /// as long as the codes are (dropping it gives the share back). Fails
    /// with [`ApiErrorKind::ListingTooSlow`] when the pages take longer
    /// than the listing deadline, waits for the budget's share not
    /// included.
    pub async fn listing(&self, robot_id: &str) -> Result<(Listing, ListingHold), ApiError> {
        let budget = self.transport().listing_budget();
        let mut hold = budget.empty();
        loop {
            match self.read_in_time(robot_id, hold).await? {
                Read::Done(listing, hold) => return Ok((listing, hold)),
                Read::NeedsHold(codes) => hold = budget.hold(codes).await,
            }
        }
    }

    /// One reading of every page, within the listing deadline.
    async fn read_in_time(&self, robot_id: &str, hold: ListingHold) -> Result<Read, ApiError> {
        let deadline = self.transport().options().listing_deadline;
        let mut pages = Pages::new(hold);
        let read = tokio::time::timeout(deadline, self.read_pages(robot_id, &mut pages)).await;
        match read {
            Ok(Ok(None)) => Ok(Read::Done(pages.finish(), pages.hold)),
            Ok(Ok(Some(codes))) => Ok(Read::NeedsHold(codes)),
            Ok(Err(err)) => Err(err),
            Err(_) => Err(ApiError {
                operation: Operation::ListActiveCode,
                attempts: 0,
                kind: ApiErrorKind::ListingTooSlow {
                    robot: robot_id.to_owned(),
                    deadline,
                    received: pages.codes.len(),
                    count: pages.count.unwrap_or(0),
                },
            }),
        }
    }

    /// Reads the pages into `pages`, as long as its hold covers the codes
    /// they announce; `Some(codes)` when it must hold that many and the
    /// budget has them not free now.
    async fn read_pages(&self, robot_id: &str, pages: &mut Pages) -> Result<Option<u32>, ApiError> {
        let mut offset = 0u32;
        for page_number in 1.. {
            let reply = self.list_page(robot_id, offset, MAX_PAGE_SIZE).await?;
            let page = reply.value;
            if page.count > MAX_LISTED_CODES {
                return Err(too_many(page.count, reply.request_id));
            }
            let received = page.data.len() as u32;
            let announced = page.count.max(received);
            if !pages.hold.cover(announced) {
                return Ok(Some(announced));
            }
            let new = pages.add(page.count, page.data);
            offset = offset.saturating_add(received);
            // `count` is the total: a short page alone is no proof of the
            // end, as a server may cap pages below the asked limit. A page
            // with nothing new ends it too.
            if received == 0 || offset >= page.count || new == 0 {
                return Ok(None);
            }
            if page_number >= MAX_LIST_PAGES {
                return Err(endless(offset, page.count, reply.request_id));
            }
        }
        unreachable!("the pages end by MAX_LIST_PAGES")
    }
}

/// A `count` over [`MAX_LISTED_CODES`].
fn too_many(count: u32, request_id: Option<String>) -> ApiError {
    ApiError {
        operation: Operation::ListActiveCode,
        attempts: 1,
        kind: ApiErrorKind::TooManyCodes {
            count,
            cap: MAX_LISTED_CODES,
            request_id: shown_request_id(request_id),
        },
    }
}

/// Pages that did not end after [`MAX_LIST_PAGES`].
fn endless(offset: u32, count: u32, request_id: Option<String>) -> ApiError {
    ApiError {
        operation: Operation::ListActiveCode,
        attempts: 1,
        kind: ApiErrorKind::Protocol {
            request_id: shown_request_id(request_id),
            detail: format!(
                "the listing did not end after {MAX_LIST_PAGES} pages ({offset} of {count} codes)"
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(id: &str) -> ActiveCode {
        serde_json::from_value(serde_json::json!({
            "active_code_id": id, "active_code": "v", "robot_id": "r", "valid_period": 1,
            "create_time": "2026-01-01T00:00:00Z", "update_time": "2026-01-01T00:00:00Z"
        }))
        .unwrap()
    }

    fn listed(pages: &[(u32, &[&str])]) -> (Vec<String>, bool) {
        let budget = super::super::listing_budget::ListingBudget::new(0);
        let mut folded = Pages::new(budget.empty());
        for (count, ids) in pages {
            folded.add(*count, ids.iter().map(|id| code(id)).collect());
        }
        let listing = folded.finish();
        let ids = listing
            .codes
            .iter()
            .map(|c| c.active_code_id.clone())
            .collect();
        (ids, listing.complete)
    }

    #[test]
    fn only_pages_that_add_up_make_a_complete_listing() {
        // Name, pages (count, ids), codes listed, complete.
        type Case<'a> = (&'a str, &'a [(u32, &'a [&'a str])], usize, bool);
        let cases: [Case; 6] = [
            ("one full page", &[(2, &["a", "b"])], 2, true),
            ("two pages", &[(3, &["a", "b"]), (3, &["c"])], 3, true),
            ("short page", &[(3, &["a"]), (3, &[])], 1, false),
            ("empty first page", &[(2, &[])], 0, false),
            ("count changed", &[(3, &["a", "b"]), (2, &["c"])], 3, false),
            (
                "offsets shifted",
                &[(3, &["a", "b"]), (3, &["b"])],
                2,
                false,
            ),
        ];
        for (name, pages, len, complete) in cases {
            let (ids, got) = listed(pages);
            assert_eq!((ids.len(), got), (len, complete), "{name}: {ids:?}");
        }
        assert_eq!(listed(&[(0, &[])]), (vec![], true), "no codes at all");
    }
}
