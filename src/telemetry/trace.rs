//! W3C Trace Context (<https://www.w3.org/TR/trace-context/>): the `traceparent` and
//! `tracestate` headers that let one trace follow a request through a gateway, the ticket service
//! and vacancy.
//!
//! Every request belongs to a trace: the caller's, when it sends a valid `traceparent`, or a new
//! one. What this process knows of it lives in [`TraceContext`], kept with the request id for the
//! task serving the request (see [`super::with_request`]). When spans are exported (see
//! [`super::otlp`]) the span ids are those of the exported spans; otherwise ticketd still gives
//! each request a span id of its own, so a trace passes through it whole even when it records
//! nothing.

use std::fmt;
use std::str::FromStr;

use opentelemetry::trace::{SpanContext, SpanId, TraceFlags, TraceId, TraceState};
use opentelemetry_sdk::trace::{IdGenerator, RandomIdGenerator};

pub const TRACEPARENT_HEADER: &str = "traceparent";
pub const TRACESTATE_HEADER: &str = "tracestate";

/// Longest `tracestate` passed on. The standard asks that at least 512 characters be passed on
/// and allows dropping a longer one; ticketd drops it whole rather than cut a vendor's entry.
pub const TRACESTATE_LEN_MAX: usize = 512;

/// Length of a version 00 `traceparent`: `00-` 32 hex `-` 16 hex `-` 2 hex.
const TRACEPARENT_LEN: usize = 55;

/// The position of one request in its trace: the trace, and the span that stands for the work
/// done here (the parent of the calls this process makes for the request).
#[derive(Clone, Debug, PartialEq)]
pub struct TraceContext {
    span: SpanContext,
}

impl TraceContext {
    /// A request's context: inside the caller's trace, or at the root of a new one. A new trace
    /// is sampled: ticketd records every trace it starts (when it exports at all), and honours
    /// the caller's choice for the others.
    pub fn continue_or_start(parent: Option<&SpanContext>) -> Self {
        let ids = RandomIdGenerator::default();
        let span = match parent {
            Some(parent) => SpanContext::new(
                parent.trace_id(),
                ids.new_span_id(),
                parent.trace_flags(),
                false,
                parent.trace_state().clone(),
            ),
            None => SpanContext::new(
                ids.new_trace_id(),
                ids.new_span_id(),
                TraceFlags::SAMPLED,
                false,
                TraceState::default(),
            ),
        };
        Self { span }
    }

    /// The context of a span that already exists (an exported span's).
    pub fn from_span(span: SpanContext) -> Option<Self> {
        span.is_valid().then_some(Self { span })
    }

    pub fn trace_id(&self) -> TraceId {
        self.span.trace_id()
    }

    pub fn span_id(&self) -> SpanId {
        self.span.span_id()
    }

    pub fn span_context(&self) -> &SpanContext {
        &self.span
    }

    /// The `traceparent` header that makes the callee's work a child of this span.
    pub fn traceparent(&self) -> String {
        format!(
            "00-{}-{}-{:02x}",
            self.span.trace_id(),
            self.span.span_id(),
            self.span.trace_flags() & TraceFlags::SAMPLED
        )
    }

    /// The `tracestate` header to pass on, if the caller sent one.
    pub fn tracestate(&self) -> Option<String> {
        let header = self.span.trace_state().header();
        (!header.is_empty()).then_some(header)
    }

    /// The headers to send with a call made for this request.
    pub fn headers(&self) -> impl Iterator<Item = (&'static str, String)> {
        std::iter::once((TRACEPARENT_HEADER, self.traceparent()))
            .chain(self.tracestate().map(|state| (TRACESTATE_HEADER, state)))
    }
}

impl fmt::Display for TraceContext {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.traceparent())
    }
}

/// The caller's span, from its `traceparent` and `tracestate` headers. A `traceparent` that breaks
/// the standard in any way is ignored (the request starts a new trace), as is a `tracestate`
/// that does not parse or is longer than [`TRACESTATE_LEN_MAX`] (the trace goes on without it).
pub fn parent_from_headers(
    traceparent: Option<&str>,
    tracestate: Option<&str>,
) -> Option<SpanContext> {
    let (trace_id, span_id, flags) = parse_traceparent(traceparent?)?;
    let state = tracestate
        .filter(|state| state.len() <= TRACESTATE_LEN_MAX && is_valid_tracestate(state))
        .and_then(|state| TraceState::from_str(state.trim_matches([' ', '\t'])).ok())
        .unwrap_or_default();
    Some(SpanContext::new(trace_id, span_id, flags, true, state))
}

