//! The stack's one stream to its subscribers, with the last items kept for one that comes late.
//!
//! The log mux's thread is the only sender. It keeps the last `keep` items (0 until someone asks:
//! a run without the dashboard keeps nothing) and sends each item to the subscribers there are.
//! [`Fanout::subscribe_with_recent`] takes the kept items and a receiver in one step under the
//! same lock as the send, so a late subscriber (the dashboard's hub, when a page opens) gets each
//! item exactly once: the kept ones, then everything after. No subscriber means no copy and no
//! wake-up per line: a flood with no page open costs the ring alone.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, PoisonError};

use tokio::sync::broadcast;

use super::mux::Published;

/// How many items a slow subscriber may fall behind before it misses some.
const SUBSCRIBER_BACKLOG: usize = 4096;

#[derive(Clone)]
pub struct Fanout {
    tx: broadcast::Sender<Published>,
    recent: Arc<Mutex<Recent>>,
    /// Whether anyone asked to keep items ([`Fanout::keep`]): until then a send with no
    /// subscriber takes no lock at all.
    keeping: Arc<AtomicBool>,
}

#[derive(Default)]
struct Recent {
    keep: usize,
    items: VecDeque<Published>,
}

impl Default for Fanout {
    fn default() -> Self {
        Self::new()
    }
}

impl Fanout {
    pub fn new() -> Self {
        Self {
            tx: broadcast::channel(SUBSCRIBER_BACKLOG).0,
            recent: Arc::default(),
            keeping: Arc::default(),
        }
    }

    /// Every item from now on.
    pub fn subscribe(&self) -> broadcast::Receiver<Published> {
        self.tx.subscribe()
    }

    /// Keeps the last `n` items from now on (the largest any caller asked for).
    pub fn keep(&self, n: usize) {
        let mut r = self.lock();
        r.keep = r.keep.max(n);
        self.keeping.store(r.keep > 0, Ordering::Release);
    }

    /// The items kept (oldest first) and a receiver of every item after them.
    pub fn subscribe_with_recent(&self) -> (Vec<Published>, broadcast::Receiver<Published>) {
        let r = self.lock();
        (r.items.iter().cloned().collect(), self.tx.subscribe())
    }

    /// Keeps the item and sends it to the subscribers there are (the mux's thread only).
    pub(crate) fn send(&self, item: Published) {
        // Nothing kept and nobody listening: the item goes nowhere (a subscriber that comes
        // meanwhile gets the items after it, as it would a moment later).
        if !self.keeping.load(Ordering::Acquire) && self.tx.receiver_count() == 0 {
            return;
        }
        let mut r = self.lock();
        if r.keep == 0 {
            if self.tx.receiver_count() > 0 {
                let _ = self.tx.send(item);
            }
            return;
        }
        if r.items.len() >= r.keep {
            r.items.pop_front();
        }
        if self.tx.receiver_count() > 0 {
            r.items.push_back(item.clone());
            let _ = self.tx.send(item);
        } else {
            r.items.push_back(item);
        }
    }

    #[cfg(test)]
    pub(crate) fn subscribers(&self) -> usize {
        self.tx.receiver_count()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Recent> {
        // The ring stays consistent whatever panicked while holding it.
        self.recent.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{LogLine, Stream};

    fn line(n: usize) -> Published {
        Published::Line(LogLine::output(
            std::time::SystemTime::now(),
            "api",
            Stream::Stdout,
            format!("line {n}"),
        ))
    }

    fn text(p: &Published) -> String {
        match p {
            Published::Line(l) => l.text.clone(),
            Published::Event { .. } => String::new(),
        }
    }

    #[test]
    fn keeps_nothing_until_asked_then_the_last_n() {
        let f = Fanout::new();
        f.send(line(0));
        assert!(f.subscribe_with_recent().0.is_empty());
        f.keep(3);
        for n in 1..=5 {
            f.send(line(n));
        }
        let (kept, _) = f.subscribe_with_recent();
        let kept: Vec<String> = kept.iter().map(text).collect();
        assert_eq!(kept, ["line 3", "line 4", "line 5"]);
    }

    /// With nothing kept and nobody listening a send goes nowhere (no lock); a subscriber gets
    /// every item from its subscription on, and a clone shares what was asked of the original.
    #[test]
    fn without_a_ring_a_subscriber_gets_the_items_after_it() {
        let f = Fanout::new();
        f.send(line(0));
        let mut rx = f.subscribe();
        f.send(line(1));
        assert_eq!(text(&rx.try_recv().unwrap()), "line 1");
        assert!(rx.try_recv().is_err(), "line 0 went nowhere");
        drop(rx);
        let clone = f.clone();
        clone.keep(1);
        f.send(line(2));
        let (kept, _) = clone.subscribe_with_recent();
        assert_eq!(kept.iter().map(text).collect::<Vec<_>>(), ["line 2"]);
    }

    #[test]
    fn a_late_subscriber_gets_each_item_once_across_the_cut() {
        let f = Fanout::new();
        f.keep(100);
        let sender = f.clone();
        let writer = std::thread::spawn(move || {
            // Fewer than the backlog after any cut: a receiver read at the end misses none.
            for n in 0..4_000 {
                sender.send(line(n));
            }
        });
        // Subscribe somewhere in the middle of the flood.
        while f.lock().items.len() < 50 {
            std::thread::yield_now();
        }
        let (kept, mut rx) = f.subscribe_with_recent();
        writer.join().unwrap();
        let mut seen: Vec<usize> = kept.iter().map(|p| text(p)[5..].parse().unwrap()).collect();
        loop {
            match rx.try_recv() {
                Ok(p) => seen.push(text(&p)[5..].parse().unwrap()),
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    panic!("lagged by {n}: the test reads after the writer is done")
                }
                Err(_) => break,
            }
        }
        // Consecutive, ending with the last: nothing twice, nothing missed across the cut.
        let first = seen[0];
        let expect: Vec<usize> = (first..first + seen.len()).collect();
        assert_eq!(seen, expect);
        assert_eq!(*seen.last().unwrap(), 3_999, "saw {} items", seen.len());
    }
}
