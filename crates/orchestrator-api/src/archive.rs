//! Archive files of finished tasks: one JSON document per line
//! (`orchestrator_store::archive`), zstd-compressed, one zstd frame per batch so that
//! each batch is complete on disk (written and synced) before its tasks are removed.
//! A file of several frames reads back as one stream (`zstd -dc FILE` too).
//!
//! `orchestrator-api archive --before DATE --out FILE` writes the tasks that finished
//! before DATE (removing nothing); the retention job, with `ARCHIVE_DIR` set, writes each
//! batch it removes first; `orchestrator-api archive restore FILE` puts tasks back.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};

use anyhow::Context;
use chrono::{DateTime, NaiveDate, Utc};
use orchestrator_store::archive::{self, ArchivedTask, Restored};
use orchestrator_store::{DbPool, retention};

/// Tasks read, written or restored per round.
const BATCH: i64 = 500;
/// zstd's level: its default, a good ratio for little CPU.
const LEVEL: i32 = 3;

/// `orchestrator-api archive`.
#[derive(Debug, Clone, clap::Args)]
#[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
pub struct ArchiveArgs {
    #[command(subcommand)]
    pub command: Option<ArchiveCommand>,

    /// Archive the tasks that finished before this time: RFC 3339
    /// (2026-11-01T00:00:00Z) or a date (2026-11-01, midnight UTC).
    #[arg(long, required = true, value_parser = parse_before)]
    pub before: Option<DateTime<Utc>>,

    /// The archive file to write (zstd-compressed JSON lines); it must not exist yet.
    #[arg(long, required = true)]
    pub out: Option<PathBuf>,
}

#[derive(Debug, Clone, clap::Subcommand)]
pub enum ArchiveCommand {
    /// Put the tasks of an archive file back (tasks already present are left alone).
    Restore {
        /// The archive file.
        file: PathBuf,
    },
}

fn parse_before(text: &str) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    NaiveDate::parse_from_str(text, "%Y-%m-%d")
        .ok()
        .and_then(|date| date.and_hms_opt(0, 0, 0))
        .map(|at| at.and_utc())
        .ok_or_else(|| {
            format!("{text:?} is neither RFC 3339 (2026-11-01T00:00:00Z) nor a date (2026-11-01)")
        })
}

/// An archive file being written.
#[derive(Debug)]
pub struct ArchiveFile {
    file: File,
    path: PathBuf,
    pub tasks: u64,
    pub service_requests: u64,
}

impl ArchiveFile {
    /// Creates `path`, which must not exist: an archive is never overwritten.
    pub fn create(path: &Path) -> anyhow::Result<Self> {
        let file = OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(path)
            .with_context(|| format!("creating the archive file {}", path.display()))?;
        Ok(Self {
            file,
            path: path.to_owned(),
            tasks: 0,
            service_requests: 0,
        })
    }

    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Appends `tasks` as one zstd frame and syncs the file: once this returns, they are
    /// on disk.
    pub fn append(&mut self, tasks: &[ArchivedTask]) -> anyhow::Result<()> {
        let mut encoder = zstd::stream::write::Encoder::new(&mut self.file, LEVEL)
            .context("starting a zstd frame")?;
        for task in tasks {
            encoder.write_all(task.document.as_bytes())?;
            encoder.write_all(b"\n")?;
        }
        encoder.finish().context("finishing a zstd frame")?;
        self.file
            .sync_data()
            .with_context(|| format!("syncing {}", self.path.display()))?;
        self.tasks += tasks.len() as u64;
        self.service_requests += tasks
            .iter()
            .map(|task| u64::try_from(task.service_requests).unwrap_or(0))
            .sum::<u64>();
        Ok(())
    }

    /// The file's size so far, in bytes.
    pub fn bytes(&self) -> u64 {
        self.file.metadata().map_or(0, |meta| meta.len())
    }
}

/// [`ArchiveFile::append`] off the async threads (compressing and syncing block); the
/// file back once the tasks are on disk.
pub async fn append(
    mut file: ArchiveFile,
    tasks: Vec<ArchivedTask>,
) -> anyhow::Result<ArchiveFile> {
    tokio::task::spawn_blocking(move || file.append(&tasks).map(|()| file))
        .await
        .context("archive writer thread")?
}

/// `archive --before DATE --out FILE`: every tenant's tasks that finished before
/// `before`, written to `out`; removes nothing.
pub async fn write(
    pool: &DbPool,
    before: DateTime<Utc>,
    out: &Path,
) -> anyhow::Result<ArchiveFile> {
    let mut file = ArchiveFile::create(out)?;
    let mut conn = pool.get().await?;
    for tenant in retention::tenants_with_finished_tasks(&mut conn).await? {
        let mut after = None;
        loop {
            let page = archive::finished_page(&mut conn, &tenant, before, after, BATCH).await?;
            let Some(last) = page.last() else { break };
            after = Some((last.updated_at, last.id));
            let full = page.len() as i64 == BATCH;
            file = append(file, page).await?;
            if !full {
                break;
            }
        }
    }
    Ok(file)
}

/// `archive restore FILE`: puts its tasks back, [`BATCH`] at a time.
pub async fn restore(pool: &DbPool, path: &Path) -> anyhow::Result<Restored> {
    let reader = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let (sender, mut receiver) =
        tokio::sync::mpsc::channel::<anyhow::Result<Vec<serde_json::Value>>>(2);
    let shown = path.display().to_string();
    let reading = tokio::task::spawn_blocking(move || {
        let decoder = match zstd::stream::read::Decoder::new(reader) {
            Ok(decoder) => decoder,
            Err(error) => {
                let _ = sender.blocking_send(Err(
                    anyhow::Error::new(error).context("reading the zstd stream")
                ));
                return;
            }
        };
        let mut chunk = Vec::new();
        for (number, line) in BufReader::new(decoder).lines().enumerate() {
            let document = line
                .with_context(|| format!("reading {shown}"))
                .and_then(|line| {
                    serde_json::from_str::<serde_json::Value>(&line).with_context(|| {
                        format!("{shown}: line {} is not a task document", number + 1)
                    })
                });
            match document {
                Ok(document) => chunk.push(document),
                Err(error) => {
                    let _ = sender.blocking_send(Err(error));
                    return;
                }
            }
            if chunk.len() as i64 == BATCH
                && sender
                    .blocking_send(Ok(std::mem::take(&mut chunk)))
                    .is_err()
            {
                return;
            }
        }
        if !chunk.is_empty() {
            let _ = sender.blocking_send(Ok(chunk));
        }
    });
    let mut total = Restored::default();
    let mut conn = pool.get().await?;
    while let Some(chunk) = receiver.recv().await {
        let restored = archive::restore(&mut conn, &chunk?)
            .await
            .context("restoring tasks")?;
        total.tasks += restored.tasks;
        total.skipped += restored.skipped;
    }
    reading.await.context("archive reader thread")?;
    Ok(total)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn before_takes_a_time_or_a_date() {
        assert_eq!(
            parse_before("2026-11-01").expect("date").to_rfc3339(),
            "2026-11-01T00:00:00+00:00"
        );
        assert_eq!(
            parse_before("2026-11-01T12:30:00+02:00")
                .expect("time")
                .to_rfc3339(),
            "2026-11-01T10:30:00+00:00"
        );
        assert!(parse_before("yesterday").is_err());
    }
}
