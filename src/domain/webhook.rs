//! Webhooks: an integrator's URL that hears about the changes it subscribed to, signed as the
//! Standard Webhooks specification says (`webhook-id`, `webhook-timestamp`, `webhook-signature`).

use std::fmt;
use std::str::FromStr;

use uuid::Uuid;

use super::{Change, ChangeType, Error};

/// Most webhooks one store keeps: each one is a delivery loop and a cursor.
pub const WEBHOOKS_MAX: usize = 50;
/// Longest URL accepted, in bytes.
pub const WEBHOOK_URL_LEN_MAX: usize = 2048;
/// Most attempts kept per webhook for `GET /api/v1/webhooks/{id}/deliveries`; older ones go.
pub const ATTEMPTS_KEPT_MAX: usize = 100;

#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct WebhookId(Uuid);

impl WebhookId {
    pub fn generate() -> Self {
        Self(Uuid::now_v7())
    }

    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
}

impl From<Uuid> for WebhookId {
    fn from(id: Uuid) -> Self {
        Self(id)
    }
}

impl fmt::Display for WebhookId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl FromStr for WebhookId {
    type Err = Error;

    fn from_str(raw: &str) -> Result<Self, Error> {
        Uuid::parse_str(raw)
            .map(Self)
            .map_err(|_| Error::UnknownWebhook(format!("unknown webhook '{raw}'")))
    }
}

/// Where deliveries go: an `http` or `https` URL with a host, no user name or password, no
/// fragment, visible ASCII only, at most [`WEBHOOK_URL_LEN_MAX`] bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookUrl(String);

