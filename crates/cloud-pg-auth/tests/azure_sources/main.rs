//! The Azure token source against local endpoints that speak the real wire formats: the App
//! Service managed identity protocol over http://127.0.0.1, IMDS and the Entra token endpoint
//! through an injected transport that reroutes to 127.0.0.1 (no traffic ever leaves the
//! machine), and the Azure CLI through a fake `az` on the source's own search path.
#![cfg(feature = "azure")]

mod reroute;
mod server;
mod support;

mod audience;
mod caller;
mod cli;
mod emulator;
mod entra;
mod limits;
mod managed_identity;
mod runtimes;
mod startup;
