//! One operation of the spec: its arguments' types, its method in each
//! generated trait, and what the server needs to know of it.

use std::collections::BTreeMap;

use openapiv3::{OpenAPI, Operation, Parameter, ParameterSchemaOrContent, ReferenceOr, StatusCode};
use proc_macro2::TokenStream;
use quote::{format_ident, quote};
use serde_json::{json, Value};
use typify::TypeSpace;

use super::{json_of, resolve, to_json_schema, Result, PRE_ENCODED};
use crate::names::{pascal, snake};

/// One operation, as each generated file needs it.
pub(super) struct Endpoint {
    /// The method of the dropshot trait (`openapi_api.rs`).
    pub(super) api_method: TokenStream,
    /// The method of `TradingService` (`openapi_service.rs`).
    pub(super) service_method: TokenStream,
    /// Its arm in `call`: parse the arguments, call the method.
    pub(super) call_arm: TokenStream,
    pub(super) variant: proc_macro2::Ident,
    pub(super) op_id: String,
    pub(super) method: String,
    pub(super) path: String,
    /// `x-body-max-bytes`, when the operation sets one.
    pub(super) body_max: Option<usize>,
    /// `x-data-request`: its cost grows with what it asks for.
    pub(super) data_request: bool,
    /// The security schemes its requirements name.
    pub(super) token_schemes: Vec<String>,
    /// Its first tag: the group of handlers it belongs to.
    pub(super) tag: String,
}

/// Schema of a parameter (with its description), as JSON.
fn parameter_schema(p: &openapiv3::ParameterData) -> Result<Value> {
    let ParameterSchemaOrContent::Schema(schema) = &p.format else {
        return Err(format!("parameter {} must use `schema`, not `content`", p.name).into());
    };
    let mut schema = json_of(schema)?;
    if let (Some(desc), Some(obj)) = (&p.description, schema.as_object_mut()) {
        obj.insert("description".into(), json!(desc));
    }
    Ok(schema)
}

/// A struct for a set of parameters in one location, named `{Op}{Suffix}`.
fn parameter_struct(
    types: &mut TypeSpace,
    name: String,
    params: &[&openapiv3::ParameterData],
) -> Result<TokenStream> {
    let mut properties = serde_json::Map::new();
    let mut required = Vec::new();
    for p in params {
        properties.insert(p.name.clone(), parameter_schema(p)?);
        if p.required {
            required.push(json!(p.name));
        }
    }
    let schema = json!({ "type": "object", "properties": properties, "required": required });
    let id = types.add_type_with_name(&to_json_schema(&schema)?, Some(name))?;
    Ok(types.get_type(&id)?.ident())
}

