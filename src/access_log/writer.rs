//! The access log's writer thread: drains the queue into stdout or a file, flushing when the
//! queue runs empty, and reopens the file when asked (SIGUSR1, after logrotate's rename).
//!
//! A thread, not a task: a write to a slow disk or a full pipe blocks, and it must block
//! nothing but this thread. It ends when the last handle is gone, after writing what is
//! queued.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, Write};
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::thread::JoinHandle;
use std::time::Duration;

use super::Sink;

/// How often an idle writer looks for a reopen request.
const IDLE_CHECK: Duration = Duration::from_millis(200);

/// A reopen asked for and not yet done.
#[derive(Debug, Default)]
pub struct Reopen(AtomicBool);

impl Reopen {
    pub fn request(&self) {
        self.0.store(true, Ordering::Release);
    }

    fn take(&self) -> bool {
        self.0.swap(false, Ordering::AcqRel)
    }
}

enum Out {
    Stdout(BufWriter<std::io::Stdout>),
    File(BufWriter<File>),
    /// The file could not be opened: lines are discarded until a reopen succeeds.
    Closed,
}

pub fn spawn(sink: Sink, lines: Receiver<Vec<u8>>, reopen: Arc<Reopen>) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new().name("access-log".into()).spawn(move || run(&sink, &lines, &reopen))
}

fn run(sink: &Sink, lines: &Receiver<Vec<u8>>, reopen: &Reopen) {
    let mut out = open(sink);
    loop {
        if reopen.take() {
            flush(&mut out);
            out = open(sink);
            tracing::info!(?sink, "access log reopened");
        }
        match lines.recv_timeout(IDLE_CHECK) {
            Ok(line) => {
                write(&mut out, &line);
                // Write what else is queued, then flush once: one syscall per burst.
                while let Ok(line) = lines.try_recv() {
                    write(&mut out, &line);
                }
                flush(&mut out);
            }
            Err(RecvTimeoutError::Timeout) => {}
            Err(RecvTimeoutError::Disconnected) => {
                flush(&mut out);
                return;
            }
        }
    }
}

fn open(sink: &Sink) -> Out {
    match sink {
        Sink::Stdout => Out::Stdout(BufWriter::new(std::io::stdout())),
        Sink::File(path) => match open_append(path) {
            Ok(file) => Out::File(BufWriter::with_capacity(64 * 1024, file)),
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

fn write(out: &mut Out, line: &[u8]) {
    let result = match out {
        Out::Stdout(w) => w.write_all(line),
        Out::File(w) => w.write_all(line),
        Out::Closed => Ok(()),
    };
    if let Err(error) = result {
        tracing::warn!(%error, "access log write failed");
    }
}

fn flush(out: &mut Out) {
    let result = match out {
        Out::Stdout(w) => w.flush(),
        Out::File(w) => w.flush(),
        Out::Closed => Ok(()),
    };
    if let Err(error) = result {
        tracing::warn!(%error, "access log flush failed");
    }
}
