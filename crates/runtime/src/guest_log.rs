//! A guest's stdout and stderr, turned into the host's log lines tagged with the workload, so
//! output of thousands of apps stays attributable and never interleaves mid-line.

use std::pin::Pin;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};

use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};

/// Longest line kept whole; a longer one is logged in pieces of this size.
const MAX_LINE: usize = 8 * 1024;

/// Lines one instance may log, stdout and stderr together: enough for any diagnosis, while a
/// guest printing in a loop cannot flood the host's log (and its disk) for every other app.
pub(crate) const MAX_LINES_PER_INSTANCE: u32 = 100;

/// Which of the guest's streams.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stream {
    Stdout,
    Stderr,
}

/// The stdout or stderr handed to one instance.
#[derive(Clone)]
pub(crate) struct GuestLog {
    workload: Arc<str>,
    stream: Stream,
    /// Lines this instance has logged, on both streams.
    lines: Arc<AtomicU32>,
}

impl GuestLog {
    /// The instance's stdout and stderr, sharing one line budget.
    pub(crate) fn pair(workload: &Arc<str>) -> (Self, Self) {
        let lines = Arc::new(AtomicU32::new(0));
        let log = |stream| GuestLog {
            workload: workload.clone(),
            stream,
            lines: lines.clone(),
        };
        (log(Stream::Stdout), log(Stream::Stderr))
    }

    /// Gives the instance its whole line budget again, as a new instance has.
    pub(crate) fn restart(&self) {
        self.lines.store(0, Ordering::Relaxed);
    }
}

impl IsTerminal for GuestLog {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for GuestLog {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(LineWriter {
            log: self.clone(),
            line: Vec::new(),
        })
    }
}

/// Buffers bytes until a newline, then logs the line.
struct LineWriter {
    log: GuestLog,
    line: Vec<u8>,
}

impl LineWriter {
    fn emit(&mut self) {
        if self.line.is_empty() {
            return;
        }
        let logged = self.log.lines.fetch_add(1, Ordering::Relaxed);
        if logged >= MAX_LINES_PER_INSTANCE {
            if logged == MAX_LINES_PER_INSTANCE {
                tracing::warn!(
                    target: "weft::guest",
                    workload = %self.log.workload,
                    "this instance has logged {MAX_LINES_PER_INSTANCE} lines; the rest of its \
                     output is dropped"
                );
            }
            self.line.clear();
            return;
        }
        let text = String::from_utf8_lossy(&self.line);
        let text = text.trim_end_matches(['\n', '\r']);
        let workload = &*self.log.workload;
        match self.log.stream {
            Stream::Stdout => {
                tracing::info!(target: "weft::guest", %workload, stream = "stdout", "{text}")
            }
            Stream::Stderr => {
                tracing::warn!(target: "weft::guest", %workload, stream = "stderr", "{text}")
            }
        }
        self.line.clear();
    }
}

impl AsyncWrite for LineWriter {
    fn poll_write(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        for &byte in buf {
            self.line.push(byte);
            if byte == b'\n' || self.line.len() >= MAX_LINE {
                self.emit();
            }
        }
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        self.emit();
        Poll::Ready(Ok(()))
    }
}

impl Drop for LineWriter {
    fn drop(&mut self) {
        // A last line without its newline is still the guest's output.
        self.emit();
    }
}