/// `version-traceid-parentid-flags`, lowercase hex of exactly 2, 32, 16 and 2 digits; version
/// `ff` is invalid, and all-zero ids are invalid. A later version may append fields after a `-`:
/// they are ignored, as the standard asks.
fn parse_traceparent(value: &str) -> Option<(TraceId, SpanId, TraceFlags)> {
    let value = value.trim_matches([' ', '\t']);
    let bytes = value.as_bytes();
    // ASCII only, so every slice below falls on a character boundary.
    if !value.is_ascii() || bytes.len() < TRACEPARENT_LEN {
        return None;
    }
    let version = &value[..2];
    if !is_lower_hex(version) || version == "ff" {
        return None;
    }
    let exact = bytes.len() == TRACEPARENT_LEN;
    match version {
        "00" if !exact => return None,
        _ if !exact && bytes[TRACEPARENT_LEN] != b'-' => return None,
        _ => {}
    }
    if [2, 35, 52].iter().any(|&at| bytes[at] != b'-') {
        return None;
    }
    let (trace, span, flags) = (&value[3..35], &value[36..52], &value[53..55]);
    if ![trace, span, flags].iter().all(|part| is_lower_hex(part)) {
        return None;
    }
    let trace_id = TraceId::from_hex(trace).ok()?;
    let span_id = SpanId::from_hex(span).ok()?;
    let flags = u8::from_str_radix(flags, 16).ok()?;
    if trace_id == TraceId::INVALID || span_id == SpanId::INVALID {
        return None;
    }
    // Only the sampled flag has a meaning yet; the others are not passed on.
    Some((
        trace_id,
        span_id,
        TraceFlags::new(flags) & TraceFlags::SAMPLED,
    ))
}

/// Most list members of a `tracestate`.
const TRACESTATE_MEMBERS_MAX: usize = 32;

/// A `tracestate` as the standard writes it: up to 32 comma-separated `key=value` members (empty
/// members allowed), keys of lowercase letters, digits and `_-*/` (with one `@` for a tenant),
/// starting with a letter or digit; values of printable ASCII but `,` and `=`, not ending in a space.
fn is_valid_tracestate(state: &str) -> bool {
    let members: Vec<&str> = state
        .split(',')
        .map(|member| member.trim_matches([' ', '\t']))
        .filter(|member| !member.is_empty())
        .collect();
    members.len() <= TRACESTATE_MEMBERS_MAX
        && members.iter().all(|member| {
            let Some((key, value)) = member.split_once('=') else {
                return false;
            };
            let key_ok = key.len() <= 256
                && key
                    .bytes()
                    .next()
                    .is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
                && key.bytes().filter(|&b| b == b'@').count() <= 1
                && key
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"_-*/@".contains(&b));
            let value_ok = !value.is_empty()
                && value.len() <= 256
                && !value.ends_with(' ')
                && value
                    .bytes()
                    .all(|b| (0x20..=0x7e).contains(&b) && b != b',' && b != b'=');
            key_ok && value_ok
        })
}

fn is_lower_hex(text: &str) -> bool {
    text.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
}

#[cfg(test)]
mod tests {
    use super::*;

    const TRACE: &str = "4bf92f3577b34da6a3ce929d0e0e4736";
    const SPAN: &str = "00f067aa0ba902b7";

    #[test]
    fn a_valid_traceparent_is_continued_with_a_span_of_our_own() {
        let header = format!("00-{TRACE}-{SPAN}-01");
        let parent = parent_from_headers(Some(&header), Some("congo=t61rcWkgMzE")).unwrap();
        assert_eq!(parent.trace_id().to_string(), TRACE);
        assert_eq!(parent.span_id().to_string(), SPAN);
        assert!(parent.is_sampled());

        let ours = TraceContext::continue_or_start(Some(&parent));
        assert_eq!(ours.trace_id(), parent.trace_id());
        assert_ne!(ours.span_id(), parent.span_id());
        let sent = ours.traceparent();
        assert!(sent.starts_with(&format!("00-{TRACE}-")), "{sent}");
        assert!(sent.ends_with("-01"), "{sent}");
        assert_eq!(ours.tracestate().as_deref(), Some("congo=t61rcWkgMzE"));
        // What is sent is what a callee takes.
        let callee = parent_from_headers(Some(&sent), ours.tracestate().as_deref()).unwrap();
        assert_eq!(callee.span_id(), ours.span_id());
    }

