//! One line pump for both kinds of unit: bytes in, whole lines to the log mux, and the first
//! line of an instance that matches the `log` readiness pattern reported to the engine.

use regex::Regex;
use tokio::sync::mpsc;

use super::UnitEvent;
use crate::config::ServiceName;
use crate::logs::split::LineSplitter;
use crate::logs::{LogHandle, LogLine, Stream};

/// Splits one stream of an instance into lines and sends them on.
pub(crate) struct Pump {
    /// Shared by every line of this stream.
    service: std::sync::Arc<str>,
    epoch: u64,
    stream: Stream,
    logs: LogHandle,
    split: LineSplitter,
    matcher: Option<(Regex, mpsc::UnboundedSender<UnitEvent>)>,
    /// A line matched the readiness pattern; reported once it is in the mux.
    matched: bool,
}

impl Pump {
    pub(crate) fn new(
        service: &str,
        epoch: u64,
        stream: Stream,
        logs: LogHandle,
        matcher: Option<(Regex, mpsc::UnboundedSender<UnitEvent>)>,
    ) -> Self {
        Self {
            service: service.into(),
            epoch,
            stream,
            logs,
            split: LineSplitter::default(),
            matcher,
            matched: false,
        }
    }

    /// The lines these bytes complete go to the mux as one message.
    pub(crate) async fn push(&mut self, bytes: &[u8]) {
        let at = std::time::SystemTime::now();
        let lines: Vec<LogLine> = self
            .split
            .push(bytes)
            .into_iter()
            .map(|text| self.line(at, text))
            .collect();
        self.logs.lines(lines).await;
        self.report_match();
    }

    /// The last line, even without a newline.
    pub(crate) async fn finish(&mut self) {
        if let Some(text) = self.split.finish() {
            let line = self.line(std::time::SystemTime::now(), text);
            self.logs.line(line).await;
            self.report_match();
        }
    }

    /// Tells the engine about a match once the matching line is in the mux, so the `ready`
    /// that follows is never shown before the line that caused it.
    fn report_match(&mut self) {
        if let Some((_, tx)) = self.matcher.take_if(|(_, _)| self.matched) {
            // The engine outlives its units' pumps.
            let _ = tx.send(UnitEvent::LogMatched {
                service: ServiceName::from(self.service.to_string()),
                epoch: self.epoch,
            });
        }
    }

    fn line(&mut self, at: std::time::SystemTime, text: String) -> LogLine {
        if !self.matched
            && self
                .matcher
                .as_ref()
                .is_some_and(|(re, _)| re.is_match(&text))
        {
            self.matched = true;
        }
        LogLine::output(at, self.service.clone(), self.stream, text)
    }
}

/// Reads a pipe to its end through a [`Pump`].
pub(crate) async fn pump_pipe<R: tokio::io::AsyncRead + Unpin>(mut pipe: R, mut pump: Pump) {
    use tokio::io::AsyncReadExt;
    // A pipe holds 64 KiB: one read takes what a fast writer left, in one message to the mux.
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => pump.push(&buf[..n]).await,
        }
    }
    pump.finish().await;
}
