//! `wasmcloud:messaging@0.3.0`: clients named by link, messages as resources whose metadata
//! travels as NATS headers, requests that gather several replies, and replies to delivered
//! messages through the broker they came from.

use std::sync::Arc;
use std::time::Duration;

use wasmtime::component::Resource;
use wasmtime::Store;

use super::{Broker, Message, MAX_REQUEST_TIMEOUT, MESSAGING};
use crate::bindings::messaging0_3_0::{producer, request_reply, types};
use crate::{CapabilityCtxView, CapabilityView};

/// The header a message's content type travels in.
const CONTENT_TYPE: &str = "content-type";
/// How long a request waits when the guest sets no timeout: NATS's own default.
const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(10);
/// The most replies one request gathers.
const MAX_REPLIES: u32 = 1024;

/// A client: the messaging link `connect` named, until `disconnect`.
pub struct Client {
    link: String,
    broker: Option<Arc<dyn Broker>>,
}

/// A message as the guest sees it; one the host delivered or received as a reply keeps its
/// broker and reply subject, so `reply` answers where it came from.
#[derive(Default)]
pub struct Envelope {
    topic: Option<String>,
    reply_to: Option<String>,
    content_type: Option<String>,
    data: Vec<u8>,
    metadata: Option<Vec<(String, String)>>,
    broker: Option<Arc<dyn Broker>>,
}

impl Envelope {
    fn received(mut message: Message, broker: Arc<dyn Broker>) -> Self {
        let content_type = message
            .headers
            .iter()
            .position(|(name, _)| name.eq_ignore_ascii_case(CONTENT_TYPE))
            .map(|at| message.headers.remove(at).1);
        Envelope {
            topic: Some(message.subject),
            reply_to: message.reply_to,
            content_type,
            data: message.body.to_vec(),
            metadata: (!message.headers.is_empty()).then_some(message.headers),
            broker: Some(broker),
        }
    }

    /// The broker message that sends this envelope's content on `subject`.
    fn outgoing(&self, subject: String) -> Message {
        let mut headers = self.metadata.clone().unwrap_or_default();
        if let Some(content_type) = &self.content_type {
            headers.push((CONTENT_TYPE.to_string(), content_type.clone()));
        }
        Message {
            headers,
            ..Message::new(subject, self.data.clone())
        }
    }
}

/// Options of one request.
#[derive(Default)]
pub struct RequestOptions {
    timeout_ms: Option<u32>,
    expected_replies: Option<u32>,
}

/// Delivers `message`, which came from `broker`, to an instance's
/// `wasmcloud:messaging/incoming-handler@0.3.0`; the handler's error comes back as text.
pub async fn handle<T: CapabilityView>(
    handler: &crate::handler_bindings::IncomingHandler,
    store: &mut Store<T>,
    message: Message,
    broker: Arc<dyn Broker>,
) -> wasmtime::Result<Result<(), String>> {
    let envelope = store
        .data_mut()
        .capabilities()
        .table
        .push(Envelope::received(message, broker))?;
    let handled = handler
        .wasmcloud_messaging0_3_0_incoming_handler()
        .call_handle(store, envelope)
        .await?;
    Ok(handled.map_err(|e| describe(&e)))
}

/// An error of this interface as text, for logs and the 0.2 interface's strings.
fn describe(error: &types::Error) -> String {
    match error {
        types::Error::Timeout => "timed out".to_string(),
        types::Error::Connection(e) => format!("connection: {e}"),
        types::Error::PermissionDenied(e) => format!("permission denied: {e}"),
        types::Error::Other(e) => e.clone(),
    }
}

/// A broker's failure as this interface's error.
fn failed(e: super::MessagingError) -> types::Error {
    match e.1 {
        super::TimedOut(true) => types::Error::Timeout,
        super::TimedOut(false) => types::Error::Other(e.0),
    }
}

