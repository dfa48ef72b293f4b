//! Puts the checks the query listener enforces into its OpenAPI document,
//! so that a client or fuzzer built from the document sends nothing the
//! server refuses for a reason the document does not give.
//!
//! The engine owns these checks ([`super::params`], [`super::cursor`], the
//! router's fallbacks), so it writes them into every /v1 operation after the
//! domain has declared its routes: every path parameter of a /v1 route is an
//! id checked by [`super::params::check_id`]; `limit`, `cursor`, `from` and
//! `to` are the engine's own query parameters. Limits that come from
//! configuration (`api.max_page_size`) are written with their configured
//! value.
//!
//! What no schema can state is left to the route's 400 answers: a cursor
//! must have been signed by galley for this list and page size, and `to`
//! must be after `from` and within `api.max_time_window`.

use serde_json::{json, Map, Value};

use super::cursor::MAX_CURSOR_CHARS;
use super::params::{Limits, MAX_ID_CHARS};

/// No control character (Unicode category Cc), as [`super::params::check_id`] wants.
const ID_PATTERN: &str = "^[^\\u0000-\\u001f\\u007f-\\u009f]+$";
/// URL-safe base64 without padding, as [`super::cursor`] writes it.
const CURSOR_PATTERN: &str = "^[A-Za-z0-9_-]+$";
/// Epoch milliseconds (digits, at most the end of year 9999).
const EPOCH_MS_PATTERN: &str = "^[0-9]{1,15}$";

/// Applies the engine's constraints to every /v1 operation of `doc`.
pub fn apply(doc: &mut Value, limits: &Limits) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for (path, item) in paths.iter_mut() {
        if !path.starts_with("/v1/") {
            continue;
        }
        let Some(ops) = item.as_object_mut() else {
            continue;
        };
        for op in ops.values_mut() {
            if let Some(params) = op.get_mut("parameters").and_then(Value::as_array_mut) {
                params
                    .iter_mut()
                    .for_each(|p| constrain_parameter(p, limits));
            }
            if let Some(responses) = op.get_mut("responses").and_then(Value::as_object_mut) {
                add_router_responses(responses);
            }
        }
    }
}

fn constrain_parameter(param: &mut Value, limits: &Limits) {
    let location = param["in"].as_str().unwrap_or_default().to_owned();
    let name = param["name"].as_str().unwrap_or_default().to_owned();
    let schema = match (location.as_str(), name.as_str()) {
        ("path", _) => json!({
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_ID_CHARS,
            "pattern": ID_PATTERN,
        }),
        ("query", "limit") => json!({
            "type": "integer",
            "minimum": 1,
            "maximum": limits.max_page_size,
        }),
        ("query", "cursor") => json!({
            "type": "string",
            "minLength": 1,
            "maxLength": MAX_CURSOR_CHARS,
            "pattern": CURSOR_PATTERN,
        }),
        ("query", "from" | "to") => json!({
            "anyOf": [
                {"type": "string", "format": "date-time"},
                {"type": "string", "pattern": EPOCH_MS_PATTERN},
            ]
        }),
        _ => return,
    };
    param["schema"] = schema;
}

/// The router's own answers, possible on every route.
fn add_router_responses(responses: &mut Map<String, Value>) {
    let error = json!({"application/json": {"schema": {"$ref": "#/components/schemas/ErrorBody"}}});
    responses.entry("404").or_insert_with(
        || json!({"description": "No such route (`unknown_route`)", "content": error.clone()}),
    );
    responses.entry("405").or_insert_with(|| {
        json!({
            "description": "A method this route does not answer (`method_not_allowed`); \
                `Allow` lists the ones it does",
            "content": error.clone(),
            "headers": {"Allow": {"schema": {"type": "string"}}},
        })
    });
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[test]
    fn the_engine_parameters_and_router_answers_are_written_in() {
        let mut doc = json!({"paths": {
            "/v1/things/{thing_id}": {"get": {
                "parameters": [
                    {"name": "thing_id", "in": "path", "required": true, "schema": {"type": "string"}},
                    {"name": "limit", "in": "query", "schema": {"type": "integer"}},
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                    {"name": "from", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {"200": {"description": "ok"}, "404": {"description": "no thing"}},
            }},
            "/openapi.json": {"get": {"responses": {"200": {"description": "doc"}}}},
        }});
        let limits = Limits {
            default_page_size: 5,
            max_page_size: 7,
            max_time_window: Duration::from_secs(60),
            max_request_body_bytes: 10,
        };
        apply(&mut doc, &limits);
        let op = &doc["paths"]["/v1/things/{thing_id}"]["get"];
        assert_eq!(op["parameters"][0]["schema"]["maxLength"], 128);
        assert_eq!(op["parameters"][0]["schema"]["pattern"], ID_PATTERN);
        assert_eq!(op["parameters"][1]["schema"]["maximum"], 7);
        assert_eq!(op["parameters"][1]["schema"]["minimum"], 1);
        assert_eq!(op["parameters"][2]["schema"]["minLength"], 1);
        assert!(op["parameters"][3]["schema"]["anyOf"].is_array());
        assert_eq!(op["responses"]["404"]["description"], "no thing");
        assert!(op["responses"]["405"]["headers"]["Allow"].is_object());
        assert!(doc["paths"]["/openapi.json"]["get"]["responses"]["405"].is_null());
    }
}