    #[test]
    fn the_callers_choice_not_to_sample_is_kept() {
        let header = format!("00-{TRACE}-{SPAN}-00");
        let parent = parent_from_headers(Some(&header), None).unwrap();
        let ours = TraceContext::continue_or_start(Some(&parent));
        assert!(ours.traceparent().ends_with("-00"));
        assert_eq!(ours.tracestate(), None);
    }

    #[test]
    fn without_a_parent_a_new_sampled_trace_starts() {
        let one = TraceContext::continue_or_start(None);
        let two = TraceContext::continue_or_start(None);
        assert!(one.span_context().is_valid());
        assert_ne!(one.trace_id(), two.trace_id());
        let parsed = parent_from_headers(Some(&one.traceparent()), None).unwrap();
        assert_eq!(parsed.trace_id(), one.trace_id());
        assert!(parsed.is_sampled());
    }

    #[test]
    fn later_versions_are_read_as_far_as_this_one_goes() {
        for header in [
            format!("01-{TRACE}-{SPAN}-01"),
            format!("cc-{TRACE}-{SPAN}-09-what-comes-later"),
        ] {
            let parent = parent_from_headers(Some(&header), None);
            assert_eq!(parent.unwrap().trace_id().to_string(), TRACE, "{header}");
        }
    }

    #[test]
    fn a_traceparent_that_breaks_the_standard_is_ignored() {
        let zeros_trace = "0".repeat(32);
        let zeros_span = "0".repeat(16);
        for header in [
            String::new(),
            "garbage".into(),
            format!("ff-{TRACE}-{SPAN}-01"),
            format!("00-{TRACE}-{SPAN}-01-extra"),
            format!("00-{TRACE}-{SPAN}"),
            format!("00-{}-{SPAN}-01", TRACE.to_uppercase()),
            format!("00-{TRACE}-{}-01", SPAN.to_uppercase()),
            format!("0-{TRACE}-{SPAN}-01"),
            format!("00-{zeros_trace}-{SPAN}-01"),
            format!("00-{TRACE}-{zeros_span}-01"),
            format!("00-{}-{SPAN}-01", &TRACE[1..]),
            format!("00-{TRACE}-{SPAN}-1"),
            format!("00-{TRACE}-{SPAN}-0x"),
            format!("00_{TRACE}_{SPAN}_01"),
            format!("01-{TRACE}-{SPAN}-01x"),
            format!("00-{}-{SPAN}-01", "g".repeat(32)),
            "00-é".repeat(20),
        ] {
            assert_eq!(parent_from_headers(Some(&header), None), None, "{header}");
        }
    }

    #[test]
    fn a_tracestate_of_several_vendors_is_passed_on() {
        let header = format!("00-{TRACE}-{SPAN}-01");
        let state = "rojo=00f067aa0ba902b7, tenant@vendor=x y,congo=t61rcWkgMzE";
        let parent = parent_from_headers(Some(&header), Some(state)).unwrap();
        let ours = TraceContext::continue_or_start(Some(&parent));
        let sent = ours.tracestate().unwrap();
        for member in [
            "rojo=00f067aa0ba902b7",
            "tenant@vendor=x y",
            "congo=t61rcWkgMzE",
        ] {
            assert!(sent.contains(member), "{sent}");
        }
    }

    #[test]
    fn a_bad_or_long_tracestate_is_dropped_and_the_trace_kept() {
        let header = format!("00-{TRACE}-{SPAN}-01");
        let long = format!("a={}", "x".repeat(TRACESTATE_LEN_MAX));
        let crowded = (0..33)
            .map(|i| format!("k{i}=v"))
            .collect::<Vec<_>>()
            .join(",");
        for state in [
            "not a state",
            "=x",
            "Upper=x",
            "k=a=b",
            long.as_str(),
            crowded.as_str(),
        ] {
            let parent = parent_from_headers(Some(&header), Some(state)).unwrap();
            assert_eq!(parent.trace_state().header(), "", "{state}");
            assert_eq!(parent.trace_id().to_string(), TRACE);
        }
    }
}
