//! Shutdown signals: SIGTERM (orchestrators) and SIGINT (Ctrl-C).

use tokio::signal::unix::{Signal, SignalKind, signal};

/// Handlers for both signals, installed as soon as this is created, so a
/// signal that arrives during start-up is not lost (or fatal).
pub struct Signals {
    terminate: Signal,
    interrupt: Signal,
}

impl Signals {
    pub fn install() -> std::io::Result<Self> {
        Ok(Self {
            terminate: signal(SignalKind::terminate())?,
            interrupt: signal(SignalKind::interrupt())?,
        })
    }

    /// Waits for the next signal and returns its name.
    pub async fn recv(&mut self) -> &'static str {
        tokio::select! {
            _ = self.terminate.recv() => "SIGTERM",
            _ = self.interrupt.recv() => "SIGINT",
        }
    }

    /// Resolves on the first signal; a second one ends the process at once,
    /// for when a graceful shutdown takes longer than the operator will wait.
    pub async fn shutdown(mut self) {
        let name = self.recv().await;
        tracing::info!(
            signal = name,
            "shutting down gracefully (send it again to stop at once)"
        );
        tokio::spawn(async move {
            let name = self.recv().await;
            tracing::warn!(
                signal = name,
                "second signal: exiting without finishing requests"
            );
            std::process::exit(1);
        });
    }
}
