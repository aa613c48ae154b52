//! `wasi:logging`: guest log lines become host `tracing` events (target `weft::guest`), tagged
//! with the app and component, at the level the guest chose.

use crate::bindings::logging::logging::{self, Level};
use crate::CapabilityCtxView;

/// Longest message kept from one call; a guest cannot flood one log line.
const MAX_MESSAGE: usize = 16 * 1024;

fn clipped(text: &str) -> &str {
    if text.len() <= MAX_MESSAGE {
        return text;
    }
    let mut end = MAX_MESSAGE;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

impl logging::Host for CapabilityCtxView<'_> {
    async fn log(
        &mut self,
        level: Level,
        context: String,
        message: String,
    ) -> wasmtime::Result<()> {
        let workload = &*self.ctx.grants.workload;
        let (context, message) = (clipped(&context), clipped(&message));
        match level {
            Level::Trace => {
                tracing::trace!(target: "weft::guest", %workload, %context, "{message}")
            }
            Level::Debug => {
                tracing::debug!(target: "weft::guest", %workload, %context, "{message}")
            }
            Level::Info => tracing::info!(target: "weft::guest", %workload, %context, "{message}"),
            Level::Warn => tracing::warn!(target: "weft::guest", %workload, %context, "{message}"),
            Level::Error | Level::Critical => {
                tracing::error!(target: "weft::guest", %workload, %context, critical = matches!(level, Level::Critical), "{message}")
            }
        }
        Ok(())
    }
}
