//! Request extractors: JSON and form bodies with errors in the API's shape,
//! the authenticated caller, and the client's address as seen through trusted
//! proxies only.

use std::net::{IpAddr, SocketAddr};

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{ConnectInfo, FromRequest, FromRequestParts, Request};
use axum::http::{HeaderMap, header, request::Parts};
use serde::de::DeserializeOwned;

use super::error::ApiError;
use crate::config::ProxyHeader;
use crate::domain::{Authenticated, Client};
use crate::http::AppState;

/// Longest user agent kept with sessions and events.
const MAX_USER_AGENT: usize = 256;
/// Longer `Accept-Language` values are cut (a real one is a few tags).
const MAX_ACCEPT_LANGUAGE: usize = 256;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BodyKind {
    Json,
    Form,
}

fn body_kind(headers: &HeaderMap) -> Option<BodyKind> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let essence = value.split(';').next()?.trim().to_ascii_lowercase();
    match essence.as_str() {
        "application/json" => Some(BodyKind::Json),
        "application/x-www-form-urlencoded" => Some(BodyKind::Form),
        _ => None,
    }
}

async fn read_body<S: Send + Sync>(req: Request, state: &S) -> Result<Bytes, ApiError> {
    Bytes::from_request(req, state).await.map_err(|e| match e {
        BytesRejection::FailedToBufferBody(inner)
            if inner.status() == axum::http::StatusCode::PAYLOAD_TOO_LARGE =>
        {
            ApiError::PayloadTooLarge
        }
        _ => ApiError::InvalidRequest("the request body could not be read".into()),
    })
}

/// Parses a request body. Only a JSON object is accepted (serde would also
/// read an array positionally), and parser messages are passed on only when
/// they name a field, never a Rust type.
fn parse<T: DeserializeOwned>(kind: BodyKind, bytes: &[u8]) -> Result<T, ApiError> {
    let parsed = match kind {
        BodyKind::Json if bytes.trim_ascii_start().first() != Some(&b'{') => {
            return Err(ApiError::InvalidRequest(
                "the request body must be a JSON object".into(),
            ));
        }
        BodyKind::Json => serde_json::from_slice(bytes).map_err(|e| e.to_string()),
        BodyKind::Form => serde_urlencoded::from_bytes(bytes).map_err(|e| e.to_string()),
    };
    parsed.map_err(|e| ApiError::InvalidRequest(describe_parse_error(&e)))
}

fn describe_parse_error(message: &str) -> String {
    let field_level = ["missing field", "unknown field", "duplicate field"];
    match field_level.iter().find(|p| message.starts_with(*p)) {
        // e.g. "unknown field `role`, expected one of `email`, `password`".
        Some(_) => format!(
            "invalid request body: {}",
            message.split(" at line ").next().unwrap_or(message)
        ),
        None => "the request body is not valid JSON of the expected shape (fields and their types)"
            .into(),
    }
}

/// A JSON body (`application/json` only).
pub struct ApiJson<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for ApiJson<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        if body_kind(req.headers()) != Some(BodyKind::Json) {
            return Err(ApiError::UnsupportedMediaType);
        }
        let bytes = read_body(req, state).await?;
        parse(BodyKind::Json, &bytes).map(ApiJson)
    }
}

/// A JSON or `application/x-www-form-urlencoded` body, as OAuth endpoints take.
pub struct JsonOrForm<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for JsonOrForm<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let kind = body_kind(req.headers()).ok_or(ApiError::UnsupportedMediaType)?;
        let bytes = read_body(req, state).await?;
        parse(kind, &bytes).map(JsonOrForm)
    }
}

/// Like [`JsonOrForm`], but an empty body with no content type is `None`.
pub struct OptionalBody<T>(pub Option<T>);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for OptionalBody<T> {
    type Rejection = ApiError;

    async fn from_request(req: Request, state: &S) -> Result<Self, Self::Rejection> {
        let kind = body_kind(req.headers());
        let has_type = req.headers().contains_key(header::CONTENT_TYPE);
        let bytes = read_body(req, state).await?;
        match kind {
            None if bytes.is_empty() && !has_type => Ok(OptionalBody(None)),
            None => Err(ApiError::UnsupportedMediaType),
            Some(kind) => parse(kind, &bytes).map(|v| OptionalBody(Some(v))),
        }
    }
}

/// The bearer token of a request, if any. Several `Authorization` headers,
/// or an empty token, are refused.
pub fn bearer_token(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let mut values = headers.get_all(header::AUTHORIZATION).iter();
    let Some(value) = values.next() else {
        return Ok(None);
    };
    if values.next().is_some() {
        return Err(ApiError::InvalidRequest(
            "more than one Authorization header".into(),
        ));
    }
    let value = value
        .to_str()
        .map_err(|_| ApiError::InvalidToken("the access token is invalid".into()))?;
    match value.split_once(' ') {
        Some((scheme, token))
            if scheme.eq_ignore_ascii_case("bearer") && !token.trim().is_empty() =>
        {
            Ok(Some(token.trim()))
        }
        _ => Ok(None),
    }
}

