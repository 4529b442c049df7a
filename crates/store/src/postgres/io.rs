//! The store's own runtime: one thread that drives every connection to the
//! database, and the ingest writer.
//!
//! The store is used from the server's runtimes (requests, the live
//! stream) and from the import command, which has none. A connection's
//! socket belongs to the runtime that drives it, so all of them live here,
//! on a runtime that lasts as long as the store; callers on any runtime
//! await their queries through the driver's channels, and callers on no
//! runtime wait for a task here ([`Io::wait`]).

use std::future::Future;
use std::time::Duration;

use tokio::runtime::Handle;
use tokio::sync::oneshot;
use tokio_postgres::{Client, Config, NoTls};
use trading_market::source::Reason;

pub struct Io {
    handle: Handle,
    /// Dropping it ends the runtime's thread.
    _stop: oneshot::Sender<()>,
}

impl Io {
    pub fn start() -> Result<Io, String> {
        let (started, handle) = std::sync::mpsc::channel();
        let (stop, stopped) = oneshot::channel::<()>();
        std::thread::Builder::new()
            .name("store-postgres".into())
            .spawn(move || {
                let runtime = tokio::runtime::Builder::new_multi_thread()
                    .worker_threads(2)
                    .thread_name("store-postgres")
                    .enable_all()
                    .build();
                match runtime {
                    Ok(runtime) => {
                        let _ = started.send(Ok(runtime.handle().clone()));
                        runtime.block_on(async {
                            let _ = stopped.await;
                        });
                        // Dropped here, on a thread of its own: a runtime
                        // cannot be dropped inside another's task.
                        runtime.shutdown_timeout(Duration::from_secs(1));
                    }
                    Err(e) => {
                        let _ = started.send(Err(format!("cannot start the store's runtime: {e}")));
                    }
                }
            })
            .map_err(|e| format!("cannot start the store's thread: {e}"))?;
        let handle = handle
            .recv()
            .map_err(|_| "the store's thread ended at start".to_string())??;
        Ok(Io {
            handle,
            _stop: stop,
        })
    }

    pub fn handle(&self) -> &Handle {
        &self.handle
    }

    /// Runs `work` here and waits for it, blocking the calling thread:
    /// for callers on no runtime (the import command) and for start-up.
    pub fn wait<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, String> {
        let (done, result) = std::sync::mpsc::sync_channel(1);
        self.handle.spawn(async move {
            let _ = done.send(work.await);
        });
        result.recv().map_err(|_| gone())
    }

    /// Runs `work` here, for callers on another runtime.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = T> + Send + 'static,
    ) -> Result<T, String> {
        self.handle.spawn(work).await.map_err(|_| gone())
    }
}

fn gone() -> String {
    "the store's runtime has stopped".into()
}

/// `e` with its causes: the driver's own message is only the kind of
/// error ("db error", "error connecting to server"); the database's
/// message or the system's reason is its source.
pub fn describe(e: &tokio_postgres::Error) -> String {
    let mut text = e.to_string();
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        text.push_str(": ");
        text.push_str(&c.to_string());
        cause = c.source();
    }
    text
}

/// The class of a PostgreSQL error, as clients are told it.
pub fn reason_of(e: &tokio_postgres::Error) -> Reason {
    use tokio_postgres::error::SqlState;
    match e.code() {
        Some(c) if *c == SqlState::DISK_FULL => Reason::DiskFull,
        Some(c) if *c == SqlState::READ_ONLY_SQL_TRANSACTION => Reason::ReadOnly,
        Some(c) if *c == SqlState::QUERY_CANCELED || *c == SqlState::LOCK_NOT_AVAILABLE => {
            Reason::Timeout
        }
        Some(c) if *c == SqlState::DATA_CORRUPTED || *c == SqlState::INDEX_CORRUPTED => {
            Reason::Damaged
        }
        _ => Reason::Unavailable,
    }
}

/// Opens a connection; its driver runs on the current runtime (call it
/// through [`Io`]).
pub async fn connect(config: &Config) -> Result<Client, tokio_postgres::Error> {
    let (client, connection) = config.connect(NoTls).await?;
    // Ends when the client is dropped or the server goes away; the next
    // query on the client reports why.
    tokio::spawn(async move {
        let _ = connection.await;
    });
    Ok(client)
}
