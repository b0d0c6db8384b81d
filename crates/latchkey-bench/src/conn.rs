//! One keep-alive HTTP/1.1 connection per virtual user, over plain TCP.
//!
//! It reconnects only *before* sending, when the previous connection is found
//! closed. A request that fails in flight is reported and never retried: a
//! retried refresh would present an already-used token, which the server
//! rightly treats as theft.

use std::sync::Arc;

use anyhow::{Context, bail};
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::client::conn::http1::{self, SendRequest};
use hyper::header::HeaderValue;
use hyper::{Request, Uri};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;

use crate::failure::Failure;

/// Where the server is: its socket address, its `Host` and a path prefix.
#[derive(Debug)]
pub struct Target {
    addr: String,
    pub host: HeaderValue,
    prefix: String,
}

impl Target {
    /// Parses an `http://host:port[/prefix]` base URL.
    pub fn parse(url: &str) -> anyhow::Result<Target> {
        let uri: Uri = url
            .parse()
            .with_context(|| format!("parsing URL {url:?}"))?;
        match uri.scheme_str() {
            Some("http") => {}
            Some(other) => bail!("{other}:// is not supported; point the bench at http://"),
            None => bail!("the URL {url:?} needs a scheme, e.g. http://127.0.0.1:8080"),
        }
        let authority = uri.authority().context("the URL has no host")?;
        let port = authority.port_u16().unwrap_or(80);
        Ok(Target {
            addr: format!("{}:{port}", authority.host()),
            host: HeaderValue::from_str(authority.as_str()).context("the URL's host")?,
            prefix: uri.path().trim_end_matches('/').to_string(),
        })
    }

    /// The request target for an endpoint path.
    pub fn uri(&self, path: &str) -> anyhow::Result<Uri> {
        let full = format!("{}{path}", self.prefix);
        full.parse().with_context(|| format!("the path {full:?}"))
    }
}

/// A status and a fully read body.
#[derive(Debug)]
pub struct Reply {
    pub status: u16,
    /// `Retry-After` in seconds, when the server sent one.
    pub retry_after: Option<u64>,
    pub body: Bytes,
}

/// A virtual user's own connection.
pub struct Connection {
    target: Arc<Target>,
    sender: Option<SendRequest<Full<Bytes>>>,
}

impl Connection {
    /// A connection that opens on first use.
    pub fn new(target: Arc<Target>) -> Self {
        Connection {
            target,
            sender: None,
        }
    }

    /// Sends one request and reads the whole answer.
    pub async fn send(&mut self, request: Request<Full<Bytes>>) -> Result<Reply, Failure> {
        let mut sender = match self.sender.take() {
            Some(mut s) => match s.ready().await {
                Ok(()) => s,
                Err(_) => connect(&self.target.addr).await?,
            },
            None => connect(&self.target.addr).await?,
        };
        let response = sender
            .send_request(request)
            .await
            .map_err(Failure::connection)?;
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get(hyper::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.trim().parse().ok());
        let body = response
            .into_body()
            .collect()
            .await
            .map_err(Failure::connection)?
            .to_bytes();
        // Only a connection whose answer was read in full is reused.
        self.sender = Some(sender);
        Ok(Reply {
            status,
            retry_after,
            body,
        })
    }
}

async fn connect(addr: &str) -> Result<SendRequest<Full<Bytes>>, Failure> {
    let stream = TcpStream::connect(addr)
        .await
        .map_err(Failure::connection)?;
    stream.set_nodelay(true).map_err(Failure::connection)?;
    let (sender, connection) = http1::handshake(TokioIo::new(stream))
        .await
        .map_err(Failure::connection)?;
    tokio::spawn(async move {
        // A closed connection shows up as an error on the next send.
        let _ = connection.await;
    });
    Ok(sender)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_base_url_gives_address_host_and_prefix() {
        let t = Target::parse("http://localhost:8080/auth/").unwrap();
        assert_eq!(t.addr, "localhost:8080");
        assert_eq!(t.host, "localhost:8080");
        assert_eq!(t.uri("/v1/me").unwrap(), "/auth/v1/me");
        assert_eq!(
            Target::parse("http://example.test").unwrap().addr,
            "example.test:80"
        );
    }

    #[test]
    fn https_and_schemeless_urls_are_refused() {
        assert!(Target::parse("https://example.test").is_err());
        assert!(Target::parse("127.0.0.1:8080").is_err());
    }
}
