//! One line pump for both kinds of unit: bytes in, whole lines to the log mux, and the first
//! line of an instance that matches the `log` readiness pattern reported to the engine.

use regex::Regex;
use tokio::sync::mpsc;

use super::UnitEvent;
use crate::logs::split::LineSplitter;
use crate::logs::{LogHandle, LogLine, Stream};

/// Splits one stream of an instance into lines and sends them on.
pub struct Pump {
    service: String,
    epoch: u64,
    stream: Stream,
    logs: LogHandle,
    split: LineSplitter,
    matcher: Option<(Regex, mpsc::UnboundedSender<UnitEvent>)>,
}

impl Pump {
    pub fn new(
        service: &str,
        epoch: u64,
        stream: Stream,
        logs: LogHandle,
        matcher: Option<(Regex, mpsc::UnboundedSender<UnitEvent>)>,
    ) -> Self {
        Self {
            service: service.to_string(),
            epoch,
            stream,
            logs,
            split: LineSplitter::default(),
            matcher,
        }
    }

    pub async fn push(&mut self, bytes: &[u8]) {
        for text in self.split.push(bytes) {
            self.emit(text).await;
        }
    }

    /// The last line, even without a newline.
    pub async fn finish(&mut self) {
        if let Some(text) = self.split.finish() {
            self.emit(text).await;
        }
    }

    async fn emit(&mut self, text: String) {
        if self
            .matcher
            .as_ref()
            .is_some_and(|(re, _)| re.is_match(&text))
        {
            if let Some((_, tx)) = self.matcher.take() {
                // The engine outlives its units' pumps.
                let _ = tx.send(UnitEvent::LogMatched {
                    service: self.service.clone(),
                    epoch: self.epoch,
                });
            }
        }
        self.logs
            .line(LogLine {
                at: std::time::SystemTime::now(),
                source: self.service.clone(),
                stream: self.stream,
                text,
            })
            .await;
    }
}

/// Reads a pipe to its end through a [`Pump`].
pub async fn pump_pipe<R: tokio::io::AsyncRead + Unpin>(mut pipe: R, mut pump: Pump) {
    use tokio::io::AsyncReadExt;
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        match pipe.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => pump.push(&buf[..n]).await,
        }
    }
    pump.finish().await;
}
