//! The dashboard's one subscriber of the stack: a task that owns the recent log (bounded) and
//! the list of open pages, and every 100 ms sends each page one batch of what happened (new log
//! items, the table when it changed), serialised once for all. A page that cannot keep up is
//! dropped; its browser reconnects and starts again from the recent log. It never holds up the
//! log mux: the subscription is a broadcast that skips ahead when the hub is behind.
//!
//! It subscribes only while a page is open. The stream's fan-out keeps the last items itself
//! ([`StackHandle::keep_recent`]); the first page to open gets them and the subscription in one
//! step, so a flood with no page open costs the dashboard nothing per line.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use tokio::sync::{broadcast, mpsc, oneshot};

use super::model::{self, Item, Row};
use crate::engine::StackHandle;
use crate::event::StackEvent;
use crate::logs::mux::Published;
use crate::redact::Redactor;

/// How often batches go out.
const FLUSH_EVERY: Duration = Duration::from_millis(100);
/// The table is sent again this often even when no state changed (uptime, CPU and RSS move).
const TABLE_EVERY: u32 = 20;
/// Batches a page may have queued before it counts as too slow (1.6 s).
const PAGE_BACKLOG: usize = 16;

pub(super) enum HubCommand {
    Join(oneshot::Sender<Joined>),
}

/// What a new page gets: everything up to now as one message, then batches.
pub(super) struct Joined {
    pub init: String,
    pub batches: mpsc::Receiver<Arc<str>>,
}

#[derive(Serialize)]
struct Init<'a> {
    services: &'a [Row],
    log: &'a VecDeque<Item>,
    ended: bool,
    /// Why the stack files as they are now are not applied (`null` when they are).
    config_error: Option<String>,
}

#[derive(Serialize)]
struct Batch<'a> {
    #[serde(skip_serializing_if = "Option::is_none")]
    services: Option<&'a [Row]>,
    #[serde(skip_serializing_if = "<[Item]>::is_empty")]
    log: &'a [Item],
    ended: bool,
    /// With the table: the stack files' error, or `null` once they are valid again.
    #[serde(skip_serializing_if = "Option::is_none")]
    config_error: Option<Option<String>>,
}

/// Starts the hub; it keeps the last `keep` log items and ends with the engine. Services' own
/// lines are masked with `redact` (devstack's events already are): a page is easier to share
/// than a terminal. CPU and memory are sampled from `usage` while a page is open.
pub(super) fn spawn(
    handle: StackHandle,
    keep: usize,
    redact: Redactor,
    usage: super::UsageSource,
) -> mpsc::Sender<HubCommand> {
    let (tx, rx) = mpsc::channel(16);
    tokio::spawn(run(handle, keep, redact, usage, rx));
    tx
}

fn warning(text: String) -> Item {
    Item {
        t: std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_millis() as u64),
        s: "devstack".into(),
        k: "warn",
        x: text,
        l: Some(crate::logs::Level::Warn),
    }
}

/// A stream item as the page shows it, secrets in lines masked (events come masked).
fn masked(p: Published, redact: &Redactor) -> Vec<Item> {
    let line = matches!(p, Published::Line(_));
    let mut items = model::items(p);
    if line && !redact.is_empty() {
        for item in &mut items {
            item.x = redact.apply(&item.x);
        }
    }
    items
}

/// The next item of the subscription; only polled while there is one.
async fn next(
    events: &mut Option<broadcast::Receiver<Published>>,
) -> Result<Published, broadcast::error::RecvError> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

fn table(handle: &StackHandle, usage: &HashMap<String, model::Usage>) -> Vec<Row> {
    model::rows(handle.snapshot(), usage)
}

/// How often CPU and memory are sampled while a page is open.
const SAMPLE_EVERY: std::time::Duration = std::time::Duration::from_secs(2);

