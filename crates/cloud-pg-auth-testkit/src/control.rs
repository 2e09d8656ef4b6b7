//! The control endpoint: `GET /stats`, `POST /faults`, `POST /reset`, `GET /env`.

use std::sync::Arc;

use hyper::body::Incoming;
use hyper::{Method, Request, Response};
use serde_json::{Value, json};

use crate::emulator::EmulatorState;
use crate::identity::{Body, json_response, read_body};

pub(crate) async fn handle(core: Arc<EmulatorState>, req: Request<Incoming>) -> Response<Body> {
    let path = req.uri().path().trim_end_matches('/').to_string();
    match (req.method().clone(), path.as_str()) {
        (Method::GET, "/stats") => json_response(200, &json!(core.shared.stats())),
        (Method::GET, "/faults") => json_response(200, &json!(core.shared.faults())),
        (Method::GET, "/env") => {
            let env: serde_json::Map<String, Value> = core
                .env
                .get()
                .map(|e| e.iter().map(|(k, v)| (k.clone(), json!(v))).collect())
                .unwrap_or_default();
            json_response(200, &Value::Object(env))
        }
        (Method::POST, "/faults") => {
            let body = match read_body(req).await {
                Ok(b) => b,
                Err(e) => return json_response(400, &json!({"error": e})),
            };
            let v: Value = if body.iter().all(u8::is_ascii_whitespace) {
                json!({})
            } else {
                match serde_json::from_slice(&body) {
                    Ok(v) => v,
                    Err(e) => {
                        return json_response(400, &json!({"error": format!("invalid json: {e}")}));
                    }
                }
            };
            match core.set_faults_json(&v).await {
                Ok(state) => json_response(200, &json!(state)),
                Err(e) => json_response(400, &json!({"error": e.to_string()})),
            }
        }
        (Method::POST, "/reset") => {
            core.reset().await;
            json_response(200, &json!(core.shared.stats()))
        }
        (_, "/stats" | "/faults" | "/reset" | "/env") => {
            json_response(405, &json!({"error": "method not allowed"}))
        }
        _ => json_response(
            404,
            &json!({"error": "not found", "endpoints": ["GET /stats", "GET /faults", "POST /faults", "POST /reset", "GET /env"]}),
        ),
    }
}
