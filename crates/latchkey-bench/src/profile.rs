//! Per-server profiles: the paths, encodings and field names the bench speaks,
//! as plain data. A profile only describes a server; what to send and when is
//! decided by the scenarios, so adding a peer means adding a value here.

use std::time::Duration;

/// How a request body is encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Encoding {
    /// No body (a GET).
    Empty,
    Json,
    Form,
}

/// One endpoint: where it is, how its body is encoded, and the status that
/// means success. Bodiless endpoints are GETs, all others POSTs.
#[derive(Debug, Clone, Copy)]
pub struct Endpoint {
    pub path: &'static str,
    pub encoding: Encoding,
    pub status: u16,
}

/// How one kind of server names its endpoints and fields.
#[derive(Debug)]
pub struct Profile {
    pub name: &'static str,
    pub register: Endpoint,
    pub login: Endpoint,
    pub refresh: Endpoint,
    pub me: Endpoint,
    pub verify: Endpoint,
    /// Credential fields of the register and login bodies.
    pub email_field: &'static str,
    pub password_field: &'static str,
    /// Fields that repeat the password on registration (djoser's `re_password`).
    pub password_repeat_fields: &'static [&'static str],
    /// Constant fields of a refresh request (OAuth's `grant_type`).
    pub refresh_constants: &'static [(&'static str, &'static str)],
    /// The refresh request's field carrying the refresh token.
    pub refresh_request_field: &'static str,
    /// The verify request's field carrying the access token.
    pub verify_token_field: &'static str,
    /// Whether verification authenticates a client with HTTP Basic.
    pub verify_needs_client: bool,
    /// A boolean member of the verify answer that must be `true`, if any.
    pub verify_active_field: Option<&'static str>,
    /// The login answer's device token, sent back with the next login of the
    /// account as a returning browser does (Latchkey's; a login without one is
    /// a new device, which mails its owner a notice).
    pub device_token_field: Option<&'static str>,
    /// Token fields of login and refresh answers.
    pub access_field: &'static str,
    pub refresh_field: &'static str,
    /// The answer's access-token lifetime in seconds, if the server says it.
    pub expires_in_field: Option<&'static str>,
    /// The lifetime assumed when the server does not say.
    pub assumed_access_ttl: Duration,
    /// Scheme of the `Authorization` header carrying the access token.
    pub auth_scheme: &'static str,
    /// The member of an error body naming the error.
    pub error_field: &'static str,
}

/// Latchkey's own API (docs/api.md).
pub static LATCHKEY: Profile = Profile {
    name: "latchkey",
    register: post_json("/v1/register", 201),
    login: post_json("/v1/login", 200),
    refresh: Endpoint {
        path: "/v1/token",
        encoding: Encoding::Form,
        status: 200,
    },
    me: get("/v1/me"),
    verify: Endpoint {
        path: "/v1/introspect",
        encoding: Encoding::Form,
        status: 200,
    },
    email_field: "email",
    password_field: "password",
    password_repeat_fields: &[],
    refresh_constants: &[("grant_type", "refresh_token")],
    refresh_request_field: "refresh_token",
    verify_token_field: "token",
    verify_needs_client: true,
    verify_active_field: Some("active"),
    device_token_field: Some("device_token"),
    access_field: "access_token",
    refresh_field: "refresh_token",
    expires_in_field: Some("expires_in"),
    assumed_access_ttl: Duration::from_secs(300),
    auth_scheme: "Bearer",
    error_field: "error",
};

/// Django with djoser and djangorestframework-simplejwt, with
/// `ROTATE_REFRESH_TOKENS = True`, an email `USERNAME_FIELD` and djoser's
/// `USER_CREATE_PASSWORD_RETYPE` off, as `bench/peer` configures it. (With
/// the retype on, djoser also wants `re_password` on registration.)
pub static SIMPLEJWT: Profile = Profile {
    name: "simplejwt",
    register: post_json("/auth/users/", 201),
    login: post_json("/auth/jwt/create/", 200),
    refresh: post_json("/auth/jwt/refresh/", 200),
    me: get("/auth/users/me/"),
    // simplejwt's verify checks signature, expiry and the blacklist; it has
    // no client authentication, unlike Latchkey's introspection.
    verify: post_json("/auth/jwt/verify/", 200),
    email_field: "email",
    password_field: "password",
    password_repeat_fields: &[],
    refresh_constants: &[],
    refresh_request_field: "refresh",
    verify_token_field: "token",
    verify_needs_client: false,
    verify_active_field: None,
    device_token_field: None,
    access_field: "access",
    refresh_field: "refresh",
    expires_in_field: None,
    // simplejwt's default ACCESS_TOKEN_LIFETIME.
    assumed_access_ttl: Duration::from_secs(300),
    auth_scheme: "Bearer",
    error_field: "code",
};

/// Every profile, for lookup by name.
pub static PROFILES: [&Profile; 2] = [&LATCHKEY, &SIMPLEJWT];

/// The profile called `name`.
pub fn by_name(name: &str) -> Option<&'static Profile> {
    PROFILES.iter().copied().find(|p| p.name == name)
}

const fn post_json(path: &'static str, status: u16) -> Endpoint {
    Endpoint {
        path,
        encoding: Encoding::Json,
        status,
    }
}

const fn get(path: &'static str) -> Endpoint {
    Endpoint {
        path,
        encoding: Encoding::Empty,
        status: 200,
    }
}
