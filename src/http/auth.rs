//! Who may call what: admin calls need the admin bearer token; in the split deployment vacancy
//! takes calls only from holders of the service token, when one is set. Tokens are compared in
//! constant time and never logged.

use std::future::{Ready, ready};

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::Payload;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{AUTHORIZATION, HeaderName};
use actix_web::middleware::Next;
use actix_web::{Error as ActixError, web};
use actix_web::{FromRequest, HttpRequest, ResponseError};

use super::ApiError;
use crate::config::Secret;
use crate::domain::Error;
use crate::wire::SERVICE_TOKEN_HEADER;

/// As a value: a lookup by `&str` would build (and allocate) the name on every call.
const SERVICE_TOKEN: HeaderName = HeaderName::from_static(SERVICE_TOKEN_HEADER);

#[derive(Clone, Debug, Default)]
pub struct Tokens {
    pub admin: Option<Secret>,
    /// Required from every caller of this app's `/api/` routes, when set.
    pub service: Option<Secret>,
}

/// Proof that the request carries the admin bearer token: an admin handler's first argument.
///
/// Actix extracts a handler's arguments in order and answers the first refusal, so a caller
/// without the token learns only that (401, or 403 when no token is configured), never what was
/// wrong with the body it sent.
pub struct Admin;

impl FromRequest for Admin {
    type Error = ApiError;
    type Future = Ready<Result<Self, ApiError>>;

    fn from_request(request: &HttpRequest, _: &mut Payload) -> Self::Future {
        ready(require_admin(request).map(|()| Admin))
    }
}

/// Refuses the request unless it carries the admin bearer token.
pub fn require_admin(request: &HttpRequest) -> Result<(), ApiError> {
    let tokens = request
        .app_data::<web::Data<Tokens>>()
        .ok_or_else(|| Error::Internal("no tokens configured in the app".into()))?;
    let Some(admin) = &tokens.admin else {
        return Err(ApiError::Forbidden(
            "admin calls are disabled: start ticketd with --admin-token or TICKETD_ADMIN_TOKEN"
                .into(),
        ));
    };
    let offered = request
        .headers()
        .get(AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.strip_prefix("Bearer "));
    match offered {
        None => Err(ApiError::Unauthorized(
            "admin calls need an Authorization: Bearer <admin token> header".into(),
        )),
        Some(token) if admin.matches(token.trim()) => Ok(()),
        Some(_) => Err(ApiError::Unauthorized(
            "the admin token is not valid".into(),
        )),
    }
}

/// Middleware for vacancy: `/api/` calls must carry the service token when one is configured.
pub async fn require_service_token(
    request: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<EitherBody<impl MessageBody>>, ActixError> {
    let required = request
        .app_data::<web::Data<Tokens>>()
        .and_then(|tokens| tokens.service.clone());
    // The seed's health path is under /api/ but, like /health, tells nothing and must stay open
    // to orchestrators' probes, which carry no token.
    if let Some(token) = required
        && request.path().starts_with("/api/")
        && request.path() != "/api/v1/health"
    {
        let offered = request
            .headers()
            .get(SERVICE_TOKEN)
            .and_then(|value| value.to_str().ok());
        if !offered.is_some_and(|offered| token.matches(offered)) {
            let error = ApiError::Unauthorized(format!(
                "vacancy takes calls only with a valid {SERVICE_TOKEN_HEADER} header"
            ));
            let response = error.error_response();
            return Ok(request.into_response(response).map_into_right_body());
        }
    }
    next.call(request)
        .await
        .map(ServiceResponse::map_into_left_body)
}
