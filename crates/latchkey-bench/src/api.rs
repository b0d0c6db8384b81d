//! The five operations against a server as its profile describes them: builds
//! each request, checks the status and takes the tokens out of the answer.
//! It holds no per-user state; the virtual users own their tokens.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{ACCEPT, AUTHORIZATION, CONTENT_TYPE, HOST, HeaderValue};
use hyper::{Method, Request, Uri};
use serde_json::{Map, Value};

use crate::conn::{Connection, Target};
use crate::failure::Failure;
use crate::profile::{Encoding, Endpoint, Profile};

/// The password of every bench user; it passes Latchkey's policy.
pub const PASSWORD: &str = "violet kettle harbour";

/// Credentials of a resource-server client, for introspection.
#[derive(Clone)]
pub struct ClientCredentials {
    pub id: String,
    pub secret: String,
}

impl std::fmt::Debug for ClientCredentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientCredentials")
            .field("id", &self.id)
            .finish_non_exhaustive()
    }
}

/// A user's current tokens.
pub struct Tokens {
    access: String,
    bearer: HeaderValue,
    pub refresh: String,
    /// The device token a login answered with, if the server has them.
    pub device: Option<String>,
    /// Renew before this; a fifth of the lifetime is kept as margin.
    fresh_until: Instant,
}

impl Tokens {
    pub fn is_fresh(&self) -> bool {
        Instant::now() < self.fresh_until
    }
}

struct Route {
    endpoint: Endpoint,
    uri: Uri,
}

/// A server, as seen through its profile.
pub struct Api {
    target: Arc<Target>,
    profile: &'static Profile,
    register: Route,
    login: Route,
    refresh: Route,
    me: Route,
    verify: Route,
    client_auth: Option<HeaderValue>,
    run_id: String,
    /// The next email number no user has; numbers below `reserved` are the
    /// set-up users'.
    next_fresh: AtomicU64,
}

impl Api {
    pub fn new(
        url: &str,
        profile: &'static Profile,
        client: Option<&ClientCredentials>,
        run_id: String,
        reserved: u64,
    ) -> anyhow::Result<Api> {
        let target = Arc::new(Target::parse(url)?);
        let route = |endpoint: Endpoint| -> anyhow::Result<Route> {
            let uri = target.uri(endpoint.path)?;
            Ok(Route { endpoint, uri })
        };
        let client_auth = client
            .map(|c| {
                let basic = STANDARD.encode(format!("{}:{}", c.id, c.secret));
                HeaderValue::from_str(&format!("Basic {basic}"))
            })
            .transpose()
            .context("the client credentials")?;
        Ok(Api {
            register: route(profile.register)?,
            login: route(profile.login)?,
            refresh: route(profile.refresh)?,
            me: route(profile.me)?,
            verify: route(profile.verify)?,
            target,
            profile,
            client_auth,
            run_id,
            next_fresh: AtomicU64::new(reserved),
        })
    }

    pub fn target(&self) -> Arc<Target> {
        self.target.clone()
    }

    /// The `n`th unique email of this run.
    pub fn email(&self, n: u64) -> String {
        format!("bench-{}-{n}@example.com", self.run_id)
    }

    /// An email no user of this run has yet.
    pub fn fresh_email(&self) -> String {
        self.email(self.next_fresh.fetch_add(1, Ordering::Relaxed))
    }

    pub async fn register(&self, conn: &mut Connection, email: &str) -> Result<(), Failure> {
        let p = self.profile;
        let mut fields = vec![(p.email_field, email), (p.password_field, PASSWORD)];
        fields.extend(p.password_repeat_fields.iter().map(|f| (*f, PASSWORD)));
        self.call(conn, &self.register, &fields, None).await?;
        Ok(())
    }

    /// Logs in, from the device `device` names when the server has device
    /// tokens and one is given.
    pub async fn login(
        &self,
        conn: &mut Connection,
        email: &str,
        device: Option<&str>,
    ) -> Result<Tokens, Failure> {
        let p = self.profile;
        let mut fields = vec![(p.email_field, email), (p.password_field, PASSWORD)];
        if let (Some(field), Some(device)) = (p.device_token_field, device) {
            fields.push((field, device));
        }
        let body = self.call(conn, &self.login, &fields, None).await?;
        self.tokens(&body)
    }

    /// Rotates a refresh token: the answer's token replaces the one sent.
    pub async fn refresh(&self, conn: &mut Connection, refresh: &str) -> Result<Tokens, Failure> {
        let p = self.profile;
        let mut fields = p.refresh_constants.to_vec();
        fields.push((p.refresh_request_field, refresh));
        let body = self.call(conn, &self.refresh, &fields, None).await?;
        self.tokens(&body)
    }

