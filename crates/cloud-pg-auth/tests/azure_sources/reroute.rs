//! A transport that sends every request to the local server instead, noting where it was meant
//! to go. Never lets a request reach its original host.

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use azure_core::http::{AsyncRawResponse, HttpClient, Request};

use crate::server::Server;

#[derive(Debug)]
pub(crate) struct Reroute {
    port: u16,
    inner: reqwest::Client,
    original: Arc<Mutex<Vec<String>>>,
}

impl Reroute {
    pub(crate) fn to(server: &Server) -> (Arc<Self>, Arc<Mutex<Vec<String>>>) {
        Self::to_port(server.addr.port())
    }

    pub(crate) fn to_port(port: u16) -> (Arc<Self>, Arc<Mutex<Vec<String>>>) {
        let original = Arc::new(Mutex::new(Vec::new()));
        let client = reqwest::Client::builder().no_proxy().build().unwrap();
        (
            Arc::new(Self {
                port,
                inner: client,
                original: Arc::clone(&original),
            }),
            original,
        )
    }
}

#[async_trait]
impl HttpClient for Reroute {
    async fn execute_request(&self, request: &Request) -> azure_core::Result<AsyncRawResponse> {
        let url = request.url();
        self.original.lock().unwrap().push(format!(
            "{}://{}{}",
            url.scheme(),
            url.host_str().unwrap_or_default(),
            url.path()
        ));
        let mut local = request.clone();
        let target = local.url_mut();
        target.set_scheme("http").unwrap();
        target.set_host(Some("127.0.0.1")).unwrap();
        target.set_port(Some(self.port)).unwrap();
        self.inner.execute_request(&local).await
    }
}
