//! `compat = ["djoser"]`: djoser's and djangorestframework-simplejwt's URL
//! set under `/auth/`, with their request and answer shapes, status codes
//! and Django REST framework's error bodies (`{"detail": …, "code": …}`,
//! `{"field": ["…"]}`), so front ends written for them keep working. Behind
//! them run Latchkey's own rules (single-use refresh tokens with reuse
//! detection, revocation at once, throttles); where that shows, see
//! docs/migrating-from-django.md.

use axum::Router;
use axum::extract::{FromRequest, Request, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde_json::{Map, Value, json};

use super::AppState;
use super::error::ApiError;
use super::extract::{ClientMeta, bearer_token};
use super::limits::IpLimiter;
use crate::domain::mfa::SignIn;
use crate::domain::{AuthError, Authenticated, User};

pub fn router() -> Router<AppState> {
    Router::new()
        .route("/auth/users/", get(list_users).post(create_user))
        .route(
            "/auth/users/me/",
            get(me).put(update_me).patch(update_me).delete(delete_me),
        )
        .route("/auth/users/set_password/", post(set_password))
        .route("/auth/users/reset_password/", post(reset_password))
        .route(
            "/auth/users/reset_password_confirm/",
            post(reset_password_confirm),
        )
        .route("/auth/users/activation/", post(activation))
        .route("/auth/jwt/create/", post(jwt_create))
        .route("/auth/jwt/refresh/", post(jwt_refresh))
        .route("/auth/jwt/verify/", post(jwt_verify))
        .route("/auth/jwt/blacklist/", post(jwt_blacklist))
}

/// An answer in Django REST framework's shape.
#[derive(Debug)]
enum Drf {
    /// 400 with messages per field.
    Fields(Vec<(&'static str, String)>),
    /// `{"detail": …}` (and `"code"`) with a status.
    Detail {
        status: StatusCode,
        detail: String,
        code: Option<&'static str>,
    },
    Throttled(u64),
    /// Any body, as is.
    Raw(StatusCode, Value),
}

type DrfResult<T> = Result<T, Drf>;

impl Drf {
    fn field(name: &'static str, message: impl Into<String>) -> Drf {
        Drf::Fields(vec![(name, message.into())])
    }

    fn detail(status: StatusCode, detail: &str, code: Option<&'static str>) -> Drf {
        Drf::Detail {
            status,
            detail: detail.into(),
            code,
        }
    }

    /// simplejwt's answer to a token it does not accept.
    fn token_not_valid() -> Drf {
        Drf::detail(
            StatusCode::UNAUTHORIZED,
            "Token is invalid",
            Some("token_not_valid"),
        )
    }

    /// What an error of the domain is, in a view where `field` took the
    /// password and `email` the address.
    fn from_auth(e: AuthError, password_field: &'static str) -> Drf {
        match e {
            AuthError::InvalidRequest(m) => Drf::field("email", m),
            AuthError::EmailTaken => Drf::field("email", "user with this email already exists."),
            AuthError::WeakPassword(m) => Drf::field(password_field, m),
            AuthError::InvalidCredentials => Drf::field("current_password", "Invalid password."),
            AuthError::InvalidLink => Drf::field("token", "Invalid token for given user."),
            AuthError::InvalidGrant(_) | AuthError::EmailNotVerified => Drf::detail(
                StatusCode::UNAUTHORIZED,
                "No active account found with the given credentials",
                None,
            ),
            AuthError::InvalidToken(_) => Drf::token_not_valid(),
            AuthError::Throttled { retry_after } | AuthError::Busy { retry_after } => {
                Drf::Throttled(retry_after)
            }
            AuthError::NotFound => Drf::detail(StatusCode::NOT_FOUND, "Not found.", None),
            e @ AuthError::ReauthenticationRequired { .. } => Drf::detail(
                StatusCode::FORBIDDEN,
                &e.to_string(),
                Some("reauthentication_required"),
            ),
            other => {
                tracing::error!(error = %other, "a djoser-compatible request failed");
                Drf::detail(
                    StatusCode::SERVICE_UNAVAILABLE,
                    "Service temporarily unavailable, try again later.",
                    Some("service_unavailable"),
                )
            }
        }
    }
}

impl IntoResponse for Drf {
    fn into_response(self) -> Response {
        match self {
            Drf::Fields(fields) => {
                let mut body = Map::new();
                for (name, message) in fields {
                    let messages = body.entry(name).or_insert_with(|| Value::Array(vec![]));
                    if let Value::Array(list) = messages {
                        list.push(Value::String(message));
                    }
                }
                (StatusCode::BAD_REQUEST, axum::Json(Value::Object(body))).into_response()
            }
            Drf::Detail {
                status,
                detail,
                code,
            } => {
                let body = match code {
                    Some(code) => json!({ "detail": detail, "code": code }),
                    None => json!({ "detail": detail }),
                };
                let mut response = (status, axum::Json(body)).into_response();
                if status == StatusCode::UNAUTHORIZED {
                    response.headers_mut().insert(
                        header::WWW_AUTHENTICATE,
                        HeaderValue::from_static("Bearer realm=\"api\""),
                    );
                }
                response
            }
            Drf::Raw(status, body) => {
                let mut response = (status, axum::Json(body)).into_response();
                response.headers_mut().insert(
                    header::WWW_AUTHENTICATE,
                    HeaderValue::from_static("Bearer realm=\"api\""),
                );
                response
            }
            Drf::Throttled(wait) => {
                let detail =
                    format!("Request was throttled. Expected available in {wait} seconds.");
                let body = json!({ "detail": detail, "code": "throttled" });
                let mut response =
                    (StatusCode::TOO_MANY_REQUESTS, axum::Json(body)).into_response();
                if let Ok(value) = HeaderValue::from_str(&wait.to_string()) {
                    response.headers_mut().insert(header::RETRY_AFTER, value);
                }
                response
            }
        }
    }
}

/// A JSON object body; DRF's answers to what is not one.
struct Body(Map<String, Value>);

impl FromRequest<AppState> for Body {
    type Rejection = Drf;

    async fn from_request(req: Request, state: &AppState) -> Result<Self, Self::Rejection> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(|_| {
                Drf::detail(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "Request body too large.",
                    None,
                )
            })?;
        if bytes.is_empty() {
            return Ok(Body(Map::new()));
        }
        match serde_json::from_slice(&bytes) {
            Ok(Value::Object(map)) => Ok(Body(map)),
            Ok(_) => Err(Drf::detail(
                StatusCode::BAD_REQUEST,
                "Invalid data. Expected a dictionary.",
                Some("invalid"),
            )),
            Err(e) => Err(Drf::detail(
                StatusCode::BAD_REQUEST,
                &format!("JSON parse error - {e}"),
                Some("parse_error"),
            )),
        }
    }
}

impl Body {
    /// The string fields `names`, each required (DRF lists every missing one).
    fn strings<const N: usize>(&self, names: [&'static str; N]) -> DrfResult<[String; N]> {
        let mut missing = Vec::new();
        let values = names.map(|name| match self.0.get(name) {
            Some(Value::String(s)) if !s.is_empty() => s.clone(),
            Some(Value::String(_)) => {
                missing.push((name, "This field may not be blank.".to_string()));
                String::new()
            }
            Some(Value::Number(n)) => n.to_string(),
            Some(_) => {
                missing.push((name, "Not a valid string.".to_string()));
                String::new()
            }
            None => {
                missing.push((name, "This field is required.".to_string()));
                String::new()
            }
        });
        match missing.is_empty() {
            true => Ok(values),
            false => Err(Drf::Fields(missing)),
        }
    }
}

/// Refuses a client over `limit` as DRF's throttles do.
fn limited(limit: &IpLimiter, meta: &ClientMeta) -> DrfResult<()> {
    limit.check(meta.ip).map_err(|e| match e {
        ApiError::RateLimited { retry_after } => Drf::Throttled(retry_after),
        _ => Drf::Throttled(1),
    })
}

/// The signed-in user of a request, with simplejwt's answers when there is none.
async fn caller(state: &AppState, headers: &axum::http::HeaderMap) -> DrfResult<Authenticated> {
    let token = bearer_token(headers).ok().flatten().ok_or_else(|| {
        Drf::detail(
            StatusCode::UNAUTHORIZED,
            "Authentication credentials were not provided.",
            None,
        )
    })?;
    state.auth.authenticate(token).await.map_err(|e| match e {
        AuthError::InvalidToken(_) => {
            let body = json!({
                "detail": "Given token not valid for any token type",
                "code": "token_not_valid",
                "messages": [{
                    "token_class": "AccessToken",
                    "token_type": "access",
                    "message": "Token is invalid",
                }],
            });
            Drf::Raw(StatusCode::UNAUTHORIZED, body)
        }
        other => Drf::from_auth(other, "password"),
    })
}

/// djoser's user: its id and login field.
fn user_json(user: &User) -> Value {
    json!({ "id": user.id, "email": user.email })
}

async fn create_user(
    State(state): State<AppState>,
    meta: ClientMeta,
    body: Body,
) -> DrfResult<Response> {
    let [email, password] = body.strings(["email", "password"])?;
    if let Some(Value::String(again)) = body.0.get("re_password")
        && *again != password
    {
        return Err(Drf::Fields(vec![(
            "non_field_errors",
            "The two password fields didn't match.".into(),
        )]));
    }
    limited(&state.password_limit, &meta)?;
    let created = state
        .auth
        .create_account(&email, &password, None, None, &meta.client)
        .await
        .map_err(|e| Drf::from_auth(e, "password"))?;
    // With verification required, a taken address answers like a new one
    // (its owner is told by mail), so no id can be shown for either.
    let body = match created {
        Some(user) if state.auth.verification() != crate::domain::mail::Verification::Required => {
            user_json(&User::from(&user))
        }
        _ => json!({ "email": email }),
    };
    Ok((StatusCode::CREATED, axum::Json(body)).into_response())
}

async fn list_users(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
) -> DrfResult<Response> {
    let caller = caller(&state, &headers).await?;
    Ok(axum::Json(json!([user_json(&caller.user())])).into_response())
}

async fn me(State(state): State<AppState>, headers: axum::http::HeaderMap) -> DrfResult<Response> {
    let caller = caller(&state, &headers).await?;
    Ok(axum::Json(user_json(&caller.user())).into_response())
}

/// djoser's user serializer has no field a user may change (the login
/// field is read-only): the user as they are.
async fn update_me(
    State(state): State<AppState>,
    headers: axum::http::HeaderMap,
    _body: Body,
) -> DrfResult<Response> {
    me(State(state), headers).await
}

async fn delete_me(
    State(state): State<AppState>,
    meta: ClientMeta,
    headers: axum::http::HeaderMap,
    body: Body,
) -> DrfResult<Response> {
    let caller = caller(&state, &headers).await?;
    let [current] = body.strings(["current_password"])?;
    state
        .auth
        .delete_own_account(&caller, &current, &meta.client)
        .await
        .map_err(|e| Drf::from_auth(e, "current_password"))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn set_password(
    State(state): State<AppState>,
    meta: ClientMeta,
    headers: axum::http::HeaderMap,
    body: Body,
) -> DrfResult<Response> {
    let caller = caller(&state, &headers).await?;
    let [new, current] = body.strings(["new_password", "current_password"])?;
    // Every session ends, this one too: its tokens stop working (djoser
    // keeps them). The fresh session of the change is not handed out here.
    let fresh = state
        .auth
        .change_password(&caller, &current, &new, &meta.client)
        .await
        .map_err(|e| Drf::from_auth(e, "new_password"))?;
    state
        .auth
        .logout_refresh(fresh.refresh_token.expose(), &meta.client)
        .await
        .map_err(|e| Drf::from_auth(e, "new_password"))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn reset_password(
    State(state): State<AppState>,
    meta: ClientMeta,
    body: Body,
) -> DrfResult<Response> {
    let [email] = body.strings(["email"])?;
    limited(&state.password_limit, &meta)?;
    state
        .auth
        .request_password_reset(&email, &meta.client)
        .map_err(|e| Drf::from_auth(e, "password"))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

/// djoser's `uid` is not needed: Latchkey's link token names its user.
async fn reset_password_confirm(
    State(state): State<AppState>,
    meta: ClientMeta,
    body: Body,
) -> DrfResult<Response> {
    let [_uid, token, new] = body.strings(["uid", "token", "new_password"])?;
    state
        .auth
        .confirm_password_reset(&token, &new, &meta.client)
        .await
        .map_err(|e| Drf::from_auth(e, "new_password"))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn activation(
    State(state): State<AppState>,
    meta: ClientMeta,
    body: Body,
) -> DrfResult<Response> {
    let [_uid, token] = body.strings(["uid", "token"])?;
    state
        .auth
        .confirm_verification(&token, &meta.client)
        .await
        .map_err(|e| Drf::from_auth(e, "password"))?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn jwt_create(
    State(state): State<AppState>,
    meta: ClientMeta,
    body: Body,
) -> DrfResult<Response> {
    let [email, password] = body.strings(["email", "password"])?;
    limited(&state.password_limit, &meta)?;
    let signed_in = state
        .auth
        .login(&email, &password, None, &meta.client)
        .await
        .map_err(|e| match e {
            AuthError::InvalidRequest(_) => Drf::detail(
                StatusCode::UNAUTHORIZED,
                "No active account found with the given credentials",
                None,
            ),
            other => Drf::from_auth(other, "password"),
        })?;
    // simplejwt has no second step: the account signs in through /v1/login.
    let SignIn::Done(pair) = signed_in else {
        return Err(Drf::detail(
            StatusCode::FORBIDDEN,
            "This account uses two-step sign-in; sign in through POST /v1/login.",
            Some("mfa_required"),
        ));
    };
    let body = json!({ "refresh": pair.refresh_token.expose(), "access": pair.access_token });
    Ok(axum::Json(body).into_response())
}

/// Rotates the refresh token, as simplejwt does with `ROTATE_REFRESH_TOKENS`;
/// presenting a used one ends its session (reuse detection).
async fn jwt_refresh(
    State(state): State<AppState>,
    meta: ClientMeta,
    body: Body,
) -> DrfResult<Response> {
    let [refresh] = body.strings(["refresh"])?;
    limited(&state.token_limit, &meta)?;
    let pair = state
        .auth
        .refresh(&refresh, &meta.client)
        .await
        .map_err(|e| match e {
            AuthError::InvalidGrant(_) | AuthError::InvalidRequest(_) => Drf::token_not_valid(),
            other => Drf::from_auth(other, "refresh"),
        })?;
    let body = json!({ "access": pair.access_token, "refresh": pair.refresh_token.expose() });
    Ok(axum::Json(body).into_response())
}

/// Accepts a live access token (refresh tokens are opaque here, not JWTs).
async fn jwt_verify(State(state): State<AppState>, body: Body) -> DrfResult<Response> {
    let [token] = body.strings(["token"])?;
    state
        .auth
        .authenticate(&token)
        .await
        .map_err(|_| Drf::token_not_valid())?;
    Ok(axum::Json(json!({})).into_response())
}

/// Ends the refresh token's session (idempotent, as Latchkey's logout is).
async fn jwt_blacklist(
    State(state): State<AppState>,
    meta: ClientMeta,
    body: Body,
) -> DrfResult<Response> {
    let [refresh] = body.strings(["refresh"])?;
    limited(&state.token_limit, &meta)?;
    state
        .auth
        .logout_refresh(&refresh, &meta.client)
        .await
        .map_err(|e| Drf::from_auth(e, "refresh"))?;
    Ok(axum::Json(json!({})).into_response())
}
