//! The specs themselves (OpenAPI and AsyncAPI, as JSON and YAML), as this
//! server serves them; `routes` serves them. (The pages that render the
//! specs are in `pages`.)

use bytes::Bytes;
use serde_json::Value;

/// The specs as this server serves them: OpenAPI and AsyncAPI, as YAML
/// and as JSON.
///
/// The spec says the datafeed operations take a token or none (an empty
/// security requirement beside the three schemes), which is what a server
/// without `--auth-*` does. A server with authentication on serves the
/// spec without the empty requirement, so clients generated from what it
/// serves know that a token is required.
pub struct Specs {
    /// (path, content type, body)
    files: [(&'static str, &'static str, Bytes); 4],
}

impl Specs {
    pub fn new(authenticating: bool) -> Specs {
        let openapi_yaml = if authenticating {
            token_required(trading_pro::OPENAPI_YAML)
        } else {
            trading_pro::OPENAPI_YAML.to_string()
        };
        let json = |yaml: &str| {
            Bytes::from(
                serde_yaml::from_str::<Value>(yaml)
                    .expect("the embedded spec is valid YAML")
                    .to_string(),
            )
        };
        Specs {
            files: [
                (
                    "/api/v1/openapi.json",
                    "application/json",
                    json(&openapi_yaml),
                ),
                (
                    "/api/v1/openapi.yaml",
                    "application/yaml",
                    Bytes::from(openapi_yaml),
                ),
                (
                    "/api/v1/ws/asyncapi.json",
                    "application/json",
                    json(trading_pro::ASYNCAPI_YAML),
                ),
                (
                    "/api/v1/ws/asyncapi.yaml",
                    "application/yaml",
                    Bytes::from_static(trading_pro::ASYNCAPI_YAML.as_bytes()),
                ),
            ],
        }
    }

    /// The spec at `path`, if there is one: its content type and body.
    pub fn file(&self, path: &str) -> Option<(&'static str, Bytes)> {
        self.files
            .iter()
            .find(|(p, _, _)| *p == path)
            .map(|(_, content_type, body)| (*content_type, body.clone()))
    }
}

/// The OpenAPI YAML without its empty security requirements (`- {}` in a
/// `security:` list), which mean "no token needed". Done on the text so
/// the served file keeps its comments and layout.
fn token_required(yaml: &str) -> String {
    let mut out = String::with_capacity(yaml.len());
    let mut in_security: Option<usize> = None;
    for line in yaml.lines() {
        let indent = line.len() - line.trim_start().len();
        let trimmed = line.trim();
        if let Some(at) = in_security {
            if trimmed.starts_with("- ") && indent >= at {
                if trimmed == "- {}" {
                    continue;
                }
            } else if !trimmed.is_empty() {
                in_security = None;
            }
        }
        if trimmed == "security:" {
            in_security = Some(indent);
        }
        out.push_str(line);
        out.push('\n');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each operation's security requirements, as (operationId, schemes).
    fn requirements(yaml: &str) -> Vec<(String, Vec<Vec<String>>)> {
        let spec: serde_yaml::Value = serde_yaml::from_str(yaml).unwrap();
        spec["paths"]
            .as_mapping()
            .unwrap()
            .values()
            .flat_map(|item| {
                item.as_mapping()
                    .unwrap()
                    .values()
                    .cloned()
                    .collect::<Vec<_>>()
            })
            .filter_map(|op| {
                let id = op.get("operationId")?.as_str()?.to_string();
                let reqs = op.get("security")?.as_sequence()?;
                let reqs = reqs
                    .iter()
                    .map(|r| {
                        r.as_mapping()
                            .map(|m| {
                                m.keys()
                                    .filter_map(|k| k.as_str().map(String::from))
                                    .collect()
                            })
                            .unwrap_or_default()
                    })
                    .collect();
                Some((id, reqs))
            })
            .collect()
    }

    #[test]
    fn an_authenticating_server_serves_tokens_as_required() {
        let open = requirements(trading_pro::OPENAPI_YAML);
        let closed = requirements(&token_required(trading_pro::OPENAPI_YAML));
        assert_eq!(open.len(), closed.len());
        let mut optional = 0;
        for ((id, before), (same, after)) in open.iter().zip(&closed) {
            assert_eq!(id, same);
            // Exactly the empty requirement goes; every scheme stays.
            let kept: Vec<_> = before.iter().filter(|r| !r.is_empty()).cloned().collect();
            assert_eq!(&kept, after, "{id}");
            assert!(after.iter().all(|r| !r.is_empty()), "{id}");
            if before.iter().any(Vec::is_empty) {
                optional += 1;
            }
        }
        // The seven datafeed and the eighteen broker operations are
        // optional without --auth-*.
        assert_eq!(optional, 7 + 18);
        // Nothing else changed.
        let specs = Specs::new(true);
        let (_, json) = specs.file("/api/v1/openapi.json").unwrap();
        let served: Value = serde_json::from_slice(&json).unwrap();
        let mut original: Value = serde_yaml::from_str(trading_pro::OPENAPI_YAML).unwrap();
        for item in original["paths"].as_object_mut().unwrap().values_mut() {
            for op in item.as_object_mut().unwrap().values_mut() {
                if let Some(reqs) = op.get_mut("security").and_then(|s| s.as_array_mut()) {
                    reqs.retain(|r| r.as_object().is_none_or(|m| !m.is_empty()));
                }
            }
        }
        assert_eq!(served, original);
    }
}