impl WebhookUrl {
    pub fn parse(raw: &str) -> Result<Self, Error> {
        let refuse = |why: &str| Err(Error::InvalidWebhook(format!("url {why}")));
        if raw.len() > WEBHOOK_URL_LEN_MAX {
            return refuse(&format!("is longer than {WEBHOOK_URL_LEN_MAX} bytes"));
        }
        if !raw.bytes().all(|b| b.is_ascii_graphic()) {
            return refuse("must be visible ASCII, without spaces (percent-encode the rest)");
        }
        let lower = raw.to_ascii_lowercase();
        let rest = if let Some(rest) = lower.strip_prefix("http://") {
            rest
        } else if let Some(rest) = lower.strip_prefix("https://") {
            rest
        } else {
            return refuse("must start with http:// or https://");
        };
        if raw.contains('#') {
            return refuse("must have no fragment (#...)");
        }
        let authority = rest.split(['/', '?']).next().unwrap_or_default();
        if authority.contains('@') {
            return refuse("must not carry a user name or password");
        }
        let host = match authority.strip_prefix('[') {
            Some(v6) => match v6.split_once(']') {
                Some((host, port)) if port.is_empty() || port.starts_with(':') => host,
                _ => return refuse("has an IPv6 host without its closing ]"),
            },
            None => authority.split(':').next().unwrap_or_default(),
        };
        if host.is_empty() {
            return refuse("must name a host");
        }
        if let Some(port) = authority.rsplit_once(']').map_or_else(
            || authority.split_once(':').map(|(_, port)| port),
            |(_, after)| after.strip_prefix(':'),
        ) && !port.is_empty()
            && port.parse::<u16>().is_err()
        {
            return refuse("has a port that is not a number from 0 to 65535");
        }
        Ok(Self(raw.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn is_https(&self) -> bool {
        self.0.len() > 5 && self.0[..6].eq_ignore_ascii_case("https:")
    }
}

/// The kinds of change a webhook hears about: at least one, each once, in [`ChangeType::ALL`]'s
/// order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookTypes(Vec<ChangeType>);

impl WebhookTypes {
    pub fn all() -> Self {
        Self(ChangeType::ALL.to_vec())
    }

    /// `None` subscribes to every type.
    pub fn parse<S: AsRef<str>>(names: Option<&[S]>) -> Result<Self, Error> {
        let Some(names) = names else {
            return Ok(Self::all());
        };
        if names.is_empty() {
            return Err(Error::InvalidWebhook(
                "types must name at least one type; leave it out for every type".into(),
            ));
        }
        let mut types = Vec::with_capacity(names.len().min(ChangeType::ALL.len()));
        for name in names {
            let name = name.as_ref();
            let Some(kind) = ChangeType::parse(name) else {
                let known: Vec<&str> = ChangeType::ALL.iter().map(|k| k.as_str()).collect();
                let shown: String = name.chars().take(64).collect();
                return Err(Error::InvalidWebhook(format!(
                    "unknown type '{shown}'; the types are {}",
                    known.join(", ")
                )));
            };
            if !types.contains(&kind) {
                types.push(kind);
            }
        }
        types.sort();
        Ok(Self(types))
    }

    pub fn contains(&self, kind: ChangeType) -> bool {
        self.0.contains(&kind)
    }

    pub fn as_slice(&self) -> &[ChangeType] {
        &self.0
    }

    /// Comma-separated names, as stores keep them.
    pub fn to_stored(&self) -> String {
        let names: Vec<&str> = self.0.iter().map(|k| k.as_str()).collect();
        names.join(",")
    }

    pub fn from_stored(raw: &str) -> Result<Self, Error> {
        let names: Vec<&str> = raw.split(',').collect();
        Self::parse(Some(&names))
            .map_err(|e| Error::Storage(format!("a stored webhook's types are unreadable: {e}")))
    }
}

/// The key deliveries are signed with: `whsec_` and the base64 of its bytes, as the Standard
/// Webhooks libraries take it. Shown once, when the webhook is made; never logged.
#[derive(Clone, PartialEq, Eq)]
pub struct SigningSecret(String);

impl SigningSecret {
    pub const PREFIX: &'static str = "whsec_";
    /// Bytes of a new key (the specification asks for 24 to 64).
    pub const KEY_BYTES: usize = 32;

    /// A new secret of [`Self::KEY_BYTES`] random bytes.
    pub fn generate() -> Result<Self, Error> {
        use base64::Engine;
        let mut key = [0u8; Self::KEY_BYTES];
        getrandom::fill(&mut key)
            .map_err(|e| Error::Internal(format!("no random bytes for a webhook secret: {e}")))?;
        Ok(Self(format!(
            "{}{}",
            Self::PREFIX,
            base64::engine::general_purpose::STANDARD.encode(key)
        )))
    }

    /// A secret read back from a store.
    pub fn from_stored(raw: String) -> Result<Self, Error> {
        use base64::Engine;
        raw.strip_prefix(Self::PREFIX)
            .and_then(|key| base64::engine::general_purpose::STANDARD.decode(key).ok())
            .filter(|key| !key.is_empty())
            .map(|_| Self(raw.clone()))
            .ok_or_else(|| Error::Storage("a stored webhook secret is unreadable".into()))
    }

    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("whsec_***")
    }
}

/// A webhook as stored.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Webhook {
    pub id: WebhookId,
    pub url: WebhookUrl,
    pub types: WebhookTypes,
    pub secret: SigningSecret,
    pub created_at_ms: i64,
}

impl Webhook {
    /// What may be shown of it after it was made: everything but the secret.
    pub fn view(&self) -> WebhookView {
        WebhookView {
            id: self.id,
            url: self.url.clone(),
            types: self.types.clone(),
            created_at_ms: self.created_at_ms,
        }
    }
}

/// A webhook without its secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct WebhookView {
    pub id: WebhookId,
    pub url: WebhookUrl,
    pub types: WebhookTypes,
    pub created_at_ms: i64,
}

/// How one attempt to deliver a change ended.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AttemptOutcome {
    /// The receiver answered with this status (2xx: delivered).
    Status(u16),
    /// No usable answer: refused, timed out, too large ...
    Error(String),
}

