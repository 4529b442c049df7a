//! The OpenAPI dropshot renders from the API trait's signatures must be
//! equivalent to the hand-written `specs/openapi.yaml`: same paths, methods,
//! operationIds, parameters, bodies, status codes, response headers and
//! schemas. Descriptions and examples may differ; structure may not.
//!
//! The server implements `TradingService`, whose methods take and return
//! exactly the types of the dropshot trait, and serves the route table
//! checked last here against the same rendering.

use std::collections::BTreeMap;

use serde_json::{json, Map, Value};

fn spec() -> Value {
    serde_yaml::from_str(trading_pro::OPENAPI_YAML).expect("spec parses")
}

/// The rendering of both dropshot traits (see `TradingApiLiterals`),
/// merged: their paths and schemas.
fn rendered() -> Value {
    fn render<C: dropshot::ServerContext>(api: dropshot::ApiDescription<C>) -> Value {
        api.openapi("Trading Pro API", semver::Version::new(1, 0, 0))
            .json()
            .expect("renders")
    }
    let mut doc = render(
        trading_pro::api::trading_api_mod::stub_api_description().expect("api description builds"),
    );
    let literals = render(
        trading_pro::api::trading_api_literals_mod::stub_api_description()
            .expect("api description builds"),
    );
    for section in ["/paths", "/components/schemas"] {
        let more = literals
            .pointer(section)
            .and_then(Value::as_object)
            .cloned();
        let into = doc.pointer_mut(section).and_then(Value::as_object_mut);
        if let (Some(more), Some(into)) = (more, into) {
            for (key, value) in more {
                match (into.get_mut(&key), value) {
                    (Some(Value::Object(a)), Value::Object(b)) => a.extend(b),
                    (_, value) => {
                        into.insert(key, value);
                    }
                }
            }
        }
    }
    doc
}

/// Resolves `$ref`s and keeps only what is contract: types, fields,
/// requiredness, items, enums and formats.
fn schema(doc: &Value, s: &Value, depth: usize) -> Value {
    if depth > 32 {
        return json!("<recursion>");
    }
    if let Some(r) = s.get("$ref").and_then(Value::as_str) {
        let target = doc
            .pointer(&r.replacen('#', "", 1))
            .cloned()
            .unwrap_or(json!({ "missing": r }));
        return schema(doc, &target, depth + 1);
    }
    // schemars wraps a documented reference as `allOf: [ {$ref} ]`.
    if let Some([only]) = s.get("allOf").and_then(Value::as_array).map(Vec::as_slice) {
        return schema(doc, only, depth + 1);
    }
    let mut out = Map::new();
    for key in ["type", "format"] {
        if let Some(v) = s.get(key) {
            out.insert(key.into(), v.clone());
        }
    }
    if let Some(props) = s.get("properties").and_then(Value::as_object) {
        let props: BTreeMap<_, _> = props
            .iter()
            .map(|(k, v)| (k.clone(), schema(doc, v, depth + 1)))
            .collect();
        out.insert("properties".into(), json!(props));
    }
    let mut required: Vec<String> = s
        .get("required")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    required.sort();
    if !required.is_empty() {
        out.insert("required".into(), json!(required));
    }
    if let Some(items) = s.get("items") {
        out.insert("items".into(), schema(doc, items, depth + 1));
    }
    if let Some(values) = s.get("enum").and_then(Value::as_array) {
        let mut values: Vec<String> = values.iter().map(Value::to_string).collect();
        values.sort();
        out.insert("enum".into(), json!(values));
    }
    for key in ["oneOf", "anyOf"] {
        if let Some(list) = s.get(key).and_then(Value::as_array) {
            out.insert(
                key.into(),
                Value::Array(list.iter().map(|v| schema(doc, v, depth + 1)).collect()),
            );
        }
    }
    Value::Object(out)
}

fn resolve<'a>(doc: &'a Value, v: &'a Value) -> &'a Value {
    match v.get("$ref").and_then(Value::as_str) {
        Some(r) => doc.pointer(&r.replacen('#', "", 1)).unwrap_or(v),
        None => v,
    }
}

fn content(doc: &Value, v: &Value) -> Value {
    let mut out = BTreeMap::new();
    for (mime, media) in v
        .get("content")
        .and_then(Value::as_object)
        .into_iter()
        .flatten()
    {
        out.insert(
            mime.clone(),
            schema(doc, media.get("schema").unwrap_or(&Value::Null), 0),
        );
    }
    json!(out)
}