/// The caller, authenticated by a valid access token of a live session.
pub struct AuthUser(pub Authenticated);

impl FromRequestParts<AppState> for AuthUser {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let token = bearer_token(&parts.headers)?.ok_or(ApiError::MissingToken)?;
        Ok(AuthUser(state.auth.authenticate(token).await?))
    }
}

/// The client's address and user agent.
pub struct ClientMeta {
    pub ip: Option<IpAddr>,
    pub client: Client,
}

impl FromRequestParts<AppState> for ClientMeta {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &AppState,
    ) -> Result<Self, Self::Rejection> {
        let ip = caller_ip(parts, state);
        let user_agent = parts
            .headers
            .get(header::USER_AGENT)
            .and_then(|v| v.to_str().ok())
            .map(|ua| {
                ua.chars()
                    .filter(|c| !c.is_control())
                    .take(MAX_USER_AGENT)
                    .collect()
            });
        let accept_language = parts
            .headers
            .get(header::ACCEPT_LANGUAGE)
            .and_then(|v| v.to_str().ok())
            .map(|v| v.chars().take(MAX_ACCEPT_LANGUAGE).collect());
        Ok(ClientMeta {
            ip,
            client: Client {
                ip: ip.map(|i| i.to_string()),
                user_agent,
                accept_language,
            },
        })
    }
}

/// The caller's address (see [`client_ip`]), or None when the connection's
/// peer is unknown (a request not served from a socket).
pub fn caller_ip(parts: &Parts, state: &AppState) -> Option<IpAddr> {
    let peer = parts.extensions.get::<ConnectInfo<SocketAddr>>()?.0.ip();
    Some(client_ip(
        peer,
        &parts.headers,
        &state.trusted_proxies,
        state.proxy_header,
    ))
}

/// The address of the client: the peer, unless the peer is a trusted proxy.
/// Then the proxies' list is walked from the right (the end the trusted
/// proxies append to): the first entry that is not a trusted proxy is the
/// client, and entries left of it, which the client could have written, are
/// never read. An entry that is not an address (`unknown`, garbage) stops the
/// walk at the trusted hop that reported it. IPv4-mapped IPv6 addresses count
/// as the IPv4 address they carry, also when matched against the proxies.
pub fn client_ip(
    peer: IpAddr,
    headers: &HeaderMap,
    trusted: &[ipnet::IpNet],
    source: ProxyHeader,
) -> IpAddr {
    let is_trusted = |ip: &IpAddr| trusted.iter().any(|net| net.contains(ip));
    let mut client = peer.to_canonical();
    if !is_trusted(&client) {
        return client;
    }
    let (name, entry): (&str, fn(&str) -> Option<IpAddr>) = match source {
        ProxyHeader::XForwardedFor => ("x-forwarded-for", address),
        ProxyHeader::Forwarded => ("forwarded", forwarded_for),
    };
    let values: Vec<&str> = headers
        .get_all(name)
        .iter()
        .map(|v| v.to_str().unwrap_or_default())
        .collect();
    let hops = values.iter().flat_map(|v| v.split(','));
    for hop in hops.rev() {
        let Some(ip) = entry(hop.trim()) else {
            return client;
        };
        client = ip.to_canonical();
        if !is_trusted(&client) {
            return client;
        }
    }
    client
}

/// An address as proxies write it: bare, or with a port (`[v6]:port`, `v4:port`).
fn address(text: &str) -> Option<IpAddr> {
    let text = text.trim_matches('"');
    text.parse::<IpAddr>()
        .ok()
        .or_else(|| text.parse::<SocketAddr>().ok().map(|s| s.ip()))
        .or_else(|| text.strip_prefix('[')?.strip_suffix(']')?.parse().ok())
}

