//! Names the spans of capability calls after the WIT function they call.

use std::borrow::Cow;
use std::time::Duration;

use opentelemetry::{Context, KeyValue};
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{Span, SpanData, SpanProcessor};
use opentelemetry_sdk::Resource;

/// wasmtime's generated bindings open one span per host-function call, all named
/// `wit-bindgen import` with the function and the interface's short name as fields; this
/// processor names each `wasi:keyvalue/store [method]bucket.get`, from the module the bindings
/// were generated in, before the spans go to `next`.
#[derive(Debug)]
pub(crate) struct CapabilityNames<P> {
    next: P,
}

impl<P> CapabilityNames<P> {
    pub(crate) fn new(next: P) -> Self {
        CapabilityNames { next }
    }
}

const BINDINGS: &str = "weft_capabilities::bindings::";

/// `wasi:keyvalue/store` for `weft_capabilities::bindings::wasi::keyvalue::store`.
fn interface_of(module: &str) -> Option<String> {
    let path = module.strip_prefix(BINDINGS)?;
    let mut parts = path.split("::");
    let namespace = parts.next()?;
    let package = parts.next()?;
    let interface: Vec<&str> = parts.collect();
    if interface.is_empty() {
        return None;
    }
    Some(format!(
        "{namespace}:{}/{}",
        package_name(package),
        interface.join("/").replace('_', "-")
    ))
}

/// `messaging@0.3.0` for `messaging0_3_0`: bindgen appends a package's version to its module
/// when the world imports more than one version of it.
fn package_name(module: &str) -> String {
    let versioned = module.char_indices().find(|&(i, c)| {
        let rest = &module[i..];
        c.is_ascii_digit()
            && i > 0
            && rest.matches('_').count() == 2
            && rest.chars().all(|c| c.is_ascii_digit() || c == '_')
    });
    match versioned {
        Some((i, _)) => format!(
            "{}@{}",
            module[..i].replace('_', "-"),
            module[i..].replace('_', ".")
        ),
        None => module.replace('_', "-"),
    }
}

fn rename(span: &mut SpanData) {
    if span.name != "wit-bindgen import" {
        return;
    }
    let text = |key: &str| {
        span.attributes
            .iter()
            .find(|kv| kv.key.as_str() == key)
            .map(|kv| kv.value.as_str().into_owned())
    };
    let (Some(module), Some(function)) = (text("target"), text("function")) else {
        return;
    };
    let Some(interface) = interface_of(&module) else {
        return;
    };
    span.name = Cow::Owned(format!("{interface} {function}"));
    span.attributes
        .retain(|kv| !matches!(kv.key.as_str(), "target" | "module"));
    span.attributes
        .push(KeyValue::new("weft.capability", interface));
}

impl<P: SpanProcessor> SpanProcessor for CapabilityNames<P> {
    fn on_start(&self, span: &mut Span, cx: &Context) {
        self.next.on_start(span, cx)
    }

    fn on_end(&self, mut span: SpanData) {
        rename(&mut span);
        self.next.on_end(span)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.next.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.next.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.next.set_resource(resource)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bindings_module_names_the_wit_interface() {
        assert_eq!(
            interface_of("weft_capabilities::bindings::wasi::keyvalue::store").as_deref(),
            Some("wasi:keyvalue/store")
        );
        assert_eq!(
            interface_of("weft_capabilities::bindings::wasmcloud::secrets::reveal").as_deref(),
            Some("wasmcloud:secrets/reveal")
        );
        assert_eq!(
            interface_of("weft_capabilities::bindings::weft::sql_db::query").as_deref(),
            Some("weft:sql-db/query")
        );
        assert_eq!(
            interface_of("weft_capabilities::bindings::wasmcloud::messaging0_3_0::types")
                .as_deref(),
            Some("wasmcloud:messaging@0.3.0/types")
        );
        assert_eq!(interface_of("weft_capabilities::bindings::wasi"), None);
        assert_eq!(
            interface_of("wasmtime_wasi::p2::bindings::io::streams"),
            None
        );
    }
}