    pub async fn me(&self, conn: &mut Connection, tokens: &Tokens) -> Result<(), Failure> {
        self.call(conn, &self.me, &[], Some(&tokens.bearer)).await?;
        Ok(())
    }

    /// Introspects (or verifies) the access token, which must be valid.
    pub async fn verify(&self, conn: &mut Connection, tokens: &Tokens) -> Result<(), Failure> {
        let p = self.profile;
        let fields = [(p.verify_token_field, tokens.access.as_str())];
        let auth = self.client_auth.as_ref();
        let body = self.call(conn, &self.verify, &fields, auth).await?;
        let Some(active) = p.verify_active_field else {
            return Ok(());
        };
        match json(&body)?.get(active).and_then(Value::as_bool) {
            Some(true) => Ok(()),
            Some(false) => Err(Failure::Malformed(
                "a live access token introspected inactive",
            )),
            None => Err(Failure::Malformed("introspection without `active`")),
        }
    }

    async fn call(
        &self,
        conn: &mut Connection,
        route: &Route,
        fields: &[(&str, &str)],
        auth: Option<&HeaderValue>,
    ) -> Result<Bytes, Failure> {
        let reply = conn.send(self.request(route, fields, auth)?).await?;
        if reply.status == route.endpoint.status {
            return Ok(reply.body);
        }
        let code = json(&reply.body).ok().and_then(|v| {
            v.get(self.profile.error_field)
                .and_then(Value::as_str)
                .map(str::to_owned)
        });
        Err(Failure::Status {
            status: reply.status,
            code,
            retry_after: reply.retry_after,
        })
    }

    fn request(
        &self,
        route: &Route,
        fields: &[(&str, &str)],
        auth: Option<&HeaderValue>,
    ) -> Result<Request<Full<Bytes>>, Failure> {
        let (method, content_type, body) = encode(route.endpoint.encoding, fields)?;
        let mut builder = Request::builder()
            .method(method)
            .uri(route.uri.clone())
            .header(HOST, self.target.host.clone())
            .header(ACCEPT, "application/json");
        if let Some(content_type) = content_type {
            builder = builder.header(CONTENT_TYPE, content_type);
        }
        if let Some(auth) = auth {
            builder = builder.header(AUTHORIZATION, auth.clone());
        }
        builder
            .body(Full::new(body))
            .map_err(|_| Failure::Malformed("request"))
    }

    fn tokens(&self, body: &[u8]) -> Result<Tokens, Failure> {
        let p = self.profile;
        let value = json(body)?;
        let text = |field: &str| value.get(field).and_then(Value::as_str);
        let access = text(p.access_field).ok_or(Failure::Malformed("no access token"))?;
        let refresh = text(p.refresh_field).ok_or(Failure::Malformed("no refresh token"))?;
        let bearer = HeaderValue::from_str(&format!("{} {access}", p.auth_scheme))
            .map_err(|_| Failure::Malformed("access token unfit for a header"))?;
        let lifetime = p
            .expires_in_field
            .and_then(|f| value.get(f))
            .and_then(Value::as_u64)
            .map_or(p.assumed_access_ttl, Duration::from_secs);
        let device = p.device_token_field.and_then(text).map(str::to_owned);
        Ok(Tokens {
            access: access.to_owned(),
            bearer,
            refresh: refresh.to_owned(),
            device,
            fresh_until: Instant::now() + lifetime * 4 / 5,
        })
    }
}

fn json(body: &[u8]) -> Result<Map<String, Value>, Failure> {
    serde_json::from_slice(body).map_err(|_| Failure::Malformed("body is not a JSON object"))
}

type Encoded = (Method, Option<&'static str>, Bytes);

fn encode(encoding: Encoding, fields: &[(&str, &str)]) -> Result<Encoded, Failure> {
    let unencodable = Failure::Malformed("request body");
    Ok(match encoding {
        Encoding::Empty => (Method::GET, None, Bytes::new()),
        Encoding::Json => {
            let map: Map<String, Value> = fields
                .iter()
                .map(|(k, v)| ((*k).to_owned(), Value::from(*v)))
                .collect();
            let body = serde_json::to_vec(&map).map_err(|_| unencodable)?;
            (Method::POST, Some("application/json"), body.into())
        }
        Encoding::Form => {
            let body = serde_urlencoded::to_string(fields).map_err(|_| unencodable)?;
            let form = "application/x-www-form-urlencoded";
            (Method::POST, Some(form), body.into())
        }
    })
}
