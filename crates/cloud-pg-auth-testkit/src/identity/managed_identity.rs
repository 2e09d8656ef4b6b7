//! The managed identity endpoints: the App Service / Container Apps protocol and IMDS.

use std::sync::Arc;
use std::time::SystemTime;

use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::json;

use super::errors::{fault_response, imds_error};
use super::serve::{Body, json_response, query_pairs};
use crate::azure::{Identity, IdentityKind};
use crate::emulator::EmulatorState;
use crate::state::Endpoint;
use crate::util::{ct_eq, now_unix};

pub(crate) async fn handle_managed_identity(
    core: Arc<EmulatorState>,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().trim_end_matches('/');
    let endpoint = match path {
        "/msi/token" => Some(Endpoint::AppService),
        "/metadata/identity/oauth2/token" => Some(Endpoint::Imds),
        _ => None,
    };
    // Counted on arrival, before any added latency.
    if let Some(e) = endpoint {
        core.shared.count_request(e);
    }
    let latency = core.shared.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let Some(endpoint) = endpoint else {
        return imds_error(404, "not_found", "The requested path was not found");
    };
    if let Some((status, retry)) = core.shared.take_fault() {
        return fault_response(endpoint, status, retry);
    }
    if req.method() != Method::GET {
        return imds_error(
            405,
            "invalid_request",
            "The requested method is not allowed",
        );
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    match endpoint {
        Endpoint::Imds => {
            if !header("metadata").is_some_and(|v| v.eq_ignore_ascii_case("true")) {
                return imds_error(
                    400,
                    "invalid_request",
                    "Required metadata header not specified",
                );
            }
            if header("x-forwarded-for").is_some() {
                return imds_error(
                    400,
                    "invalid_request",
                    "Request contains X-Forwarded-For header",
                );
            }
        }
        _ => {
            let ok = header("x-identity-header")
                .is_some_and(|v| ct_eq(v.as_bytes(), core.identity_header.as_bytes()));
            if !ok {
                return imds_error(
                    401,
                    "invalid_request",
                    "The X-IDENTITY-HEADER header is missing or does not match IDENTITY_HEADER",
                );
            }
        }
    }
    let q = query_pairs(&req);
    let get = |name: &str| q.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str());
    if get("api-version").is_none_or(str::is_empty) {
        return imds_error(
            400,
            "invalid_request",
            "Bad request. api-version was not specified in the request",
        );
    }
    let Some(resource) = get("resource").filter(|r| !r.is_empty()) else {
        return imds_error(
            400,
            "invalid_request",
            "Required query variable 'resource' is missing",
        );
    };
    let selectors: Vec<(&str, &str)> = [
        "client_id",
        "object_id",
        "principal_id",
        "msi_res_id",
        "mi_res_id",
    ]
    .iter()
    .filter_map(|k| get(k).filter(|v| !v.is_empty()).map(|v| (*k, v)))
    .collect();
    if selectors.len() > 1 {
        return imds_error(
            400,
            "invalid_request",
            "Only one of client_id, object_id and msi_res_id can be specified",
        );
    }
    let identity: Option<&Identity> = match selectors.first() {
        None => Some(core.tenant.get(IdentityKind::SystemAssigned)),
        Some((k, v)) => core.tenant.managed_identities().find(|i| match *k {
            "client_id" => i.client_id.eq_ignore_ascii_case(v),
            "object_id" | "principal_id" => i.object_id.eq_ignore_ascii_case(v),
            _ => i
                .resource_id
                .as_deref()
                .is_some_and(|r| r.eq_ignore_ascii_case(v)),
        }),
    };
    let Some(identity) = identity else {
        return imds_error(400, "invalid_request", "Identity not found");
    };
    let audience = resource.strip_suffix("/.default").unwrap_or(resource);
    let lifetime = core.shared.token_lifetime();
    let now = SystemTime::now();
    let (token, exp) = match core.mint_for(identity, audience, now, now, lifetime) {
        Ok(t) => t,
        Err(e) => return imds_error(500, "unknown_error", &e.to_string()),
    };
    core.shared.count_issued(endpoint);
    let nbf = crate::util::unix(now);
    let expires_in = (exp - now_unix()).max(0).to_string();
    json_response(
        200,
        &json!({
            "access_token": token,
            "client_id": identity.client_id,
            "expires_in": expires_in,
            "expires_on": exp.to_string(),
            "ext_expires_in": expires_in,
            "not_before": nbf.to_string(),
            "resource": resource,
            "token_type": "Bearer",
        }),
    )
}