/// The contract-relevant view of a whole document, keyed by "METHOD path".
fn canonical(doc: &Value) -> BTreeMap<String, Value> {
    let mut ops = BTreeMap::new();
    for (path, item) in doc["paths"].as_object().into_iter().flatten() {
        for (method, op) in item.as_object().into_iter().flatten() {
            let mut params = BTreeMap::new();
            for p in op["parameters"].as_array().into_iter().flatten() {
                let p = resolve(doc, p);
                params.insert(
                    format!("{}:{}", p["in"].as_str().unwrap_or("?"), p["name"].as_str().unwrap_or("?")),
                    json!({ "required": p["required"].as_bool().unwrap_or(false), "schema": schema(doc, &p["schema"], 0) }),
                );
            }
            let body = op.get("requestBody").map(|b| {
                let b = resolve(doc, b);
                json!({ "required": b["required"].as_bool().unwrap_or(false), "content": content(doc, b) })
            });
            let mut responses = BTreeMap::new();
            for (code, r) in op["responses"].as_object().into_iter().flatten() {
                let r = resolve(doc, r);
                let mut headers = BTreeMap::new();
                for (name, h) in r
                    .get("headers")
                    .and_then(Value::as_object)
                    .into_iter()
                    .flatten()
                {
                    let h = resolve(doc, h);
                    headers.insert(
                        name.to_ascii_lowercase(),
                        json!({ "required": h["required"].as_bool().unwrap_or(false), "schema": schema(doc, &h["schema"], 0) }),
                    );
                }
                responses.insert(
                    code.clone(),
                    json!({ "content": content(doc, r), "headers": headers }),
                );
            }
            ops.insert(
                format!("{} {}", method.to_uppercase(), path),
                json!({ "operationId": op["operationId"], "parameters": params, "requestBody": body, "responses": responses }),
            );
        }
    }
    ops
}

/// Every difference, as "where: spec says X, server says Y".
fn differences(spec: &Value, server: &Value) -> Vec<String> {
    fn walk(at: &str, a: &Value, b: &Value, out: &mut Vec<String>) {
        match (a, b) {
            (Value::Object(x), Value::Object(y)) => {
                let keys: std::collections::BTreeSet<_> = x.keys().chain(y.keys()).collect();
                for k in keys {
                    walk(
                        &format!("{at}/{k}"),
                        x.get(k).unwrap_or(&Value::Null),
                        y.get(k).unwrap_or(&Value::Null),
                        out,
                    );
                }
            }
            _ if a != b => out.push(format!("{at}: spec has {a}, server has {b}")),
            _ => {}
        }
    }
    let mut out = Vec::new();
    walk(
        "",
        &json!(canonical(spec)),
        &json!(canonical(server)),
        &mut out,
    );
    out
}

#[test]
fn server_matches_the_spec() {
    let diffs = differences(&spec(), &rendered());
    assert!(
        diffs.is_empty(),
        "the server drifted from specs/openapi.yaml:\n{}",
        diffs.join("\n")
    );
}

#[test]
fn the_comparison_sees_every_operation() {
    let ops = canonical(&spec());
    assert_eq!(ops.len(), 32, "{:?}", ops.keys().collect::<Vec<_>>());
    assert_eq!(canonical(&rendered()).len(), 32);
}

/// The route table the server dispatches on names each operation at the
/// method and path the rendering (and so the spec) gives it.
#[test]
fn the_route_table_is_the_rendered_api() {
    let doc = rendered();
    let mut rendered_routes = Vec::new();
    for (path, item) in doc["paths"].as_object().unwrap() {
        for (method, op) in item.as_object().unwrap() {
            rendered_routes.push((
                op["operationId"].as_str().unwrap().to_string(),
                method.to_uppercase(),
                path.clone(),
            ));
        }
    }
    let mut table: Vec<_> = trading_pro::api::ROUTES
        .iter()
        .map(|(op, m, p)| (op.operation_id().to_string(), m.to_string(), p.to_string()))
        .collect();
    rendered_routes.sort();
    table.sort();
    assert_eq!(table, rendered_routes);
}

/// A deliberate difference of each kind is caught, so the test above cannot
/// pass by comparing nothing.
/// The facts the edge acts on before a handler runs (generated by
/// `build.rs`) are each operation's in the spec: its place, its body
/// limit, whether it is a data request, the schemes its security names.
#[test]
fn the_generated_operation_facts_are_the_spec() {
    let doc = spec();
    for facts in trading_pro::api::OPERATION_FACTS {
        assert_eq!(facts.operation.facts().operation_id, facts.operation_id);
        let op = &doc["paths"][facts.path][facts.method.to_ascii_lowercase()];
        assert_eq!(op["operationId"], facts.operation_id);
        assert_eq!(op["tags"][0], facts.tag);
        assert_eq!(
            op["x-body-max-bytes"].as_u64().map(|n| n as usize),
            facts.body_max_bytes,
            "{}",
            facts.operation_id
        );
        assert_eq!(op["x-data-request"] == true, facts.data_request);
        let schemes: Vec<&str> = op["security"]
            .as_array()
            .into_iter()
            .flatten()
            .flat_map(|req| req.as_object().unwrap().keys().map(String::as_str))
            .collect();
        assert_eq!(schemes, facts.security_schemes, "{}", facts.operation_id);
    }
    let data: Vec<&str> = trading_pro::api::OPERATION_FACTS
        .iter()
        .filter(|f| f.data_request)
        .map(|f| f.operation_id)
        .collect();
    assert_eq!(data, ["getBars", "getQuotes", "ingestBars", "ingestTrades"]);
}

