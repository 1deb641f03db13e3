//! What the long-running tasks (server, worker, drainer, catch-up) share: the stop signal and
//! restarting a task that panicked.

use std::future::Future;

use tokio::sync::watch;

/// Completes once `stop` turns true (or its sender is gone).
pub(crate) async fn stopped(stop: &mut watch::Receiver<bool>) {
    // The guard `wait_for` returns must not live in the caller's future: it is not `Send`.
    let _ = stop.wait_for(|stop| *stop).await.is_ok();
}

/// Runs the task `make` builds until it returns or `stop` turns true; a task that panics is logged,
/// counted and started again after `delay`, so one bad batch cannot silently end processing while
/// webhooks are still acknowledged. Events it had claimed are taken again once their lease expires.
pub(crate) async fn supervise<F, Fut>(
    mut make: F,
    mut stop: watch::Receiver<bool>,
    delay: std::time::Duration,
) where
    F: FnMut() -> Fut,
    Fut: Future<Output = ()> + Send + 'static,
{
    loop {
        match tokio::spawn(make()).await {
            Ok(()) => return,
            Err(error) if error.is_panic() => {
                let message = panic_message(&*error.into_panic());
                metrics::counter!(crate::telemetry::names::WORKER_RESTARTS).increment(1);
                tracing::error!(panic = %message, delay_ms = delay.as_millis() as u64, "worker panicked; starting it again");
            }
            Err(_) => return,
        }
        if *stop.borrow() {
            return;
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = stop.wait_for(|stop| *stop) => return,
        }
    }
}

/// The message a panic was raised with, when it is text.
pub(crate) fn panic_message(payload: &(dyn std::any::Any + Send)) -> String {
    payload
        .downcast_ref::<&str>()
        .map(|s| (*s).to_owned())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "(no message)".to_owned())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn a_panicking_task_is_started_again_until_it_returns() {
        let starts = Arc::new(AtomicUsize::new(0));
        let (_stop_tx, stop_rx) = watch::channel(false);
        let counter = starts.clone();
        let make = move || {
            let counter = counter.clone();
            async move {
                if counter.fetch_add(1, Ordering::SeqCst) < 2 {
                    panic!("a bad batch");
                }
            }
        };
        tokio::time::timeout(
            Duration::from_secs(10),
            supervise(make, stop_rx, Duration::from_millis(10)),
        )
        .await
        .expect("the supervisor returns once the task does");
        assert_eq!(starts.load(Ordering::SeqCst), 3);
    }

    #[tokio::test]
    async fn a_stop_during_the_restart_delay_ends_supervision() {
        let starts = Arc::new(AtomicUsize::new(0));
        let (stop_tx, stop_rx) = watch::channel(false);
        let counter = starts.clone();
        let make = move || {
            counter.fetch_add(1, Ordering::SeqCst);
            async { panic!("always") }
        };
        let supervisor = tokio::spawn(supervise(make, stop_rx, Duration::from_secs(3600)));
        while starts.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        stop_tx.send(true).unwrap();
        tokio::time::timeout(Duration::from_secs(10), supervisor)
            .await
            .expect("the supervisor stops without waiting out the delay")
            .unwrap();
        assert_eq!(starts.load(Ordering::SeqCst), 1);
    }
}
