//! Webhooks' JSON shapes.

use serde::{Deserialize, Serialize};
use serde_json::Value;
use utoipa::ToSchema;

use super::present;
use crate::domain::{
    Attempt, AttemptOutcome, ChangeType, Error, SigningSecret, WebhookId, WebhookTypes, WebhookUrl,
    WebhookView,
};

/// Body of making a webhook.
#[derive(Debug, Default, Serialize, Deserialize, ToSchema)]
pub struct CreateWebhookRequest {
    /// Where deliveries are posted: `http://` or `https://`, with a host, without a user name,
    /// password or fragment, visible ASCII, at most 2048 bytes.
    #[serde(default, deserialize_with = "present")]
    #[schema(value_type = String, max_length = 2048, example = "https://crm.example.com/ticketd", required = true)]
    pub url: Option<Value>,
    /// The kinds of change to hear about; left out: every kind.
    #[serde(
        default,
        deserialize_with = "present",
        skip_serializing_if = "Option::is_none"
    )]
    #[schema(value_type = Vec<String>, min_items = 1, example = json!(["order.confirmed", "waitlist.offered"]))]
    pub types: Option<Value>,
}

impl CreateWebhookRequest {
    /// The url and types asked for, as the domain takes them.
    pub fn parse(&self) -> Result<(WebhookUrl, WebhookTypes), Error> {
        let url = match &self.url {
            Some(Value::String(url)) => WebhookUrl::parse(url)?,
            None | Some(Value::Null) => {
                return Err(Error::InvalidWebhook("url is required".into()));
            }
            Some(_) => return Err(Error::InvalidWebhook("url must be a string".into())),
        };
        let types = match &self.types {
            None => WebhookTypes::all(),
            Some(Value::Array(names)) => {
                if names.len() > 4 * ChangeType::ALL.len() {
                    return Err(Error::InvalidWebhook(format!(
                        "types names at most {} types",
                        4 * ChangeType::ALL.len()
                    )));
                }
                let names: Vec<&str> = names
                    .iter()
                    .map(|name| {
                        name.as_str().ok_or_else(|| {
                            Error::InvalidWebhook("types must be a list of strings".into())
                        })
                    })
                    .collect::<Result<_, _>>()?;
                WebhookTypes::parse(Some(&names))?
            }
            Some(_) => {
                return Err(Error::InvalidWebhook(
                    "types must be a list of strings".into(),
                ));
            }
        };
        Ok((url, types))
    }
}

/// A webhook, as listed (without its secret).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhookResponse {
    pub id: uuid::Uuid,
    pub url: String,
    /// The kinds of change it hears about.
    #[schema(example = json!(["order.confirmed"]))]
    pub types: Vec<String>,
    #[schema(example = "2026-11-24T19:00:00.000Z")]
    pub created_at: String,
}

/// A webhook just made: the only answer that carries its signing secret.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct CreatedWebhookResponse {
    pub id: uuid::Uuid,
    pub url: String,
    #[schema(example = json!(["order.confirmed"]))]
    pub types: Vec<String>,
    /// The key deliveries are signed with (`whsec_` + base64), for the receiver to check
    /// `webhook-signature`; shown only here.
    #[schema(example = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw")]
    pub secret: String,
    #[schema(example = "2026-11-24T19:00:00.000Z")]
    pub created_at: String,
}

#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct WebhooksResponse {
    pub webhooks: Vec<WebhookResponse>,
}

/// One attempt to deliver one change.
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveryResponse {
    /// The change's place in the feed.
    pub seq: u64,
    #[schema(example = "order.confirmed")]
    pub r#type: String,
    /// The `webhook-id` sent, `chg_{source}_{seq}_{at_ms}`: the store's id (a memory store's is
    /// new at every start), the change's `seq` and its commit time in ms since the epoch; the
    /// same on every attempt of this change, never an earlier change's.
    #[schema(example = "chg_0b8e5c1e-3f7a-4d2b-9c61-5a4f2e7d9b10_42_1795547700000")]
    pub webhook_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    #[schema(example = "2026-11-24T19:00:00.000Z")]
    pub at: String,
    /// The receiver's HTTP status, when it answered (2xx: delivered).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<u16>,
    /// Why no usable answer came (refused, timed out, answer too large ...).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// When the next attempt is due, if this one failed and another will be made.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_retry_at: Option<String>,
    /// This attempt failed and was the last: the change is given up for this webhook.
    pub failed: bool,
}