#[test]
fn deliberate_drift_is_caught() {
    let server = rendered();
    type Mutation = (&'static str, fn(&mut Value));
    let mutations: Vec<Mutation> = vec![
        ("renamed field", |s| {
            let props = s
                .pointer_mut("/components/schemas/BarsResponse/properties")
                .unwrap()
                .as_object_mut()
                .unwrap();
            let v = props.remove("no_data").unwrap();
            props.insert("noData".into(), v);
        }),
        ("changed field type", |s| {
            *s.pointer_mut("/components/schemas/Bar/properties/time/type")
                .unwrap() = json!("string");
        }),
        ("newly required field", |s| {
            s.pointer_mut("/components/schemas/BarsResponse/required")
                .unwrap()
                .as_array_mut()
                .unwrap()
                .push(json!("next_time"));
        }),
        ("renamed operationId", |s| {
            *s.pointer_mut("/paths/~1api~1v1~1datafeed~1bars/get/operationId")
                .unwrap() = json!("getHistory");
        }),
        ("extra query parameter", |s| {
            s.pointer_mut("/paths/~1api~1v1~1datafeed~1bars/get/parameters").unwrap().as_array_mut().unwrap().push(
                json!({ "name": "limit", "in": "query", "required": false, "schema": { "type": "integer" } }),
            );
        }),
        ("changed status code", |s| {
            let r = s
                .pointer_mut("/paths/~1api~1v1~1health/get/responses")
                .unwrap()
                .as_object_mut()
                .unwrap();
            let ok = r.remove("200").unwrap();
            r.insert("201".into(), ok);
        }),
        ("removed path", |s| {
            s["paths"]
                .as_object_mut()
                .unwrap()
                .remove("/api/v1/datafeed/time");
        }),
        ("changed enum", |s| {
            s.pointer_mut("/components/schemas/QuoteStatus/enum")
                .unwrap()
                .as_array_mut()
                .unwrap()
                .push(json!("partial"));
        }),
        ("dropped response header", |s| {
            s.pointer_mut("/paths/~1api~1v1~1version/get/responses/200")
                .unwrap()
                .as_object_mut()
                .unwrap()
                .remove("headers");
        }),
    ];
    for (what, mutate) in mutations {
        let mut spec = spec();
        mutate(&mut spec);
        assert!(
            !differences(&spec, &server).is_empty(),
            "a {what} in the spec went unnoticed"
        );
    }
}

/// `quotes.update` carries what `POST /quotes` returns for one symbol: the
/// two specs must describe it alike (descriptions aside), and a drift in
/// either is caught.
#[test]
fn the_websocket_quote_is_the_rest_quote() {
    let openapi = spec();
    let asyncapi: Value =
        serde_yaml::from_str(trading_pro::ASYNCAPI_YAML).expect("asyncapi parses");
    let quote = |doc: &Value| schema(doc, &json!({"$ref": "#/components/schemas/QuoteData"}), 0);
    assert_eq!(quote(&openapi), quote(&asyncapi));
    let mut drifted = asyncapi.clone();
    drifted
        .pointer_mut("/components/schemas/QuoteValues/properties")
        .unwrap()
        .as_object_mut()
        .unwrap()
        .remove("lp");
    assert_ne!(
        quote(&openapi),
        quote(&drifted),
        "a dropped field is caught"
    );
}

/// The private channels carry what the broker's REST operations return:
/// an order, a position, an execution are described alike in both specs.
#[test]
fn the_private_channels_carry_the_rest_types() {
    let openapi = spec();
    let asyncapi: Value =
        serde_yaml::from_str(trading_pro::ASYNCAPI_YAML).expect("asyncapi parses");
    for name in ["Order", "Position", "Execution"] {
        let of = |doc: &Value| {
            schema(
                doc,
                &json!({ "$ref": format!("#/components/schemas/{name}") }),
                0,
            )
        };
        assert_eq!(of(&openapi), of(&asyncapi), "{name}");
    }
    // The equity figures are the account's, by the same names.
    let account = &openapi["components"]["schemas"]["AccountInfo"]["properties"];
    let equity = &asyncapi["components"]["schemas"]["EquityValues"]["properties"];
    for (field, s) in equity.as_object().unwrap() {
        assert_eq!(
            schema(&asyncapi, s, 0),
            schema(&openapi, &account[field], 0),
            "{field}"
        );
    }
}