impl CapabilityCtxView<'_> {
    fn connected(
        &self,
        client: &Resource<Client>,
    ) -> wasmtime::Result<Result<Arc<dyn Broker>, types::Error>> {
        let client = self.table.get(client)?;
        Ok(client.broker.clone().ok_or_else(|| {
            types::Error::Connection(format!(
                "the client of link `{}` was disconnected; connect again",
                client.link
            ))
        }))
    }
}

impl types::Host for CapabilityCtxView<'_> {}

impl types::HostClient for CapabilityCtxView<'_> {
    async fn connect(
        &mut self,
        name: String,
    ) -> wasmtime::Result<Result<Resource<Client>, types::Error>> {
        let link = if name.is_empty() {
            weft_manifest::DEFAULT_LINK_NAME.to_string()
        } else {
            name
        };
        match self.ctx.linked_as(&MESSAGING, &link) {
            Ok(broker) => Ok(Ok(self.table.push(Client {
                link,
                broker: Some(broker),
            })?)),
            Err(e) => Ok(Err(types::Error::Connection(e))),
        }
    }

    async fn disconnect(
        &mut self,
        client: Resource<Client>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        self.table.get_mut(&client)?.broker = None;
        Ok(Ok(()))
    }

    async fn drop(&mut self, client: Resource<Client>) -> wasmtime::Result<()> {
        self.table.delete(client)?;
        Ok(())
    }
}

impl types::HostMessage for CapabilityCtxView<'_> {
    async fn new(&mut self, data: Vec<u8>) -> wasmtime::Result<Resource<Envelope>> {
        Ok(self.table.push(Envelope {
            data,
            ..Envelope::default()
        })?)
    }

    async fn topic(&mut self, msg: Resource<Envelope>) -> wasmtime::Result<Option<String>> {
        Ok(self.table.get(&msg)?.topic.clone())
    }

    async fn content_type(&mut self, msg: Resource<Envelope>) -> wasmtime::Result<Option<String>> {
        Ok(self.table.get(&msg)?.content_type.clone())
    }

    async fn set_content_type(
        &mut self,
        msg: Resource<Envelope>,
        content_type: String,
    ) -> wasmtime::Result<()> {
        self.table.get_mut(&msg)?.content_type = Some(content_type);
        Ok(())
    }

    async fn data(&mut self, msg: Resource<Envelope>) -> wasmtime::Result<Vec<u8>> {
        Ok(self.table.get(&msg)?.data.clone())
    }

    async fn set_data(&mut self, msg: Resource<Envelope>, data: Vec<u8>) -> wasmtime::Result<()> {
        self.table.get_mut(&msg)?.data = data;
        Ok(())
    }

    async fn metadata(
        &mut self,
        msg: Resource<Envelope>,
    ) -> wasmtime::Result<Option<Vec<(String, String)>>> {
        Ok(self.table.get(&msg)?.metadata.clone())
    }

    async fn add_metadata(
        &mut self,
        msg: Resource<Envelope>,
        key: String,
        value: String,
    ) -> wasmtime::Result<()> {
        self.table
            .get_mut(&msg)?
            .metadata
            .get_or_insert_with(Vec::new)
            .push((key, value));
        Ok(())
    }

    async fn set_metadata(
        &mut self,
        msg: Resource<Envelope>,
        meta: Vec<(String, String)>,
    ) -> wasmtime::Result<()> {
        self.table.get_mut(&msg)?.metadata = Some(meta);
        Ok(())
    }

    async fn remove_metadata(
        &mut self,
        msg: Resource<Envelope>,
        key: String,
    ) -> wasmtime::Result<()> {
        if let Some(metadata) = &mut self.table.get_mut(&msg)?.metadata {
            metadata.retain(|(k, _)| *k != key);
        }
        Ok(())
    }

    async fn drop(&mut self, msg: Resource<Envelope>) -> wasmtime::Result<()> {
        self.table.delete(msg)?;
        Ok(())
    }
}