async fn run(
    handle: StackHandle,
    keep: usize,
    redact: Redactor,
    usage_source: super::UsageSource,
    mut commands: mpsc::Receiver<HubCommand>,
) {
    handle.keep_recent(keep);
    let mut events: Option<broadcast::Receiver<Published>> = None;
    let mut changes = handle.clone();
    let mut recent: VecDeque<Item> = VecDeque::with_capacity(keep);
    // At most `keep` items per batch: a flood faster than a page can show is cut, and said so.
    let mut fresh: VecDeque<Item> = VecDeque::new();
    let mut cut = 0usize;
    let mut pages: Vec<mpsc::Sender<Arc<str>>> = Vec::new();
    let mut usage: HashMap<String, model::Usage> = HashMap::new();
    let (usage_tx, mut usage_rx) = mpsc::channel(1);
    let mut sampling = false;
    let mut sampler = tokio::time::interval(SAMPLE_EVERY);
    sampler.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut rows = table(&handle, &usage);
    let mut table_changed = false;
    let mut ended = false;
    let mut ticks = 0u32;
    let mut tick = tokio::time::interval(FLUSH_EVERY);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let push =
        |recent: &mut VecDeque<Item>, fresh: &mut VecDeque<Item>, cut: &mut usize, item: Item| {
            if recent.len() == keep {
                recent.pop_front();
            }
            recent.push_back(item.clone());
            if fresh.len() == keep {
                fresh.pop_front();
                *cut += 1;
            }
            fresh.push_back(item);
        };
    loop {
        tokio::select! {
            got = next(&mut events), if events.is_some() => match got {
                Ok(p) => {
                    // The config banner goes out with the next table.
                    table_changed |= matches!(
                        &p,
                        Published::Event {
                            event: StackEvent::ConfigInvalid { .. } | StackEvent::ConfigApplied { .. },
                            ..
                        }
                    );
                    for item in masked(p, &redact) {
                        push(&mut recent, &mut fresh, &mut cut, item);
                    }
                }
                Err(broadcast::error::RecvError::Lagged(n)) => {
                    let text = format!("dashboard fell behind: {n} log lines not shown here (the log files have them)");
                    push(&mut recent, &mut fresh, &mut cut, warning(text));
                }
                Err(broadcast::error::RecvError::Closed) => ended = true,
            },
            alive = changes.changed(), if !ended => {
                if alive {
                    table_changed = true;
                } else {
                    ended = true;
                }
            }
            _ = sampler.tick(), if !pages.is_empty() && !sampling && !ended => {
                sampling = true;
                let snapshot = handle.snapshot();
                let tx = usage_tx.clone();
                let sample = usage_source(snapshot);
                tokio::spawn(async move {
                    // The hub may be gone by then; the figures are simply dropped.
                    let _ = tx.send(sample.await).await;
                });
            }
            Some(u) = usage_rx.recv() => {
                usage = u;
                sampling = false;
                table_changed = true;
            }
            Some(cmd) = commands.recv() => match cmd {
                HubCommand::Join(reply) => {
                    if events.is_none() {
                        // The first page: the stream's kept items, then everything after them.
                        let (kept, rx) = handle.subscribe_with_recent();
                        recent = kept.into_iter().flat_map(|p| masked(p, &redact)).collect();
                        while recent.len() > keep {
                            recent.pop_front();
                        }
                        events = Some(rx);
                    }
                    rows = table(&handle, &usage);
                    let init = serde_json::to_string(&Init { services: &rows, log: &recent, ended, config_error: handle.config_error() })
                        .unwrap_or_default();
                    let (tx, rx) = mpsc::channel(PAGE_BACKLOG);
                    pages.push(tx);
                    // A page that left before its answer needs nothing.
                    let _ = reply.send(Joined { init, batches: rx });
                }
            },
            _ = tick.tick() => {
                ticks = ticks.wrapping_add(1);
                let send_table = table_changed || ended || ticks.is_multiple_of(TABLE_EVERY);
                pages.retain(|p| !p.is_closed());
                if pages.is_empty() && !ended {
                    // Nobody to tell: no subscription until a page opens again (it gets the
                    // stream's kept items then).
                    events = None;
                    recent.clear();
                    fresh.clear();
                    cut = 0;
                    continue;
                }
                if fresh.is_empty() && !send_table {
                    continue;
                }
                if send_table {
                    rows = table(&handle, &usage);
                    table_changed = false;
                }
                if cut > 0 {
                    fresh.push_front(warning(format!(
                        "{cut} log lines in the last 100 ms not shown here (the log files have them)"
                    )));
                }
                let msg: Arc<str> = serde_json::to_string(&Batch {
                    services: send_table.then_some(rows.as_slice()),
                    log: fresh.make_contiguous(),
                    ended,
                    config_error: send_table.then(|| handle.config_error()),
                })
                .unwrap_or_default()
                .into();
                fresh.clear();
                cut = 0;
                // Full means the page is behind by seconds: drop it, it reconnects afresh.
                pages.retain(|p| p.try_send(msg.clone()).is_ok());
                if ended {
                    return;
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::logs::{LogLine, Stream};

    fn line(i: usize) -> Published {
        Published::Line(LogLine {
            at: std::time::UNIX_EPOCH,
            source: "db".into(),
            stream: Stream::Stdout,
            text: format!("l{i} pw=hunter22"),
            level: None,
        })
    }

    async fn join(hub: &mpsc::Sender<HubCommand>) -> Joined {
        let (reply, rx) = oneshot::channel();
        hub.send(HubCommand::Join(reply)).await.unwrap();
        rx.await.unwrap()
    }

    #[tokio::test(start_paused = true)]
    async fn a_flood_is_cut_said_masked_and_the_recent_log_bounded() {
        let events = crate::logs::fanout::Fanout::new();
        let (handle, inbox) = crate::engine::channel(events.clone());
        let no_usage: super::super::UsageSource = Arc::new(|_| Box::pin(async { HashMap::new() }));
        let hub = spawn(
            handle,
            100,
            Redactor::new(["hunter22".to_string()]),
            no_usage,
        );
        let mut page = join(&hub).await;
        for i in 0..250 {
            events.send(line(i));
        }
        let mut texts: Vec<String> = Vec::new();
        while !texts.iter().any(|t| t.starts_with("l249")) {
            let batch = page.batches.recv().await.expect("a batch");
            let v: serde_json::Value = serde_json::from_str(&batch).unwrap();
            for item in v["log"].as_array().into_iter().flatten() {
                texts.push(item["x"].as_str().unwrap().to_string());
            }
        }
        assert!(texts.iter().all(|t| !t.contains("hunter22")), "{texts:?}");
        assert!(
            texts.len() <= 102,
            "a batch holds at most 100 lines and a note: {}",
            texts.len()
        );
        assert!(
            texts.iter().any(|t| t.ends_with(
                "log lines in the last 100 ms not shown here (the log files have them)"
            )),
            "{texts:?}"
        );
        assert_eq!(texts.last().unwrap(), "l249 pw=****");
        // A page that opens now gets the last 100 lines.
        let late = join(&hub).await;
        let init: serde_json::Value = serde_json::from_str(&late.init).unwrap();
        let log = init["log"].as_array().unwrap();
        assert_eq!(log.len(), 100);
        assert_eq!(log[0]["x"], "l150 pw=****");
        assert_eq!(init["ended"], false);
        // The engine ends: a last batch says so, then the stream closes.
        drop(inbox);
        let mut last = None;
        while let Some(b) = page.batches.recv().await {
            last = Some(b);
        }
        let v: serde_json::Value = serde_json::from_str(&last.expect("a last batch")).unwrap();
        assert_eq!(v["ended"], true);
    }

    fn init_texts(joined: &Joined) -> Vec<String> {
        let init: serde_json::Value = serde_json::from_str(&joined.init).unwrap();
        init["log"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["x"].as_str().unwrap().to_string())
            .collect()
    }

    #[tokio::test(start_paused = true)]
    async fn with_no_page_open_the_fanout_keeps_the_recent_log_and_a_page_gets_it() {
        let events = crate::logs::fanout::Fanout::new();
        let (handle, _inbox) = crate::engine::channel(events.clone());
        let no_usage: super::super::UsageSource = Arc::new(|_| Box::pin(async { HashMap::new() }));
        let hub = spawn(
            handle,
            10,
            Redactor::new(["hunter22".to_string()]),
            no_usage,
        );
        // The hub asks the fan-out to keep items before any page opens; lines flow meanwhile.
        let first = join(&hub).await;
        assert_eq!(events.subscribers(), 1, "subscribed while a page is open");
        drop(first);
        tokio::time::sleep(FLUSH_EVERY * 2).await;
        assert_eq!(events.subscribers(), 0, "no subscription with no page open");
        for i in 0..30 {
            events.send(line(i));
        }
        let page = join(&hub).await;
        let texts = init_texts(&page);
        assert_eq!(texts.len(), 10, "{texts:?}");
        assert_eq!(texts[0], "l20 pw=****");
        assert_eq!(texts[9], "l29 pw=****");
        // Subscribed from the cut on: the next line comes in a batch, once.
        events.send(line(30));
        let mut page = page;
        let mut log: Vec<String> = Vec::new();
        while log.is_empty() {
            let batch = page.batches.recv().await.expect("a batch");
            let v: serde_json::Value = serde_json::from_str(&batch).unwrap();
            for i in v["log"].as_array().into_iter().flatten() {
                log.push(i["x"].as_str().unwrap().to_string());
            }
        }
        assert_eq!(log, ["l30 pw=****"]);
    }
}
