//! A future polled only when it has been woken itself, beside a busier one in the same task.
//!
//! A connection's task is woken several times per request (client socket, upstream socket,
//! hyper's channels); `tokio::select!` polls every branch on every wake-up, so the control
//! futures beside the connection (shutdown, idle check, abort) were polled as often as the
//! connection for nothing. [`Gated`] gives its future a waker of its own that records the
//! wake-up before passing it on to the task: on the task's other wake-ups, polling it costs
//! one atomic swap.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Wake, Waker};

pub struct Gated<F> {
    future: Pin<Box<F>>,
    flag: Arc<Flag>,
    waker: Waker,
}

/// Whether the gated future was woken, and the task to wake then.
struct Flag {
    woken: AtomicBool,
    task: Mutex<Option<Waker>>,
}

impl<F: Future> Gated<F> {
    pub fn new(future: F) -> Self {
        let flag = Arc::new(Flag { woken: AtomicBool::new(true), task: Mutex::new(None) });
        Gated { future: Box::pin(future), waker: Waker::from(Arc::clone(&flag)), flag }
    }

    /// Polls the future if it was woken since its last poll (and on the first call).
    pub fn poll_gated(&mut self, cx: &mut Context<'_>) -> Poll<F::Output> {
        if !self.flag.woken.swap(false, Ordering::AcqRel) {
            return Poll::Pending;
        }
        {
            let mut task = self.flag.task.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
            if !task.as_ref().is_some_and(|known| known.will_wake(cx.waker())) {
                *task = Some(cx.waker().clone());
            }
        }
        self.future.as_mut().poll(&mut Context::from_waker(&self.waker))
    }
}

impl Wake for Flag {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }

    fn wake_by_ref(self: &Arc<Self>) {
        self.woken.store(true, Ordering::Release);
        if let Some(task) = self.task.lock().unwrap_or_else(|poisoned| poisoned.into_inner()).as_ref() {
            task.wake_by_ref();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

    use std::sync::atomic::AtomicUsize;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn the_future_is_polled_only_after_its_own_wake_up_and_completes_with_it() {
        let polls = Arc::new(AtomicUsize::new(0));
        let (send, mut receive) = tokio::sync::oneshot::channel::<u8>();
        let counted = Arc::clone(&polls);
        let mut gated = Gated::new(std::future::poll_fn(move |cx| {
            counted.fetch_add(1, Ordering::SeqCst);
            Pin::new(&mut receive).poll(cx)
        }));
        // Ten wake-ups of the task that are not the gated future's: one poll (the first).
        for _ in 0..10 {
            assert!(std::future::poll_fn(|cx| Poll::Ready(gated.poll_gated(cx))).await.is_pending());
        }
        assert_eq!(polls.load(Ordering::SeqCst), 1);
        send.send(7).unwrap();
        let value = tokio::time::timeout(Duration::from_secs(5), std::future::poll_fn(|cx| gated.poll_gated(cx)))
            .await
            .expect("the gated future's own wake-up reaches the task");
        assert_eq!(value.unwrap(), 7);
        assert_eq!(polls.load(Ordering::SeqCst), 2);
    }
}
