//! The low-priority thread that does the routing state's CPU work: reading, parsing and
//! compiling routes, and freeing replaced tables.
//!
//! That work is tens of milliseconds for a large file, and on a busy core it competes with
//! the threads serving requests. This thread runs at the lowest priority (nice 19; Linux
//! keeps nice values per thread), so when both are ready the scheduler gives the request
//! threads the core, and a reload storm slows reloads down before it slows requests.

use std::panic::{AssertUnwindSafe, catch_unwind};
use std::sync::mpsc;

type Job = Box<dyn FnOnce() + Send>;

/// A handle to the thread; it exits once every handle is gone.
#[derive(Clone)]
pub struct Background {
    jobs: mpsc::Sender<Job>,
}

/// The background thread is gone (it could not be started, or the job panicked).
#[derive(Debug, thiserror::Error)]
#[error("the background worker did not finish the job")]
pub struct Lost;

// === impl Background ===

impl Background {
    pub fn start() -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        std::thread::Builder::new().name("graygate-background".into()).spawn(move || {
            if let Err(error) = rustix::process::setpriority_process(None, 19) {
                tracing::debug!(%error, "background thread keeps the default priority");
            }
            for job in queue {
                // A panicking job loses its result (its caller sees `Lost`), not the thread.
                let _ = catch_unwind(AssertUnwindSafe(job));
            }
        })?;
        Ok(Background { jobs })
    }

    /// Runs `work` on the background thread and waits for its result.
    pub async fn run<T: Send + 'static>(&self, work: impl FnOnce() -> T + Send + 'static) -> Result<T, Lost> {
        let (done, result) = tokio::sync::oneshot::channel();
        self.jobs
            .send(Box::new(move || {
                let _ = done.send(work());
            }))
            .map_err(|_| Lost)?;
        result.await.map_err(|_| Lost)
    }

    /// Queues `work` without waiting for it (freeing memory, say).
    pub fn spawn(&self, work: impl FnOnce() + Send + 'static) {
        if self.jobs.send(Box::new(work)).is_err() {
            tracing::warn!("background worker gone; work dropped");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn jobs_run_off_the_caller_thread_at_the_lowest_priority_and_survive_a_panic() {
        let background = Background::start().unwrap_or_else(|e| unreachable!("{e}"));
        let caller = std::thread::current().id();
        let (thread, nice) = background
            .run(|| (std::thread::current().id(), rustix::process::getpriority_process(None)))
            .await
            .unwrap_or_else(|e| unreachable!("{e}"));
        assert_ne!(thread, caller);
        assert_eq!(nice.ok(), Some(19));
        #[allow(clippy::panic)]
        let lost = background.run(|| panic!("a bug in a job")).await;
        assert!(lost.is_err());
        assert_eq!(background.run(|| 6 * 7).await.ok(), Some(42), "the thread outlives a panicking job");
    }
}