/// The `for` parameter of one RFC 7239 element (`for=192.0.2.60;proto=http`).
fn forwarded_for(element: &str) -> Option<IpAddr> {
    element.split(';').find_map(|pair| {
        let (key, value) = pair.split_once('=')?;
        key.trim()
            .eq_ignore_ascii_case("for")
            .then(|| address(value.trim()))
            .flatten()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const XFF: ProxyHeader = ProxyHeader::XForwardedFor;

    fn headers(xff: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert("x-forwarded-for", xff.parse().expect("header"));
        h
    }

    #[test]
    fn forwarded_for_is_ignored_from_untrusted_peers() {
        let peer: IpAddr = "203.0.113.9".parse().expect("ip");
        assert_eq!(client_ip(peer, &headers("1.2.3.4"), &[], XFF), peer);
    }

    #[test]
    fn forwarded_for_is_read_right_to_left_through_trusted_proxies() {
        let trusted = vec!["10.0.0.0/8".parse().expect("cidr")];
        let peer: IpAddr = "10.0.0.1".parse().expect("ip");
        let got = client_ip(
            peer,
            &headers("6.6.6.6, 198.51.100.7, 10.0.0.2"),
            &trusted,
            XFF,
        );
        assert_eq!(got, ip("198.51.100.7"));
        // Nothing usable: the proxy that reported it is the best address known.
        assert_eq!(client_ip(peer, &headers("garbage"), &trusted, XFF), peer);
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn a_bad_entry_left_of_the_client_does_not_hide_it() {
        let trusted = vec!["10.0.0.0/8".parse().expect("cidr")];
        let peer = ip("10.0.0.1");
        let got = client_ip(peer, &headers("garbage, 2.2.2.2"), &trusted, XFF);
        assert_eq!(got, ip("2.2.2.2"));
        let got = client_ip(peer, &headers("2.2.2.2, , 10.0.0.3"), &trusted, XFF);
        assert_eq!(got, ip("10.0.0.3"), "the proxy that wrote the bad entry");
        // Two headers count as one list, in order.
        let mut two = headers("9.9.9.9");
        two.append("x-forwarded-for", "3.3.3.3".parse().expect("header"));
        assert_eq!(client_ip(peer, &two, &trusted, XFF), ip("3.3.3.3"));
    }

    #[test]
    fn ipv4_mapped_addresses_are_plain_ipv4_everywhere() {
        let trusted = vec!["10.0.0.0/8".parse().expect("cidr")];
        let mapped_proxy = ip("::ffff:10.0.0.1");
        let got = client_ip(mapped_proxy, &headers("::ffff:2.2.2.2"), &trusted, XFF);
        assert_eq!(got, ip("2.2.2.2"));
        assert_eq!(
            client_ip(ip("::ffff:7.7.7.7"), &HeaderMap::new(), &[], XFF),
            ip("7.7.7.7")
        );
    }

    #[test]
    fn rfc_7239_forwarded_is_read_when_chosen_and_only_then() {
        let trusted = vec!["10.0.0.0/8".parse().expect("cidr")];
        let peer = ip("10.0.0.1");
        let mut h = HeaderMap::new();
        h.insert(
            "forwarded",
            "for=6.6.6.6, for=\"[2001:db8:cafe::17]:4711\";proto=https, For=10.0.0.2;by=10.0.0.1"
                .parse()
                .expect("header"),
        );
        h.insert("x-forwarded-for", "5.5.5.5".parse().expect("header"));
        let forwarded = ProxyHeader::Forwarded;
        assert_eq!(
            client_ip(peer, &h, &trusted, forwarded),
            ip("2001:db8:cafe::17")
        );
        assert_eq!(client_ip(peer, &h, &trusted, XFF), ip("5.5.5.5"));
        h.insert(
            "forwarded",
            "for=unknown, for=10.0.0.2".parse().expect("header"),
        );
        assert_eq!(client_ip(peer, &h, &trusted, forwarded), ip("10.0.0.2"));
        h.insert("forwarded", "for=192.0.2.60:80".parse().expect("header"));
        assert_eq!(client_ip(peer, &h, &trusted, forwarded), ip("192.0.2.60"));
    }

    proptest::proptest! {
        #[test]
        fn any_forwarded_header_names_the_peer_or_one_of_its_entries(
            value in "(([0-9]{1,3}\\.){3}[0-9]{1,3}|::ffff:10\\.0\\.0\\.[0-9]|10\\.0\\.0\\.[0-9]|for=[^,;]{0,20}|[ -~]{0,12})(, ?(([0-9]{1,3}\\.){3}[0-9]{1,3}|10\\.0\\.0\\.[0-9]|for=[^,;]{0,20}|[ -~]{0,12})){0,6}",
            peer_trusted in proptest::prelude::any::<bool>(),
            forwarded in proptest::prelude::any::<bool>(),
        ) {
            let Ok(header) = value.parse() else {
                return Ok(());
            };
            let name = if forwarded { "forwarded" } else { "x-forwarded-for" };
            let source = if forwarded { ProxyHeader::Forwarded } else { XFF };
            let mut h = HeaderMap::new();
            h.insert(name, header);
            let trusted = vec!["10.0.0.0/8".parse().expect("cidr")];
            let peer = if peer_trusted { ip("10.0.0.1") } else { ip("203.0.113.5") };
            let client = client_ip(peer, &h, &trusted, source);
            if !peer_trusted {
                proptest::prop_assert_eq!(client, peer);
            } else if client != peer {
                let entry = if forwarded { forwarded_for } else { address };
                let listed: Vec<IpAddr> = value
                    .split(',')
                    .filter_map(|e| entry(e.trim()))
                    .map(|ip| ip.to_canonical())
                    .collect();
                proptest::prop_assert!(listed.contains(&client), "{client} is not in {value:?}");
            }
        }
    }
}
