//! Pages outside the contract: the spec itself (JSON and YAML), a readable
//! docs page rendered from it, the AsyncAPI spec and its page; and the
//! answer to a CORS preflight, for every path. `routes` serves them.

use std::fmt::Write;
use std::sync::OnceLock;

use bytes::Bytes;
use dropshot::HttpError;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use serde_json::Value;

use crate::api::decorate_error;
use crate::context::AppContext;

/// The hand-written spec as JSON (parsed once).
pub fn openapi_json() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        serde_yaml::from_str(trading_pro::OPENAPI_YAML).expect("the embedded spec is valid YAML")
    })
}

/// The hand-written AsyncAPI spec as JSON (parsed once).
pub fn asyncapi_json() -> &'static Value {
    static SPEC: OnceLock<Value> = OnceLock::new();
    SPEC.get_or_init(|| {
        serde_yaml::from_str(trading_pro::ASYNCAPI_YAML).expect("the embedded spec is valid YAML")
    })
}

fn asyncapi_page() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| render_asyncapi(asyncapi_json()))
}

fn docs_page() -> &'static str {
    static PAGE: OnceLock<String> = OnceLock::new();
    PAGE.get_or_init(|| render_docs(openapi_json()))
}

/// The spec and docs pages: path, content type, body.
fn pages() -> [(&'static str, &'static str, &'static str); 6] {
    static JSON: OnceLock<(String, String)> = OnceLock::new();
    let (openapi, asyncapi) =
        JSON.get_or_init(|| (openapi_json().to_string(), asyncapi_json().to_string()));
    [
        ("/api/v1/openapi.json", "application/json", openapi),
        (
            "/api/v1/openapi.yaml",
            "application/yaml",
            trading_pro::OPENAPI_YAML,
        ),
        ("/api/v1/docs", "text/html; charset=utf-8", docs_page()),
        ("/api/v1/ws/asyncapi.json", "application/json", asyncapi),
        (
            "/api/v1/ws/asyncapi.yaml",
            "application/yaml",
            trading_pro::ASYNCAPI_YAML,
        ),
        (
            "/api/v1/ws/asyncapi",
            "text/html; charset=utf-8",
            asyncapi_page(),
        ),
    ]
}

/// The page at `path`, if there is one: its content type and body.
pub fn page(path: &str) -> Option<(&'static str, &'static str)> {
    pages()
        .into_iter()
        .find(|(p, _, _)| *p == path)
        .map(|(_, content_type, body)| (content_type, body))
}

/// Answers a CORS preflight: 204 with the CORS headers for an allowed origin
/// and method, 403 with a message otherwise.
pub fn preflight(ctx: &AppContext, request: &HeaderMap) -> Result<Response<Bytes>, HttpError> {
    match ctx.cors.preflight(request) {
        Some(headers) => {
            let mut response = Response::new(Bytes::new());
            *response.status_mut() = StatusCode::NO_CONTENT;
            let h = response.headers_mut();
            for (k, v) in headers {
                h.insert(k, v);
            }
            h.insert(
                "api-version",
                HeaderValue::from_static(trading_pro::API_VERSION),
            );
            Ok(response)
        }
        None => Err(decorate_error(
            ctx,
            request,
            HttpError::for_client_error(
                Some("CorsRejected".into()),
                dropshot::ClientErrorStatusCode::FORBIDDEN,
                "CORS preflight rejected: the Origin is not allowed (see --cors-origin) or the \
                 requested method is not GET or POST"
                    .into(),
            ),
        )),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

fn schema_name(schema: &Value) -> String {
    if let Some(r) = schema["$ref"].as_str() {
        return r.rsplit('/').next().unwrap_or(r).to_string();
    }
    match schema["type"].as_str() {
        Some("array") => format!("array of {}", schema_name(&schema["items"])),
        Some(t) => schema["format"]
            .as_str()
            .map_or(t.to_string(), |f| format!("{t} ({f})")),
        None => "object".into(),
    }
}

/// A self-contained HTML page (no scripts, no network) from the spec.
fn render_docs(spec: &Value) -> String {
    let mut h = String::new();
    let info = &spec["info"];
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t} docs</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}}\
         code,pre{{background:#f4f4f4;padding:2px 4px}}pre{{white-space:pre-wrap;padding:8px}}\
         .op{{border:1px solid #ddd;border-radius:6px;padding:0 1em;margin:1em 0}}\
         .m{{font-weight:bold;color:#fff;padding:2px 6px;border-radius:4px;background:#2a7}}\
         .POST{{background:#27a}}table{{border-collapse:collapse}}td,th{{border:1px solid #ddd;padding:4px 8px;text-align:left}}\
         </style></head><body><h1>{t} <small>{v}</small></h1><pre>{d}</pre>\
         <p>Machine-readable: <a href=\"/api/v1/openapi.json\">openapi.json</a> · \
         <a href=\"/api/v1/openapi.yaml\">openapi.yaml</a> · WebSocket: <a href=\"/api/v1/ws/asyncapi\">AsyncAPI</a></p>",
        t = esc(info["title"].as_str().unwrap_or("API")),
        v = esc(info["version"].as_str().unwrap_or("")),
        d = esc(info["description"].as_str().unwrap_or("")),
    );
    for (path, item) in spec["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            let m = method.to_uppercase();
            let _ = write!(
                h,
                "<div class=\"op\"><h2><span class=\"m {m}\">{m}</span> <code>{p}</code></h2>\
                 <p><b>{s}</b> (operationId <code>{id}</code>)</p><pre>{d}</pre>",
                p = esc(path),
                s = esc(op["summary"].as_str().unwrap_or("")),
                id = esc(op["operationId"].as_str().unwrap_or("")),
                d = esc(op["description"].as_str().unwrap_or("")),
            );
            if let Some(params) = op["parameters"].as_array() {
                h.push_str("<table><tr><th>parameter</th><th>in</th><th>type</th><th>required</th><th>description</th></tr>");
                for p in params {
                    let _ = write!(
                        h,
                        "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                        esc(p["name"].as_str().unwrap_or("")),
                        esc(p["in"].as_str().unwrap_or("")),
                        esc(&schema_name(&p["schema"])),
                        p["required"].as_bool().unwrap_or(false),
                        esc(p["description"].as_str().unwrap_or("")),
                    );
                }
                h.push_str("</table>");
            }
            if let Some(body) = op.pointer("/requestBody/content/application~1json/schema") {
                let _ = write!(h, "<p>Body: <code>{}</code></p>", esc(&schema_name(body)));
            }
            for (code, resp) in op["responses"].as_object().into_iter().flatten() {
                let schema = resp
                    .pointer("/content/application~1json/schema")
                    .map(schema_name);
                let _ = write!(
                    h,
                    "<p>{} → {}</p>",
                    esc(code),
                    esc(&schema.unwrap_or_else(|| resp["$ref"]
                        .as_str()
                        .unwrap_or("")
                        .rsplit('/')
                        .next()
                        .unwrap_or("")
                        .to_string()))
                );
            }
            h.push_str("</div>");
        }
    }
    h.push_str("<h2>Schemas</h2>");
    for (name, schema) in spec
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let _ = write!(
            h,
            "<h3 id=\"{n}\">{n}</h3><p>{}</p>",
            esc(schema["description"].as_str().unwrap_or("")),
            n = esc(name)
        );
        if let Some(props) = schema["properties"].as_object() {
            let required: Vec<&str> = schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            h.push_str(
                "<table><tr><th>field</th><th>type</th><th>required</th><th>description</th></tr>",
            );
            for (p, s) in props {
                let _ = write!(
                    h,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(p),
                    esc(&schema_name(s)),
                    required.contains(&p.as_str()),
                    esc(s["description"].as_str().unwrap_or(""))
                );
            }
            h.push_str("</table>");
        } else if let Some(values) = schema["enum"].as_array() {
            let values: Vec<String> = values
                .iter()
                .map(|v| esc(v.as_str().unwrap_or("")))
                .collect();
            let _ = write!(
                h,
                "<p>One of: <code>{}</code></p>",
                values.join("</code>, <code>")
            );
        }
    }
    h.push_str("</body></html>");
    h
}

/// A self-contained HTML page for the WebSocket channel, from the spec.
fn render_asyncapi(spec: &Value) -> String {
    let mut h = String::new();
    let info = &spec["info"];
    let _ = write!(
        h,
        "<!doctype html><html><head><meta charset=\"utf-8\"><title>{t}</title><style>\
         body{{font-family:system-ui,sans-serif;max-width:960px;margin:2em auto;padding:0 1em;color:#222}}\
         code,pre{{background:#f4f4f4;padding:2px 4px}}pre{{white-space:pre-wrap;padding:8px}}\
         table{{border-collapse:collapse}}td,th{{border:1px solid #ddd;padding:4px 8px;text-align:left}}\
         </style></head><body><h1>{t} <small>{v}</small></h1><pre>{d}</pre>\
         <p>Machine-readable: <a href=\"/api/v1/ws/asyncapi.json\">asyncapi.json</a> · \
         <a href=\"/api/v1/ws/asyncapi.yaml\">asyncapi.yaml</a> · REST: <a href=\"/api/v1/docs\">docs</a></p>",
        t = esc(info["title"].as_str().unwrap_or("WebSocket API")),
        v = esc(info["version"].as_str().unwrap_or("")),
        d = esc(info["description"].as_str().unwrap_or("")),
    );
    for (name, channel) in spec["channels"].as_object().into_iter().flatten() {
        let _ = write!(
            h,
            "<h2>Channel <code>{}</code></h2><p>{}</p>",
            esc(name),
            esc(channel["description"].as_str().unwrap_or(""))
        );
        for (op, who) in [
            ("publish", "Client to server"),
            ("subscribe", "Server to client"),
        ] {
            let _ = write!(h, "<h3>{who}</h3><ul>");
            for m in channel
                .pointer(&format!("/{op}/message/oneOf"))
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
            {
                let key = m["$ref"]
                    .as_str()
                    .unwrap_or("")
                    .rsplit('/')
                    .next()
                    .unwrap_or("");
                let message = &spec["components"]["messages"][key];
                let example = message
                    .pointer("/examples/0/payload")
                    .map(|p| p.to_string())
                    .unwrap_or_default();
                let _ = write!(
                    h,
                    "<li><code>{}</code>: {} <pre>{}</pre></li>",
                    esc(message["name"].as_str().unwrap_or(key)),
                    esc(message["summary"]
                        .as_str()
                        .or(message["title"].as_str())
                        .unwrap_or("")),
                    esc(&example)
                );
            }
            h.push_str("</ul>");
        }
    }
    h.push_str("<h2>Schemas</h2>");
    for (name, schema) in spec
        .pointer("/components/schemas")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        let _ = write!(
            h,
            "<h3>{}</h3><p>{}</p>",
            esc(name),
            esc(schema["description"].as_str().unwrap_or(""))
        );
        if let Some(props) = schema["properties"].as_object() {
            let required: Vec<&str> = schema["required"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(Value::as_str)
                .collect();
            h.push_str(
                "<table><tr><th>field</th><th>type</th><th>required</th><th>description</th></tr>",
            );
            for (p, s) in props {
                let ty = s["enum"]
                    .as_array()
                    .map(|e| format!("one of {}", Value::Array(e.clone())))
                    .unwrap_or_else(|| schema_name(s));
                let _ = write!(
                    h,
                    "<tr><td><code>{}</code></td><td>{}</td><td>{}</td><td>{}</td></tr>",
                    esc(p),
                    esc(&ty),
                    required.contains(&p.as_str()),
                    esc(s["description"].as_str().unwrap_or(""))
                );
            }
            h.push_str("</table>");
        }
    }
    h.push_str("</body></html>");
    h
}
