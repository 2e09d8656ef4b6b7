//! The identity endpoints: managed identity (App Service / Container Apps and IMDS
//! protocols, plain HTTP), Google's metadata server and token endpoint (plain HTTP, same
//! port) and the Entra v2 token endpoint (HTTPS), plus the HTTP plumbing
//! shared with the control endpoint: listeners that really close when the emulator is
//! "down" and come back on the same port.

mod entra;
mod errors;
mod google;
mod managed_identity;
mod serve;

pub(crate) use entra::handle_entra;
pub(crate) use google::handle_identity;
pub(crate) use serve::{Body, Handler, bind, json_response, read_body, supervise};
