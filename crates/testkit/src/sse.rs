//! A Server-Sent Events reader for tests: the events of a `text/event-stream` response,
//! parsed by `eventsource-stream`, with their `data:` read as JSON.

use std::pin::Pin;
use std::time::Duration;

use eventsource_stream::Eventsource;
use futures::{Stream, StreamExt};
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

type Parsed = Pin<Box<dyn Stream<Item = Option<eventsource_stream::Event>> + Send>>;

/// The events of one response, read as they arrive.
pub struct EventStream {
    events: Parsed,
}

impl EventStream {
    pub fn new(response: reqwest::Response) -> Self {
        // A broken stream ends it, as the server ending it does.
        let events = response
            .bytes_stream()
            .eventsource()
            .map(Result::ok)
            .take_while(|event| std::future::ready(event.is_some()));
        Self {
            events: Box::pin(events),
        }
    }

    /// The next event, or `None` once the server ended the stream. Panics when none
    /// comes within `within`.
    pub async fn next(&mut self, within: Duration) -> Option<Event> {
        let next = tokio::time::timeout(within, self.events.next())
            .await
            .unwrap_or_else(|_| panic!("no event and no end within {within:?}"));
        next.flatten().map(|event| Event {
            id: (!event.id.is_empty()).then_some(event.id),
            data: serde_json::from_str(&event.data)
                .unwrap_or_else(|e| panic!("data is not JSON ({e}): {}", event.data)),
            event: event.event,
        })
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
}
