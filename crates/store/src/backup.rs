//! `trading-server backup --store S FILE`: a consistent copy of a store,
//! also while a server is writing to it.
//!
//! SQLite's `VACUUM INTO` reads one snapshot of the store (readers never
//! block the writer in WAL mode) and writes it as a new, compact file with
//! nothing in a log. PostgreSQL has its own tool for this, `pg_dump`; the
//! command says how to use it rather than doing less well.

use std::path::PathBuf;

use clap::Args;

use crate::import::Failed;
use crate::StoreUrl;

#[derive(Args, Debug, Clone)]
pub struct BackupArgs {
    /// The store: a file path, sqlite:PATH or postgres://USER@HOST:PORT/DB.
    #[arg(long, env = "TRADING_STORE")]
    pub store: String,

    /// The copy to write (it must not exist yet).
    pub file: PathBuf,
}

pub fn backup(args: &BackupArgs) -> Result<(), Failed> {
    let fail = |e: String| {
        eprintln!("trading-server backup: {e}");
        Failed
    };
    match StoreUrl::parse(&args.store).map_err(fail)? {
        StoreUrl::Sqlite(path) => {
            if !path.exists() {
                return Err(fail(format!("there is no store at {}", path.display())));
            }
            crate::sqlite::backup(&path, &args.file).map_err(fail)?;
            eprintln!(
                "trading-server backup: {} copied to {}; restore it by stopping the server and \
                 copying it over the store file",
                path.display(),
                args.file.display()
            );
            Ok(())
        }
        StoreUrl::Postgres(_) => Err(fail(
            "a PostgreSQL store is backed up with PostgreSQL's own tools: \
             `pg_dump --format=custom --dbname=URL --file=FILE` (consistent while the servers \
             run), and restored with `pg_restore --clean --if-exists --dbname=URL FILE` while \
             they are stopped; see docs/DEPLOYMENT.md"
                .into(),
        )),
    }
}
