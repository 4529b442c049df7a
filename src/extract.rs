//! Extractors that hand extraction failures to the handler.
//!
//! dropshot answers a malformed query, path or body itself, before our
//! handler runs, so such a response would miss the headers every response of
//! ours carries (`API-Version`, CORS). These wrappers describe themselves
//! exactly like dropshot's `Query`, `Path` and `TypedBody` (so the generated
//! OpenAPI is unchanged) but never fail: the handler receives the error and
//! returns it through the same path as its own errors.
//!
//! The same wrappers are the arguments of `api::TradingService`, built by
//! the generated `call` from what `crate::service` parsed.

use async_trait::async_trait;
use dropshot::{
    ApiEndpointBodyContentType, ExclusiveExtractor, ExtractorMetadata, Header, HttpError, Path,
    Query, RequestContext, ServerContext, SharedExtractor, TypedBody,
};
use schemars::JsonSchema;
use serde::de::DeserializeOwned;

macro_rules! shared_wrapper {
    ($(#[$doc:meta])* $name:ident wraps $inner:ident) => {
        $(#[$doc])*
        pub struct $name<T: DeserializeOwned + JsonSchema + Send + Sync>(Result<T, HttpError>);

        impl<T: DeserializeOwned + JsonSchema + Send + Sync> $name<T> {
            /// What parsing the request gave (see `crate::service`).
            pub fn from_result(result: Result<T, HttpError>) -> Self {
                Self(result)
            }

            /// The parsed value, or the 400 describing why it could not be parsed.
            pub fn into_inner(self) -> Result<T, HttpError> {
                self.0
            }
        }

        #[async_trait]
        impl<T: DeserializeOwned + JsonSchema + Send + Sync + 'static> SharedExtractor for $name<T> {
            async fn from_request<Context: ServerContext>(
                rqctx: &RequestContext<Context>,
            ) -> Result<Self, HttpError> {
                Ok(Self(<$inner<T> as SharedExtractor>::from_request(rqctx).await.map($inner::into_inner)))
            }

            fn metadata(body_content_type: ApiEndpointBodyContentType) -> ExtractorMetadata {
                <$inner<T> as SharedExtractor>::metadata(body_content_type)
            }
        }
    };
}

shared_wrapper!(
    /// Query parameters, described like `dropshot::Query<T>`.
    ApiQuery wraps Query
);
shared_wrapper!(
    /// Path parameters, described like `dropshot::Path<T>`.
    ApiPath wraps Path
);
shared_wrapper!(
    /// Header parameters, described like `dropshot::Header<T>`.
    ApiHeader wraps Header
);

/// A JSON body, described like `dropshot::TypedBody<T>`.
pub struct ApiBody<T: DeserializeOwned + JsonSchema + Send + Sync>(Result<T, HttpError>);

impl<T: DeserializeOwned + JsonSchema + Send + Sync> ApiBody<T> {
    /// What parsing the request gave (see `crate::service`).
    pub fn from_result(result: Result<T, HttpError>) -> Self {
        Self(result)
    }

    /// The parsed body, or the 400 describing why it could not be parsed.
    pub fn into_inner(self) -> Result<T, HttpError> {
        self.0
    }
}

#[async_trait]
impl<T: DeserializeOwned + JsonSchema + Send + Sync + 'static> ExclusiveExtractor for ApiBody<T> {
    async fn from_request<Context: ServerContext>(
        rqctx: &RequestContext<Context>,
        request: http::Request<dropshot::Body>,
    ) -> Result<Self, HttpError> {
        Ok(Self(
            <TypedBody<T> as ExclusiveExtractor>::from_request(rqctx, request)
                .await
                .map(TypedBody::into_inner),
        ))
    }

    fn metadata(body_content_type: ApiEndpointBodyContentType) -> ExtractorMetadata {
        <TypedBody<T> as ExclusiveExtractor>::metadata(body_content_type)
    }
}