impl AttemptOutcome {
    pub fn delivered(&self) -> bool {
        matches!(self, AttemptOutcome::Status(status) if (200..300).contains(status))
    }
}

/// One attempt to deliver one change to one webhook.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Attempt {
    pub seq: u64,
    pub kind: ChangeType,
    /// The `webhook-id` header sent: the same on every attempt of this change.
    pub message_id: String,
    /// 1 for the first attempt.
    pub attempt: u32,
    pub at_ms: i64,
    pub outcome: AttemptOutcome,
    /// When the next attempt is due, if this one failed and another will be made.
    pub next_retry_at_ms: Option<i64>,
    /// This one failed and was the last: the change is given up for this webhook.
    pub failed: bool,
}

/// The `webhook-id` of a change's deliveries: the same for every attempt and every webhook.
/// `source` names the feed's numbering (the inventory store's id; a memory store's is new at
/// every start), and the change's commit time tells apart changes numbered alike after a
/// database was restored from a backup: a new change never takes an earlier one's id.
pub fn message_id(source: &str, change: &Change) -> String {
    format!("chg_{source}_{}_{}", change.seq, change.at_ms)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_http_or_https_with_a_host_and_no_credentials() {
        for ok in [
            "http://127.0.0.1:8080/hook",
            "https://example.com",
            "HTTPS://example.com/a?b=c",
            "http://[::1]:9/x",
            "http://host:0/",
        ] {
            assert!(WebhookUrl::parse(ok).is_ok(), "{ok}");
        }
        for bad in [
            "",
            "ftp://example.com/",
            "file:///etc/passwd",
            "http://",
            "http:///path",
            "http://user:pw@example.com/",
            "http://user@example.com/",
            "http://example.com/a b",
            "http://example.com/#frag",
            "http://example.com:99999/",
            "http://example.com:port/",
            "http://[::1/",
            "http://exämple.com/",
            "javascript:alert(1)",
        ] {
            assert!(
                matches!(WebhookUrl::parse(bad), Err(Error::InvalidWebhook(_))),
                "{bad}"
            );
        }
        let long = format!("http://a.b/{}", "x".repeat(WEBHOOK_URL_LEN_MAX));
        assert!(WebhookUrl::parse(&long).is_err());
        assert!(WebhookUrl::parse("HTTPS://a").unwrap().is_https());
        assert!(!WebhookUrl::parse("http://a").unwrap().is_https());
    }

    #[test]
    fn types_are_known_names_or_every_type() {
        assert_eq!(
            WebhookTypes::parse::<&str>(None).unwrap(),
            WebhookTypes::all()
        );
        let two = WebhookTypes::parse(Some(&["hold.expired", "order.confirmed", "hold.expired"]))
            .unwrap();
        assert_eq!(
            two.as_slice(),
            [ChangeType::OrderConfirmed, ChangeType::HoldExpired]
        );
        assert_eq!(WebhookTypes::from_stored(&two.to_stored()).unwrap(), two);
        assert!(WebhookTypes::parse::<&str>(Some(&[])).is_err());
        assert!(WebhookTypes::parse(Some(&["order"])).is_err());
    }

    #[test]
    fn secrets_are_whsec_and_32_random_bytes() {
        use base64::Engine;
        let a = SigningSecret::generate().unwrap();
        let b = SigningSecret::generate().unwrap();
        assert_ne!(a, b);
        let key = base64::engine::general_purpose::STANDARD
            .decode(a.expose().strip_prefix("whsec_").unwrap())
            .unwrap();
        assert_eq!(key.len(), SigningSecret::KEY_BYTES);
        assert_eq!(format!("{a:?}"), "whsec_***");
        assert_eq!(SigningSecret::from_stored(a.expose().into()).unwrap(), a);
        assert!(SigningSecret::from_stored("nope".into()).is_err());
    }
}
