//! The Entra v2 token endpoint: client secrets, federated assertions (workload identity)
//! and the tenant's discovery documents.

use std::sync::Arc;
use std::time::SystemTime;

use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::json;

use super::errors::{entra_error, fault_response};
use super::serve::{Body, json_response, read_body};
use crate::azure::{FEDERATED_AUDIENCE, FederatedClaims, IdentityKind};
use crate::emulator::EmulatorState;
use crate::state::Endpoint;
use crate::util::{ct_eq, now_unix, rfc3339};

pub(crate) async fn handle_entra(
    core: Arc<EmulatorState>,
    req: Request<Incoming>,
) -> Response<Body> {
    let path = req.uri().path().to_string();
    let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
    let is_token = req.method() == Method::POST
        && matches!(segments.as_slice(), [_, "oauth2", "v2.0", "token"]);
    // Counted on arrival, before any added latency.
    if is_token {
        core.shared.count_request(Endpoint::Entra);
    }
    let latency = core.shared.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    let base = core.authority_base();
    match (req.method().clone(), segments.as_slice()) {
        (Method::POST, [tenant, "oauth2", "v2.0", "token"]) => {
            if let Some((status, retry)) = core.shared.take_fault() {
                return fault_response(Endpoint::Entra, status, retry);
            }
            let tenant = tenant.to_string();
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(e) => return entra_error(400, "invalid_request", 900144, &e),
            };
            token_endpoint(&core, &tenant, &body)
        }
        (Method::GET, [tenant, "v2.0", ".well-known", "openid-configuration"]) => {
            if !core.known_tenant(tenant) && !matches!(*tenant, "common" | "organizations") {
                return entra_error(
                    400,
                    "invalid_tenant",
                    90002,
                    &format!("Tenant '{tenant}' not found."),
                );
            }
            let t = if core.known_tenant(tenant) {
                core.tenant.tenant_id.clone()
            } else {
                tenant.to_string()
            };
            json_response(
                200,
                &json!({
                    "token_endpoint": format!("{base}/{t}/oauth2/v2.0/token"),
                    "token_endpoint_auth_methods_supported": ["client_secret_post", "private_key_jwt", "client_secret_basic"],
                    "jwks_uri": format!("{base}/{t}/discovery/v2.0/keys"),
                    "response_modes_supported": ["query", "fragment", "form_post"],
                    "subject_types_supported": ["pairwise"],
                    "id_token_signing_alg_values_supported": ["RS256"],
                    "response_types_supported": ["code", "id_token", "code id_token", "id_token token"],
                    "scopes_supported": ["openid", "profile", "email", "offline_access"],
                    "issuer": format!("{base}/{t}/v2.0"),
                    "request_uri_parameter_supported": false,
                    "authorization_endpoint": format!("{base}/{t}/oauth2/v2.0/authorize"),
                    "device_authorization_endpoint": format!("{base}/{t}/oauth2/v2.0/devicecode"),
                    "end_session_endpoint": format!("{base}/{t}/oauth2/v2.0/logout"),
                    "tenant_region_scope": "NA",
                    "cloud_instance_name": "pgauth-emulator",
                }),
            )
        }
        (Method::GET, ["common", "discovery", "instance"]) => {
            let host = base.trim_start_matches("https://").to_string();
            json_response(
                200,
                &json!({
                    "tenant_discovery_endpoint": format!("{base}/{}/v2.0/.well-known/openid-configuration", core.tenant.tenant_id),
                    "api-version": "1.1",
                    "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
                }),
            )
        }
        (Method::GET, [_, "discovery", "v2.0", "keys"])
        | (Method::GET, [_, "discovery", "keys"]) => {
            json_response(200, &json!({"keys": [core.key.jwk()]}))
        }
        _ => entra_error(
            404,
            "invalid_request",
            900561,
            "The endpoint only accepts POST requests.",
        ),
    }
}

