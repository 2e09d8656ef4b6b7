//! Unit tests of the azure module, by topic; the helpers they share are here.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;

use super::*;
use crate::Secret;
use crate::env::Env;
use crate::token::TokenDetails;

mod choice;
mod claims;
mod cloud;
mod options;

fn env(pairs: &[(&str, &str)]) -> Env {
    Env::from_pairs(pairs.iter().copied())
}

fn jwt(claims: &str) -> String {
    format!(
        "{}.{}.c2ln",
        URL_SAFE_NO_PAD.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        URL_SAFE_NO_PAD.encode(claims)
    )
}