/// A webhook's recent attempts, newest first (at most 100).
#[derive(Debug, Serialize, Deserialize, ToSchema)]
pub struct DeliveriesResponse {
    pub deliveries: Vec<DeliveryResponse>,
}

fn type_names(types: &WebhookTypes) -> Vec<String> {
    types.as_slice().iter().map(|t| t.as_str().into()).collect()
}

impl From<&WebhookView> for WebhookResponse {
    fn from(view: &WebhookView) -> Self {
        Self {
            id: view.id.as_uuid(),
            url: view.url.as_str().into(),
            types: type_names(&view.types),
            created_at: super::timestamp(view.created_at_ms),
        }
    }
}

impl CreatedWebhookResponse {
    pub fn new(view: &WebhookView, secret: &SigningSecret) -> Self {
        Self {
            id: view.id.as_uuid(),
            url: view.url.as_str().into(),
            types: type_names(&view.types),
            secret: secret.expose().into(),
            created_at: super::timestamp(view.created_at_ms),
        }
    }
}

impl From<&Attempt> for DeliveryResponse {
    fn from(attempt: &Attempt) -> Self {
        let (status, error) = match &attempt.outcome {
            AttemptOutcome::Status(status) => (Some(*status), None),
            AttemptOutcome::Error(error) => (None, Some(error.clone())),
        };
        Self {
            seq: attempt.seq,
            r#type: attempt.kind.as_str().into(),
            webhook_id: attempt.message_id.clone(),
            attempt: attempt.attempt,
            at: super::timestamp(attempt.at_ms),
            status,
            error,
            next_retry_at: attempt.next_retry_at_ms.map(super::timestamp),
            failed: attempt.failed,
        }
    }
}

// Read back by the ticket service from vacancy's answers: anything unreadable is vacancy's fault.

fn unreadable(what: &str) -> Error {
    Error::Unavailable(format!("vacancy sent an unreadable {what}"))
}

fn types_from(names: &[String]) -> Result<WebhookTypes, Error> {
    WebhookTypes::parse(Some(names)).map_err(|_| unreadable("webhook"))
}

impl WebhookResponse {
    pub fn into_domain(self) -> Result<WebhookView, Error> {
        Ok(WebhookView {
            id: WebhookId::from(self.id),
            url: WebhookUrl::parse(&self.url).map_err(|_| unreadable("webhook"))?,
            types: types_from(&self.types)?,
            created_at_ms: super::parse_timestamp(&self.created_at)
                .map_err(|_| unreadable("webhook"))?,
        })
    }
}

impl CreatedWebhookResponse {
    pub fn into_domain(self) -> Result<(WebhookView, SigningSecret), Error> {
        let secret = SigningSecret::from_stored(self.secret).map_err(|_| unreadable("webhook"))?;
        let view = WebhookResponse {
            id: self.id,
            url: self.url,
            types: self.types,
            created_at: self.created_at,
        }
        .into_domain()?;
        Ok((view, secret))
    }
}

impl DeliveryResponse {
    pub fn into_domain(self) -> Result<Attempt, Error> {
        let outcome = match (self.status, self.error) {
            (Some(status), _) => AttemptOutcome::Status(status),
            (None, Some(error)) => AttemptOutcome::Error(error),
            (None, None) => return Err(unreadable("delivery")),
        };
        let time = |raw: &str| super::parse_timestamp(raw).map_err(|_| unreadable("delivery"));
        Ok(Attempt {
            seq: self.seq,
            kind: ChangeType::parse(&self.r#type).ok_or_else(|| unreadable("delivery"))?,
            message_id: self.webhook_id,
            attempt: self.attempt,
            at_ms: time(&self.at)?,
            outcome,
            next_retry_at_ms: self.next_retry_at.as_deref().map(time).transpose()?,
            failed: self.failed,
        })
    }
}