#[allow(clippy::too_many_arguments)]
pub(super) fn endpoint(
    _spec: &OpenAPI,
    raw: &Value,
    types: &mut TypeSpace,
    header_structs: &mut BTreeMap<Vec<String>, TokenStream>,
    path: &str,
    method: &str,
    op: &Operation,
) -> Result<Endpoint> {
    let op_id = op
        .operation_id
        .as_deref()
        .ok_or_else(|| format!("{method} {path} has no operationId"))?;
    let fn_name = format_ident!("{}", snake(op_id));
    let type_prefix = pascal(op_id);

    let mut path_params = Vec::new();
    let mut query_params = Vec::new();
    let mut header_params = Vec::new();
    for p in &op.parameters {
        match resolve(p, raw, "parameters")?.into_owned() {
            Parameter::Path { parameter_data, .. } => path_params.push(parameter_data),
            Parameter::Query { parameter_data, .. } => query_params.push(parameter_data),
            Parameter::Header { parameter_data, .. } => header_params.push(parameter_data),
            other => {
                return Err(format!(
                    "{op_id}: only path, query and header parameters are supported, got {:?}",
                    other.parameter_data_ref().name
                )
                .into())
            }
        }
    }

    let mut args = Vec::new();
    // How the service call parses each argument from the request's parts.
    let mut parse = Vec::new();
    let mut arg_names = Vec::new();
    if !path_params.is_empty() {
        let ty = parameter_struct(
            types,
            format!("{type_prefix}Path"),
            &path_params.iter().collect::<Vec<_>>(),
        )?;
        args.push(quote! { path: crate::extract::ApiPath<#ty> });
        parse.push(quote! {
            let path = crate::extract::ApiPath::from_result(crate::service::path_params::<#ty>(&parts.path_vars));
        });
        arg_names.push(quote! { path });
    }
    if !query_params.is_empty() {
        let ty = parameter_struct(
            types,
            format!("{type_prefix}Query"),
            &query_params.iter().collect::<Vec<_>>(),
        )?;
        args.push(quote! { query: crate::extract::ApiQuery<#ty> });
        parse.push(quote! {
            let query = crate::extract::ApiQuery::from_result(crate::service::query::<#ty>(parts.query.as_deref()));
        });
        arg_names.push(quote! { query });
    }
    if !header_params.is_empty() {
        let ty = parameter_struct(
            types,
            format!("{type_prefix}Headers"),
            &header_params.iter().collect::<Vec<_>>(),
        )?;
        args.push(quote! { headers: crate::extract::ApiHeader<#ty> });
        let names = header_params
            .iter()
            .map(|p| match &p.format {
                ParameterSchemaOrContent::Schema(ReferenceOr::Item(schema))
                    if matches!(
                        schema.schema_kind,
                        openapiv3::SchemaKind::Type(openapiv3::Type::String(_))
                    ) =>
                {
                    Ok(p.name.clone())
                }
                _ => Err(format!(
                    "{op_id}: header parameter {} must be an inline string schema",
                    p.name
                )),
            })
            .collect::<std::result::Result<Vec<_>, _>>()?;
        parse.push(quote! {
            let headers = crate::extract::ApiHeader::from_result(crate::service::header_params::<#ty>(rqctx.headers(), &[#(#names),*]));
        });
        arg_names.push(quote! { headers });
    }
    if let Some(body) = &op.request_body {
        let body = resolve(body, raw, "requestBodies")?;
        let media = body
            .content
            .get("application/json")
            .ok_or_else(|| format!("{op_id}: request body must be application/json"))?;
        let schema = media
            .schema
            .as_ref()
            .ok_or_else(|| format!("{op_id}: request body has no schema"))?;
        let id = types.add_type(&to_json_schema(&json_of(schema)?)?)?;
        let ty = types.get_type(&id)?.ident();
        args.push(quote! { body: crate::extract::ApiBody<#ty> });
        parse.push(quote! {
            let body = crate::extract::ApiBody::from_result(crate::service::json_body::<#ty>(rqctx.headers(), &parts.body));
        });
        arg_names.push(quote! { body });
    }

    let (status, response) = op
        .responses
        .responses
        .iter()
        .find(|(code, _)| matches!(code, StatusCode::Code(c) if (200..300).contains(c)))
        .ok_or_else(|| format!("{op_id}: no 2xx response"))?;
    let StatusCode::Code(status) = status else {
        unreachable!()
    };
    let response = resolve(response, raw, "responses")?;
    let body_ty = match response.content.get("application/json") {
        Some(media) => {
            let schema = media
                .schema
                .as_ref()
                .ok_or_else(|| format!("{op_id}: response has no schema"))?;
            let id = types.add_type(&to_json_schema(&json_of(schema)?)?)?;
            types.get_type(&id)?.ident()
        }
        None => return Err(format!("{op_id}: the 2xx response must be application/json").into()),
    };
    let mut ok_ty = match status {
        200 if PRE_ENCODED.contains(&op_id) => quote! { crate::encoded::EncodedOk<#body_ty> },
        200 => quote! { dropshot::HttpResponseOk<#body_ty> },
        201 => quote! { dropshot::HttpResponseCreated<#body_ty> },
        202 => quote! { dropshot::HttpResponseAccepted<#body_ty> },
        other => return Err(format!("{op_id}: unsupported success status {other}").into()),
    };
    if !response.headers.is_empty() {
        let names: Vec<String> = response.headers.keys().cloned().collect();
        let ty = match header_structs.get(&names) {
            Some(ty) => ty.clone(),
            None => {
                let mut properties = serde_json::Map::new();
                let mut required = Vec::new();
                for (name, header) in &response.headers {
                    let header = resolve(header, raw, "headers")?;
                    let openapiv3::ParameterSchemaOrContent::Schema(schema) = &header.format else {
                        return Err(format!("{op_id}: header {name} must use `schema`").into());
                    };
                    let mut schema = json_of(schema)?;
                    if let (Some(desc), Some(obj)) = (&header.description, schema.as_object_mut()) {
                        obj.insert("description".into(), json!(desc));
                    }
                    properties.insert(name.clone(), schema);
                    if header.required {
                        required.push(json!(name));
                    }
                }
                let struct_name = format!(
                    "{}Headers",
                    names.iter().map(|n| pascal(n)).collect::<String>()
                );
                let schema =
                    json!({ "type": "object", "properties": properties, "required": required });
                let id = types.add_type_with_name(&to_json_schema(&schema)?, Some(struct_name))?;
                let ty = types.get_type(&id)?.ident();
                header_structs.insert(names, ty.clone());
                ty
            }
        };
        ok_ty = quote! { dropshot::HttpResponseHeaders<#ok_ty, #ty> };
    }

    // `x-body-max-bytes` raises dropshot's default body limit for one
    // operation (ingest takes megabytes; everything else a few KiB).
    let body_max = match op.extensions.get("x-body-max-bytes") {
        Some(v) => Some(
            v.as_u64()
                .ok_or_else(|| format!("{op_id}: x-body-max-bytes must be a positive integer"))?
                as usize,
        ),
        None => None,
    };
    let body_limit = match body_max {
        Some(n) => quote! { request_body_max_bytes = #n, },
        None => quote! {},
    };
    // The facts the edge acts on before a handler runs, read here once
    // instead of from the YAML at run time.
    let data_request = match op.extensions.get("x-data-request") {
        None => false,
        Some(v) => v
            .as_bool()
            .ok_or_else(|| format!("{op_id}: x-data-request must be true or false"))?,
    };
    let token_schemes: Vec<String> = op
        .security
        .iter()
        .flatten()
        .flat_map(|req| req.keys().cloned())
        .collect();
    let tag = op
        .tags
        .first()
        .cloned()
        .ok_or_else(|| format!("{op_id} has no tag"))?;
    let method_ident = format_ident!("{}", method.to_uppercase());
    let tags = &op.tags;
    let mut docs = Vec::new();
    if let Some(summary) = &op.summary {
        docs.push(summary.clone());
    }
    if let Some(desc) = &op.description {
        if !docs.is_empty() {
            docs.push(String::new());
        }
        docs.extend(desc.lines().map(str::to_string));
    }
    let docs: Vec<TokenStream> = docs.iter().map(|d| quote! { #[doc = #d] }).collect();
    let variant = format_ident!("{}", pascal(op_id));
    let service_method = quote! {
        #(#docs)*
        fn #fn_name(
            rqctx: crate::service::Request<Self::Context>,
            #(#args),*
        ) -> impl std::future::Future<Output = Result<#ok_ty, dropshot::HttpError>> + Send;
    };
    let call_arm = quote! {
        Operation::#variant => {
            #(#parse)*
            S::#fn_name(rqctx, #(#arg_names),*).await.and_then(dropshot::HttpResponse::to_result)
        }
    };
    let api_method = quote! {
        #(#docs)*
        #[endpoint {
            method = #method_ident,
            path = #path,
            operation_id = #op_id,
            tags = [#(#tags),*],
            #body_limit
        }]
        async fn #fn_name(
            rqctx: dropshot::RequestContext<Self::Context>,
            #(#args),*
        ) -> Result<#ok_ty, dropshot::HttpError>;
    };
    Ok(Endpoint {
        api_method,
        service_method,
        call_arm,
        variant,
        op_id: op_id.to_string(),
        method: method.to_uppercase(),
        path: path.to_string(),
        body_max,
        data_request,
        token_schemes,
        tag,
    })
}
