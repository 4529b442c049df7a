//! The log on NATS JetStream: one stream (file storage) with one subject.
//!
//! * append: a JetStream publish with the entry's id as `Nats-Msg-Id`,
//!   answered once the stream has stored it; JetStream drops a repeated id
//!   within its duplicate window and answers with the first entry's
//!   sequence, so a retry on another node is appended once;
//! * read: an ordered consumer from a stream sequence; it needs no acks,
//!   and the client recreates it after a gap or a reconnect from the last
//!   sequence it delivered;
//! * the connection reconnects by itself, forever; while it is down,
//!   appends fail at once (a 503 for the client, nothing acknowledged).

use std::time::Duration;

use async_nats::jetstream::{self, consumer, stream};
use async_trait::async_trait;
use bytes::Bytes;
use futures_util::stream::{BoxStream, StreamExt};

use super::{Appended, BusError, Entry, Log};

/// How long an append waits for the stream's acknowledgement.
const APPEND_TIMEOUT: Duration = Duration::from_secs(5);
/// How long JetStream remembers entry ids: retries within it are appended
/// once. Later retries are appended again and then recognised by the
/// store's `Idempotency-Key` record (kept a day), so nothing is applied
/// twice either way.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(600);
/// How long the stream keeps entries: how long a node may be away and
/// still catch up from the log.
const RETENTION: Duration = Duration::from_secs(7 * 24 * 3600);

pub struct NatsLog {
    client: async_nats::Client,
    js: jetstream::Context,
    url: String,
    stream: String,
    subject: String,
}

/// `url` without user and password.
fn shown(url: &str) -> String {
    match url.split_once("://") {
        Some((scheme, rest)) => match rest.rsplit_once('@') {
            Some((_, host)) => format!("{scheme}://{host}"),
            None => url.to_string(),
        },
        None => url.to_string(),
    }
}

/// Checks a stream name: what JetStream accepts and a subject can carry.
pub fn check_stream_name(name: &str) -> Result<(), String> {
    if name.is_empty()
        || name.len() > 64
        || !name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(format!(
            "--bus-stream {name:?}: use 1 to 64 letters, digits, '_' or '-'"
        ));
    }
    Ok(())
}

impl NatsLog {
    /// Starts connecting to `url` (`nats://HOST:PORT`) in the background:
    /// a node starts while NATS is down, and says so in its health.
    pub async fn connect(url: &str, stream: &str) -> Result<NatsLog, BusError> {
        check_stream_name(stream).map_err(BusError)?;
        let shown = shown(url);
        let client = async_nats::ConnectOptions::new()
            .name("trading-server")
            .retry_on_initial_connect()
            .max_reconnects(None)
            .connection_timeout(Duration::from_secs(2))
            // Quick first retries, so a restarted NATS is found in a
            // moment, then every two seconds.
            .reconnect_delay_callback(|attempts| {
                Duration::from_millis((attempts as u64 * 100).min(2_000))
            })
            .connect(url)
            .await
            .map_err(|e| BusError(format!("--bus {shown}: {e}")))?;
        let mut js = jetstream::new(client.clone());
        js.set_timeout(APPEND_TIMEOUT);
        Ok(NatsLog {
            client,
            js,
            url: shown,
            subject: format!("{stream}.ingest"),
            stream: stream.to_string(),
        })
    }

    fn failed(&self, what: &str, e: impl std::fmt::Display) -> BusError {
        BusError(format!(
            "the bus ({} stream {}) could not {what}: {e}",
            self.url, self.stream
        ))
    }
}

#[async_trait]
impl Log for NatsLog {
    fn name(&self) -> &str {
        &self.stream
    }

    fn describe(&self) -> String {
        self.url.clone()
    }

    fn connected(&self) -> bool {
        self.client.connection_state() == async_nats::connection::State::Connected
    }

    async fn prepare(&self) -> Result<(), BusError> {
        self.js
            .get_or_create_stream(stream::Config {
                name: self.stream.clone(),
                subjects: vec![self.subject.clone()],
                storage: stream::StorageType::File,
                max_age: RETENTION,
                duplicate_window: DUPLICATE_WINDOW,
                ..Default::default()
            })
            .await
            .map(drop)
            .map_err(|e| self.failed("create its stream", e))
    }

