//! What clients are told when a source cannot answer: the class of the
//! fault (which decides a 503's code, its `Retry-After` and what `/ready`
//! says) apart from its details, which stay in the server's log.

/// Why a source cannot answer now: a class clients may be told, and the
/// details (hosts, files, the database's own words) for the log only.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Unhealthy {
    pub reason: Reason,
    pub detail: String,
}

/// What clients are told of a source's problem: a class they can act on
/// (the error code of a 503 and the reason `/ready` gives), never the
/// details.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reason {
    /// The store cannot be reached or does not answer.
    Unavailable,
    /// The store's disk is full: writes fail until space is freed.
    DiskFull,
    /// The store can be read but not written (a read-only file system or
    /// database).
    ReadOnly,
    /// The store is not the one the server opened (deleted, replaced,
    /// overwritten) or is malformed: an operator must look.
    Damaged,
    /// The store did not answer in time (a lock held, a statement timeout,
    /// a writer stuck on its disk).
    Timeout,
}

impl Reason {
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::Unavailable => "unavailable",
            Reason::DiskFull => "disk_full",
            Reason::ReadOnly => "read_only",
            Reason::Damaged => "damaged",
            Reason::Timeout => "timeout",
        }
    }

    /// The `error_code` of a 503 for this reason.
    pub fn error_code(self) -> &'static str {
        match self {
            Reason::Unavailable => "Unavailable",
            Reason::DiskFull => "StoreDiskFull",
            Reason::ReadOnly => "StoreReadOnly",
            Reason::Damaged => "StoreDamaged",
            Reason::Timeout => "Timeout",
        }
    }

    /// How long a client should wait before trying again (`Retry-After`,
    /// seconds): soon for what passes by itself, longer for what needs an
    /// operator.
    pub fn retry_after_s(self) -> u32 {
        match self {
            Reason::Timeout => 1,
            Reason::Unavailable => 5,
            Reason::DiskFull | Reason::ReadOnly => 30,
            Reason::Damaged => 60,
        }
    }

    /// What clients are told, in a sentence.
    pub fn explain(self) -> &'static str {
        match self {
            Reason::Unavailable => "the data store cannot be reached now",
            Reason::DiskFull => "the data store's disk is full",
            Reason::ReadOnly => "the data store cannot be written (read-only)",
            Reason::Damaged => {
                "the data store is damaged or is not the one the server opened; an operator must \
                 look"
            }
            Reason::Timeout => "the data store did not answer in time",
        }
    }
}

impl std::fmt::Display for Unhealthy {
    /// The public form: the class, never the detail.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "store {}: {}",
            self.reason.as_str(),
            self.reason.explain()
        )
    }
}
