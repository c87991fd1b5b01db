//! A Server-Sent Events reader for tests: the events of a `text/event-stream`
//! response, parsed by the rules of the HTML specification that matter here (`id:`,
//! `event:`, `data:` lines, comments, a blank line ends an event).

use std::time::Duration;

use serde_json::Value;

/// One event of a stream.
#[derive(Debug, Clone, PartialEq)]
pub struct Event {
    pub id: Option<String>,
    /// `message` when the stream named none.
    pub event: String,
    /// The `data:` parsed as JSON.
    pub data: Value,
}

/// The events of one response, read as they arrive.
pub struct EventStream {
    response: reqwest::Response,
    buffer: String,
    /// Comment lines seen (heartbeats, the opening comment).
    pub comments: usize,
    ended: bool,
}

impl EventStream {
    pub fn new(response: reqwest::Response) -> Self {
        Self {
            response,
            buffer: String::new(),
            comments: 0,
            ended: false,
        }
    }

    /// The next event, or `None` once the server ended the stream. Panics when none
    /// comes within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Event> {
        tokio::time::timeout(within, self.next_event())
            .await
            .unwrap_or_else(|_| panic!("no event and no end within {within:?}"))
    }

    /// Every event until the server ends the stream, which must happen within
    /// `within`.
    pub async fn rest(&mut self, within: Duration) -> Vec<Event> {
        let deadline = tokio::time::Instant::now() + within;
        let mut events = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.next(left).await {
                Some(event) => events.push(event),
                None => return events,
            }
        }
    }

    async fn next_event(&mut self) -> Option<Event> {
        loop {
            if let Some(event) = self.parse_one() {
                return Some(event);
            }
            if self.ended {
                return None;
            }
            match self.response.chunk().await {
                Ok(Some(chunk)) => self.buffer.push_str(&String::from_utf8_lossy(&chunk)),
                Ok(None) | Err(_) => self.ended = true,
            }
        }
    }

    /// Takes one complete event (or comment-only block) off the buffer.
    fn parse_one(&mut self) -> Option<Event> {
        loop {
            let end = self.buffer.find("\n\n")?;
            let block: String = self.buffer.drain(..end + 2).collect();
            let (mut id, mut event, mut data) = (None, None, Vec::new());
            for line in block.lines() {
                if line.starts_with(':') {
                    self.comments += 1;
                    continue;
                }
                let (field, value) = line.split_once(':').unwrap_or((line, ""));
                let value = value.strip_prefix(' ').unwrap_or(value);
                match field {
                    "id" => id = Some(value.to_owned()),
                    "event" => event = Some(value.to_owned()),
                    "data" => data.push(value.to_owned()),
                    _ => {}
                }
            }
            if data.is_empty() {
                continue;
            }
            let data = data.join("\n");
            return Some(Event {
                id,
                event: event.unwrap_or_else(|| "message".to_owned()),
                data: serde_json::from_str(&data)
                    .unwrap_or_else(|e| panic!("data is not JSON ({e}): {data}")),
            });
        }
    }
}