    async fn epoch(&self) -> Result<String, BusError> {
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| self.failed("find its stream", e))?;
        // When the stream was created, to the nanosecond.
        Ok(stream
            .cached_info()
            .created
            .unix_timestamp_nanos()
            .to_string())
    }

    async fn append(&self, id: &str, payload: Bytes) -> Result<Appended, BusError> {
        if !self.connected() {
            return Err(self.failed("take the request", "not connected"));
        }
        let publish = || {
            jetstream::message::PublishMessage::build()
                .payload(payload.clone())
                .message_id(id)
        };
        let sent = self
            .js
            .send_publish(self.subject.clone(), publish())
            .await
            .map_err(|e| self.failed("take the request", e))?
            .await;
        let ack = match sent {
            Ok(ack) => ack,
            // No stream takes the subject: it was deleted. Create it
            // again (the nodes notice the new incarnation) and retry once.
            Err(e) if e.kind() == jetstream::context::PublishErrorKind::StreamNotFound => {
                self.prepare().await?;
                self.js
                    .send_publish(self.subject.clone(), publish())
                    .await
                    .map_err(|e| self.failed("take the request", e))?
                    .await
                    .map_err(|e| self.failed("store the request", e))?
            }
            Err(e) => return Err(self.failed("store the request", e)),
        };
        Ok(Appended {
            seq: ack.sequence,
            duplicate: ack.duplicate,
        })
    }

    async fn read_from(
        &self,
        seq: u64,
    ) -> Result<BoxStream<'static, Result<Entry, BusError>>, BusError> {
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| self.failed("find its stream", e))?;
        let consumer = stream
            .create_consumer(consumer::pull::OrderedConfig {
                deliver_policy: consumer::DeliverPolicy::ByStartSequence {
                    start_sequence: seq.max(1),
                },
                ..Default::default()
            })
            .await
            .map_err(|e| self.failed("start reading", e))?;
        let messages = consumer
            .messages()
            .await
            .map_err(|e| self.failed("start reading", e))?;
        let (url, name) = (self.url.clone(), self.stream.clone());
        Ok(messages
            .map(move |m| {
                let m = m.map_err(|e| BusError(format!("reading {url} stream {name}: {e}")))?;
                let seq = m
                    .info()
                    .map_err(|e| BusError(format!("reading {url} stream {name}: {e}")))?
                    .stream_sequence;
                Ok(Entry {
                    seq,
                    payload: m.message.payload.clone(),
                })
            })
            .boxed())
    }

    async fn ends(&self) -> Result<Option<(Entry, Entry)>, BusError> {
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| self.failed("find its stream", e))?;
        let state = &stream.cached_info().state;
        if state.messages == 0 {
            return Ok(None);
        }
        let (first, last) = (state.first_sequence, state.last_sequence);
        let mut got = Vec::with_capacity(2);
        for seq in [first, last] {
            let m = stream
                .get_raw_message(seq)
                .await
                .map_err(|e| self.failed(&format!("read entry {seq}"), e))?;
            got.push(Entry {
                seq: m.sequence,
                payload: m.payload,
            });
        }
        let last = got.pop().expect("two entries");
        let first = got.pop().expect("two entries");
        Ok(Some((first, last)))
    }

    async fn last_seq(&self) -> Result<u64, BusError> {
        let stream = self
            .js
            .get_stream(&self.stream)
            .await
            .map_err(|e| self.failed("find its stream", e))?;
        Ok(stream.cached_info().state.last_sequence)
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn names_and_urls() {
        assert_eq!(super::shown("nats://u:p@h:4222"), "nats://h:4222");
        assert_eq!(super::shown("nats://h:4222"), "nats://h:4222");
        assert!(super::check_stream_name("TRADING_INGEST").is_ok());
        assert!(super::check_stream_name("a.b").is_err());
        assert!(super::check_stream_name("").is_err());
    }
}
