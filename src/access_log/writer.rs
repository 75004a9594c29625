//! The access log's writer thread: every [`FLUSH`](super::FLUSH) (or sooner, when the buffer
//! grows past its high-water mark) it takes the whole buffer of formatted lines and writes it
//! to stdout or the file in one call; it reopens the file when asked (SIGUSR1, after
//! logrotate's rename).
//!
//! A thread, not a task: a write to a slow disk or a full pipe blocks, and it must block
//! nothing but this thread (requests keep appending, and past the buffer's bound their lines
//! are dropped and counted). It ends when the last handle is gone, after writing what is
//! buffered.

use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::thread::JoinHandle;

use super::{Shared, Sink};

enum Out {
    Stdout(std::io::Stdout),
    File(File),
    /// The file could not be opened: lines are discarded until a reopen succeeds.
    Closed,
}

pub(super) fn spawn(sink: Sink, shared: Arc<Shared>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("access-log".into()).spawn(move || run(&sink, &shared))
}

fn run(sink: &Sink, shared: &Arc<Shared>) {
    let mut out = open(sink);
    let mut batch: Vec<u8> = Vec::new();
    loop {
        std::thread::park_timeout(super::FLUSH);
        if shared.reopen.swap(false, Ordering::AcqRel) {
            out = open(sink);
            tracing::info!(?sink, "access log reopened");
        }
        // Only this thread holds the shared state once every handle is gone: what is buffered
        // now is the last of it.
        let last = Arc::strong_count(shared) == 1;
        {
            let mut pending = shared.pending.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            std::mem::swap(&mut *pending, &mut batch);
        }
        if !batch.is_empty() {
            write(&mut out, &batch);
            batch.clear();
        }
        if last {
            return;
        }
    }
}

fn open(sink: &Sink) -> Out {
    match sink {
        Sink::Stdout => Out::Stdout(std::io::stdout()),
        Sink::File(path) => match open_append(path) {
            Ok(file) => Out::File(file),
            Err(error) => {
                tracing::error!(path = %path.display(), %error, "cannot open the access log; lines are dropped until SIGUSR1 reopens it");
                Out::Closed
            }
        },
    }
}

fn open_append(path: &Path) -> std::io::Result<File> {
    OpenOptions::new().create(true).append(true).open(path)
}

/// One batch of whole lines: a write error loses this batch, never part of a line.
fn write(out: &mut Out, text: &[u8]) {
    let result = match out {
        Out::Stdout(stdout) => stdout.lock().write_all(text).and_then(|()| stdout.lock().flush()),
        Out::File(file) => file.write_all(text),
        Out::Closed => Ok(()),
    };
    if let Err(error) = result {
        tracing::warn!(%error, "access log write failed");
    }
}
