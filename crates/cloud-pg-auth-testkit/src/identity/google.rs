//! Google's endpoints on the identity port: the metadata server, the OAuth 2 token endpoint,
//! the Security Token Service, `generateAccessToken` and the subject token URL of the
//! emulator's [`GcpIdentity`], behind the same request counters, added
//! latency and injected faults as the managed identity endpoints, so herd and outage tests
//! cover them too.

use std::sync::Arc;

use hyper::Response;
use hyper::body::Incoming;

use super::errors::fault_response;
use super::managed_identity::handle_managed_identity;
use super::serve::Body;
use crate::emulator::EmulatorState;
use crate::gcp::GcpIdentity;
use crate::state::Endpoint;

/// Answers a request on the identity port: Google's paths go to [`GcpIdentity`], the rest
/// to the managed identity endpoints.
pub(crate) async fn handle_identity(
    core: Arc<EmulatorState>,
    req: hyper::Request<Incoming>,
) -> Response<Body> {
    if GcpIdentity::serves(req.uri().path()) {
        handle_gcp(&core, req).await
    } else {
        handle_managed_identity(core, req).await
    }
}

async fn handle_gcp(core: &EmulatorState, req: hyper::Request<Incoming>) -> Response<Body> {
    // An email look-up or a subject token (the platform's, not Google's) is no token
    // request: it is neither counted nor given a fault, so the counters mean what they
    // mean for the other clouds.
    let token_request = GcpIdentity::is_token_request(req.uri().path());
    if token_request {
        core.shared.count_request(Endpoint::Gcp);
    }
    let latency = core.shared.latency();
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    if token_request && let Some((status, retry)) = core.shared.take_fault() {
        return fault_response(Endpoint::Gcp, status, retry);
    }
    // The `token_lifetime` fault applies to Google's tokens as to Entra's.
    core.gcp.set_token_lifetime(core.shared.token_lifetime());
    let response = core.gcp.handle(req).await;
    if token_request && response.status().is_success() {
        core.shared.count_issued(Endpoint::Gcp);
    }
    response
}
