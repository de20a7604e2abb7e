//! The recent events, so a watcher can resume: a client lists (the answer
//! carries the revision, the log index it was read at), then watches from
//! that revision and gets exactly what happened after it — as Kubernetes'
//! resourceVersion or Nomad's index. Bounded: beyond it, the watcher is
//! told to list again (`OUT_OF_RANGE`), never given a silent gap.
//!
//! Pure: filled under the state lock as commands apply, read under it.

use std::collections::VecDeque;
use std::sync::Arc;

use berth_proto::v1::Event;

/// How many events are kept (about 1 KB each).
pub const HISTORY_EVENTS: usize = 10_000;

#[derive(Debug)]
pub struct History {
    events: VecDeque<Arc<Event>>,
    /// Every event of a log index above this is kept; at or below it,
    /// some may be gone (evicted, or before this controller's snapshot).
    floor: u64,
    cap: usize,
}

impl History {
    pub fn new(cap: usize) -> History {
        History {
            events: VecDeque::new(),
            floor: 0,
            cap: cap.max(1),
        }
    }

    /// The state was replaced by a snapshot at `index`: nothing before is known.
    pub fn reset(&mut self, index: u64) {
        self.events.clear();
        self.floor = index;
    }

    pub fn push(&mut self, event: Arc<Event>) {
        if self.events.len() == self.cap {
            if let Some(old) = self.events.pop_front() {
                self.floor = self.floor.max(old.index);
            }
        }
        self.events.push_back(event);
    }

    /// The oldest revision a watch may start from.
    pub fn floor(&self) -> u64 {
        self.floor
    }

    /// The events after `revision`, oldest first; `Err(floor)` when some
    /// of them are no longer kept.
    pub fn since(&self, revision: u64) -> Result<Vec<Arc<Event>>, u64> {
        if revision < self.floor {
            return Err(self.floor);
        }
        Ok(self
            .events
            .iter()
            .filter(|e| e.index > revision)
            .cloned()
            .collect())
    }

    /// The events from log index `index` on, less the first `seen` of
    /// `index` itself (a watcher that fell behind mid-index resumes exactly).
    pub fn resume(&self, index: u64, seen: usize) -> Result<Vec<Arc<Event>>, u64> {
        if index <= self.floor {
            return Err(self.floor);
        }
        let mut skip = seen;
        Ok(self
            .events
            .iter()
            .filter(|e| e.index >= index)
            .filter(|e| {
                if e.index == index && skip > 0 {
                    skip -= 1;
                    return false;
                }
                true
            })
            .cloned()
            .collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ev(index: u64, at: i64) -> Arc<Event> {
        Arc::new(Event {
            index,
            at_ms: at,
            kind: None,
        })
    }

    fn ats(v: Vec<Arc<Event>>) -> Vec<i64> {
        v.into_iter().map(|e| e.at_ms).collect()
    }

    #[test]
    fn a_watch_gets_exactly_what_came_after_its_revision() {
        let mut h = History::new(100);
        h.reset(10);
        for (i, at) in [(11, 1), (12, 2), (12, 3), (14, 4)] {
            h.push(ev(i, at));
        }
        assert_eq!(ats(h.since(10).unwrap()), vec![1, 2, 3, 4]);
        assert_eq!(ats(h.since(12).unwrap()), vec![4]);
        assert_eq!(ats(h.since(14).unwrap()), Vec::<i64>::new());
        assert_eq!(h.since(9), Err(10), "before the snapshot: list again");
    }

    #[test]
    fn eviction_raises_the_floor_to_what_is_no_longer_whole() {
        let mut h = History::new(3);
        for (i, at) in [(1, 1), (2, 2), (2, 3), (3, 4)] {
            h.push(ev(i, at));
        }
        assert_eq!(h.floor(), 1);
        h.push(ev(4, 5)); // evicts one of index 2: index 2 is not whole
        assert_eq!(h.floor(), 2);
        assert_eq!(h.since(1), Err(2));
        assert_eq!(ats(h.since(2).unwrap()), vec![4, 5]);
    }

    #[test]
    fn a_lagging_watcher_resumes_mid_index_without_repeats() {
        let mut h = History::new(100);
        for (i, at) in [(5, 1), (5, 2), (5, 3), (6, 4)] {
            h.push(ev(i, at));
        }
        // It had delivered the first two events of index 5.
        assert_eq!(ats(h.resume(5, 2).unwrap()), vec![3, 4]);
        assert_eq!(h.resume(0, 0), Err(0));
    }
}
