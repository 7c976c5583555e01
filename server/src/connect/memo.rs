//! `VerifyToken` answers remembered as JSON. A repeated token's answer is
//! the same protobuf each time (the verifier's result cache hands out the
//! same verdict), and writing it as JSON (`wire_json`: claims, timestamps,
//! lists) was about 10 k instructions a call, a third of what the Connect
//! layer adds to the gRPC call it makes (BENCHMARKS.md). Each
//! worker thread keeps the JSON of the answers it last wrote, in a
//! direct-mapped table: no lock, no order to keep, a bounded size.
//!
//! The table maps answer bytes to the JSON those bytes write to, and a
//! lookup compares the whole answer: it decides nothing (a revoked token's
//! call fails before any answer is written) and it cannot give one answer's
//! JSON for another. Only `VerifyToken`'s answers are kept: they hold the
//! token's claims, never a credential, where other RPCs' answers hold
//! refresh tokens, session handles or device codes. An entry has no expiry:
//! it stays until another answer takes its slot (the claims of up to
//! `SLOTS` recent answers per worker thread stay in memory).

use std::{cell::RefCell, hash::BuildHasher};

use bytes::Bytes;
use foldhash::fast::RandomState;

/// Slots per worker thread.
const SLOTS: usize = 256;
/// The largest answer kept, and the largest JSON: a thread's table holds at
/// most `SLOTS` × (2 + 4) KiB.
const MAX_ANSWER: usize = 2 * 1024;
const MAX_JSON: usize = 4 * 1024;

struct Slot {
    answer: Bytes,
    json: Bytes,
}

struct Table {
    /// Seeded per thread, so that which answers share a slot is not known
    /// outside. foldhash rather than SipHash: a miss (every new token) hashes
    /// its answer too, and SipHash cost it 1.8 k instructions.
    hasher: RandomState,
    slots: Vec<Option<Slot>>,
}

thread_local! {
    static TABLE: RefCell<Table> = RefCell::new(Table {
        hasher: RandomState::default(),
        slots: Vec::new(),
    });
}

/// The JSON `answer` writes to: remembered by this thread, or `write`'s
/// (then remembered when both are small enough).
pub(super) fn json<E>(
    answer: &Bytes,
    write: impl FnOnce(&Bytes) -> Result<Bytes, E>,
) -> Result<Bytes, E> {
    if answer.len() > MAX_ANSWER {
        return write(answer);
    }
    let (slot, known) = TABLE.with_borrow(|table| {
        let slot = table.slot(answer);
        let known = table
            .slots
            .get(slot)
            .and_then(Option::as_ref)
            .filter(|kept| kept.answer == *answer)
            .map(|kept| kept.json.clone());
        (slot, known)
    });
    if let Some(json) = known {
        return Ok(json);
    }
    let json = write(answer)?;
    if json.len() <= MAX_JSON {
        TABLE.with_borrow_mut(|table| {
            if table.slots.is_empty() {
                table.slots.resize_with(SLOTS, || None);
            }
            table.slots[slot] = Some(Slot {
                answer: answer.clone(),
                json: json.clone(),
            });
        });
    }
    Ok(json)
}

impl Table {
    fn slot(&self, answer: &[u8]) -> usize {
        // `SLOTS` is a power of two: the low bits.
        (self.hasher.hash_one(answer) as usize) & (SLOTS - 1)
    }
}

#[cfg(test)]
mod tests {
    use std::cell::Cell;

    use super::*;

    fn written(answer: &Bytes, calls: &Cell<usize>) -> Bytes {
        let Ok(json) = json::<std::convert::Infallible>(answer, |a| {
            calls.set(calls.get() + 1);
            Ok(Bytes::from(format!("{{\"len\":{}}}", a.len())))
        });
        json
    }

    #[test]
    fn a_repeated_answer_is_written_once_and_another_answer_is_written_anew() {
        let calls = Cell::new(0);
        let first = Bytes::from_static(b"\x0a\x05alice");
        assert_eq!(written(&first, &calls), "{\"len\":7}");
        // Equal bytes in another buffer: the remembered JSON.
        assert_eq!(
            written(&Bytes::copy_from_slice(b"\x0a\x05alice"), &calls),
            "{\"len\":7}"
        );
        assert_eq!(calls.get(), 1);
        assert_eq!(
            written(&Bytes::from_static(b"\x0a\x03bob"), &calls),
            "{\"len\":5}"
        );
        assert_eq!(calls.get(), 2);
    }

    #[test]
    fn answers_that_share_a_slot_replace_each_other_and_never_answer_for_each_other() {
        let calls = Cell::new(0);
        // More answers than slots: some share one, and each still gets its
        // own JSON.
        let answers: Vec<Bytes> = (0..SLOTS * 4)
            .map(|i| Bytes::from(format!("answer {i:>width$}", width = i % 7)))
            .collect();
        for _ in 0..2 {
            for answer in &answers {
                assert_eq!(
                    written(answer, &calls),
                    format!("{{\"len\":{}}}", answer.len())
                );
            }
        }
        assert!(calls.get() > answers.len(), "the table is bounded");
        TABLE.with_borrow(|table| assert_eq!(table.slots.len(), SLOTS));
    }

    #[test]
    fn large_answers_and_failures_are_not_remembered() {
        let calls = Cell::new(0);
        let large = Bytes::from(vec![b'x'; MAX_ANSWER + 1]);
        written(&large, &calls);
        written(&large, &calls);
        assert_eq!(calls.get(), 2);
        let small = Bytes::from_static(b"\x12\x01x");
        assert_eq!(json(&small, |_| Err("no")), Err("no"));
        assert_eq!(written(&small, &calls), "{\"len\":3}");
        assert_eq!(calls.get(), 3);
    }
}