fn token_endpoint(core: &EmulatorState, tenant: &str, body: &[u8]) -> Response<Body> {
    if !core.known_tenant(tenant) {
        return entra_error(
            400,
            "invalid_request",
            90002,
            &format!(
                "Tenant '{tenant}' not found. Check to make sure you have the correct tenant ID and are signing into the correct cloud."
            ),
        );
    }
    let form: Vec<(String, String)> = url::form_urlencoded::parse(body)
        .map(|(k, v)| (k.into_owned(), v.into_owned()))
        .collect();
    let get = |name: &str| {
        form.iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
            .filter(|v| !v.is_empty())
    };
    let missing = |p: &str| {
        entra_error(
            400,
            "invalid_request",
            900144,
            &format!("The request body must contain the following parameter: '{p}'."),
        )
    };
    let Some(grant_type) = get("grant_type") else {
        return missing("grant_type");
    };
    if grant_type != "client_credentials" {
        return entra_error(
            400,
            "unsupported_grant_type",
            70003,
            &format!("The app requested an unsupported grant type '{grant_type}'."),
        );
    }
    let Some(client_id) = get("client_id") else {
        return missing("client_id");
    };
    let Some(scope) = get("scope") else {
        return missing("scope");
    };
    let scopes: Vec<&str> = scope.split_whitespace().collect();
    let resource = match scopes.as_slice() {
        [s] if s.ends_with("/.default") => s.trim_end_matches("/.default").to_string(),
        _ => {
            return entra_error(
                400,
                "invalid_scope",
                1002012,
                &format!(
                    "The provided value for scope {scope} is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier (application ID URI)."
                ),
            );
        }
    };
    let app = core.tenant.identities.iter().find(|i| {
        matches!(i.kind, IdentityKind::Workload | IdentityKind::UserAssigned)
            && i.client_id.eq_ignore_ascii_case(client_id)
    });
    let Some(app) = app else {
        return entra_error(
            400,
            "unauthorized_client",
            700016,
            &format!(
                "Application with identifier '{client_id}' was not found in the directory '{}'. This can happen if the application has not been installed by the administrator of the tenant or consented to by any user in the tenant. You may have sent your authentication request to the wrong tenant.",
                core.tenant.tenant_id
            ),
        );
    };
    if let Some(secret) = get("client_secret") {
        let ok = app.kind == IdentityKind::Workload
            && ct_eq(secret.as_bytes(), core.client_secret.as_bytes());
        if !ok {
            return entra_error(
                401,
                "invalid_client",
                7000215,
                &format!(
                    "Invalid client secret provided. Ensure the secret being sent in the request is the client secret value, not the client secret ID, for a secret added to app '{client_id}'."
                ),
            );
        }
    } else if let Some(assertion) = get("client_assertion") {
        if get("client_assertion_type")
            != Some("urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        {
            return entra_error(
                400,
                "invalid_request",
                90058,
                "The request body must contain the following parameter: 'client_assertion_type' set to 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer'.",
            );
        }
        if let Err(resp) = check_assertion(core, assertion) {
            return *resp;
        }
    } else {
        return entra_error(
            401,
            "invalid_client",
            7000218,
            "The request body must contain the following parameter: 'client_assertion' or 'client_secret'.",
        );
    }
    let lifetime = core.shared.token_lifetime();
    let now = SystemTime::now();
    match core.mint_for(app, &resource, now, now, lifetime) {
        Ok((token, exp)) => {
            core.shared.count_issued(Endpoint::Entra);
            let expires_in = (exp - now_unix()).max(0);
            json_response(
                200,
                &json!({
                    "token_type": "Bearer",
                    "expires_in": expires_in,
                    "ext_expires_in": expires_in,
                    "access_token": token,
                }),
            )
        }
        Err(e) => entra_error(500, "server_error", 90033, &e.to_string()),
    }
}

fn check_assertion(core: &EmulatorState, assertion: &str) -> Result<(), Box<Response<Body>>> {
    use jsonwebtoken::errors::ErrorKind;
    let invalid =
        |code: u32, desc: String| Box::new(entra_error(400, "invalid_client", code, &desc));
    let unverified: FederatedClaims =
        jsonwebtoken::dangerous::insecure_decode::<FederatedClaims>(assertion)
            .map(|d| d.claims)
            .map_err(|_| invalid(50027, "JWT token is invalid or malformed.".into()))?;
    if unverified.iss != core.federated_issuer {
        return Err(invalid(
            700211,
            format!(
                "No matching federated identity record found for presented assertion issuer '{}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion.",
                unverified.iss
            ),
        ));
    }
    let mut validation = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
    validation.leeway = 0;
    validation.validate_aud = false;
    validation.validate_nbf = true;
    let decoded = jsonwebtoken::decode::<FederatedClaims>(
        assertion,
        core.federation_key.decoding_key(),
        &validation,
    );
    let claims = match decoded {
        Ok(d) => d.claims,
        Err(e) => {
            return Err(match e.kind() {
                ErrorKind::ExpiredSignature | ErrorKind::ImmatureSignature => invalid(
                    700024,
                    format!(
                        "Client assertion is not within its valid time range. Current time: {}, assertion valid from {}, expiry time of assertion {}.",
                        rfc3339(now_unix()),
                        rfc3339(unverified.nbf),
                        rfc3339(unverified.exp)
                    ),
                ),
                _ => invalid(
                    700027,
                    "Client assertion failed signature validation.".into(),
                ),
            });
        }
    };
    if !claims.aud.iter().any(|a| a == FEDERATED_AUDIENCE) {
        return Err(invalid(
            700212,
            format!(
                "No matching federated identity record found for presented assertion audience '{}'. Please check your federated identity credential Subject, Audience and Issuer against the presented assertion.",
                claims.aud.join(",")
            ),
        ));
    }
    if claims.sub != core.federated_subject {
        return Err(invalid(
            70021,
            format!(
                "No matching federated identity record found for presented assertion. Assertion Issuer: '{}'. Assertion Subject: '{}'. Assertion Audience: '{}'.",
                claims.iss,
                claims.sub,
                claims.aud.join(",")
            ),
        ));
    }
    Ok(())
}