impl producer::Host for CapabilityCtxView<'_> {
    async fn send(
        &mut self,
        client: Resource<Client>,
        topic: String,
        message: Resource<Envelope>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        let broker = match self.connected(&client)? {
            Ok(broker) => broker,
            Err(e) => return Ok(Err(e)),
        };
        let envelope = self.table.delete(message)?;
        if let Some(refused) = super::unsendable(&topic) {
            return Ok(Err(types::Error::Other(refused)));
        }
        Ok(broker
            .publish(envelope.outgoing(topic))
            .await
            .map_err(failed))
    }
}

impl request_reply::HostRequestOptions for CapabilityCtxView<'_> {
    async fn new(&mut self) -> wasmtime::Result<Resource<RequestOptions>> {
        Ok(self.table.push(RequestOptions::default())?)
    }

    async fn set_timeout_ms(
        &mut self,
        options: Resource<RequestOptions>,
        timeout_ms: u32,
    ) -> wasmtime::Result<()> {
        self.table.get_mut(&options)?.timeout_ms = Some(timeout_ms);
        Ok(())
    }

    async fn set_expected_replies(
        &mut self,
        options: Resource<RequestOptions>,
        expected_replies: u32,
    ) -> wasmtime::Result<()> {
        self.table.get_mut(&options)?.expected_replies = Some(expected_replies);
        Ok(())
    }

    async fn drop(&mut self, options: Resource<RequestOptions>) -> wasmtime::Result<()> {
        self.table.delete(options)?;
        Ok(())
    }
}

impl request_reply::Host for CapabilityCtxView<'_> {
    async fn request(
        &mut self,
        client: Resource<Client>,
        topic: String,
        message: Resource<Envelope>,
        options: Option<Resource<RequestOptions>>,
    ) -> wasmtime::Result<Result<Vec<Resource<Envelope>>, types::Error>> {
        let broker = match self.connected(&client)? {
            Ok(broker) => broker,
            Err(e) => return Ok(Err(e)),
        };
        if let Some(refused) = super::unsendable(&topic) {
            return Ok(Err(types::Error::Other(refused)));
        }
        let options = match options {
            Some(options) => self.table.delete(options)?,
            None => RequestOptions::default(),
        };
        let timeout = options
            .timeout_ms
            .map_or(DEFAULT_REQUEST_TIMEOUT, |ms| {
                Duration::from_millis(ms.into())
            })
            .min(MAX_REQUEST_TIMEOUT);
        let wanted = options.expected_replies.unwrap_or(1).clamp(1, MAX_REPLIES);
        let request = self.table.get(&message)?.outgoing(topic);
        let replies = match broker.request(request, wanted as usize, timeout).await {
            Ok(replies) => replies,
            Err(e) => return Ok(Err(failed(e))),
        };
        let mut handles = Vec::with_capacity(replies.len());
        for reply in replies {
            handles.push(self.table.push(Envelope::received(reply, broker.clone()))?);
        }
        Ok(Ok(handles))
    }

    async fn reply(
        &mut self,
        reply_to: Resource<Envelope>,
        message: Resource<Envelope>,
    ) -> wasmtime::Result<Result<(), types::Error>> {
        let envelope = self.table.delete(message)?;
        let original = self.table.get(&reply_to)?;
        let Some(subject) = original.reply_to.clone() else {
            return Ok(Err(types::Error::Other(
                "the message has no reply subject: its sender expects no reply".to_string(),
            )));
        };
        let broker = match &original.broker {
            Some(broker) => broker.clone(),
            None => match self.ctx.linked(&MESSAGING) {
                Ok(broker) => broker,
                Err(e) => return Ok(Err(types::Error::Connection(e))),
            },
        };
        Ok(broker
            .publish(envelope.outgoing(subject))
            .await
            .map_err(failed))
    }
}
