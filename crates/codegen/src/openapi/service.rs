//! `openapi_service.rs`: the server's plain trait, the operations with
//! their routes and facts, and `call`.

use proc_macro2::TokenStream;
use quote::quote;

use super::endpoint::Endpoint;

/// `openapi_service.rs`: the plain trait, the operations and their routes,
/// and `call`.
pub(super) fn service(endpoints: &[Endpoint]) -> TokenStream {
    let methods = endpoints.iter().map(|e| &e.service_method);
    let arms = endpoints.iter().map(|e| &e.call_arm);
    let variants: Vec<_> = endpoints.iter().map(|e| &e.variant).collect();
    let ids = endpoints.iter().map(|e| &e.op_id);
    let routes = endpoints.iter().map(|e| {
        let (v, m, p) = (&e.variant, &e.method, &e.path);
        quote! { (Operation::#v, #m, #p) }
    });
    let n = endpoints.len();
    let facts = endpoints.iter().map(|e| {
        let (v, id, m, p, tag) = (&e.variant, &e.op_id, &e.method, &e.path, &e.tag);
        let body = match e.body_max {
            Some(n) => quote! { Some(#n) },
            None => quote! { None },
        };
        let data = e.data_request;
        let schemes = &e.token_schemes;
        quote! {
            OperationFacts {
                operation: Operation::#v,
                operation_id: #id,
                method: #m,
                path: #p,
                tag: #tag,
                body_max_bytes: #body,
                data_request: #data,
                security_schemes: &[#(#schemes),*],
            }
        }
    });
    quote! {
        /// What the spec says of one operation that matters before its
        /// handler runs.
        #[derive(Clone, Copy, Debug)]
        pub struct OperationFacts {
            pub operation: Operation,
            pub operation_id: &'static str,
            pub method: &'static str,
            pub path: &'static str,
            /// Its first tag (`datafeed`, `ingest`, ...).
            pub tag: &'static str,
            /// `x-body-max-bytes`: the largest body it takes, when it says.
            pub body_max_bytes: Option<usize>,
            /// `x-data-request`: its cost grows with what it asks for.
            pub data_request: bool,
            /// The security schemes its requirements name (an empty
            /// requirement, "no token", names none).
            pub security_schemes: &'static [&'static str],
        }

        /// Every operation's facts, in spec order.
        pub const OPERATION_FACTS: [OperationFacts; #n] = [#(#facts),*];

        impl Operation {
            /// What the spec says of it.
            pub fn facts(self) -> &'static OperationFacts {
                &OPERATION_FACTS[self as usize]
            }
        }

        /// The REST API of `specs/openapi.yaml` as plain async functions,
        /// one per operation, with the arguments and answers of
        /// [`crate::api::TradingApi`]. The server implements this trait and
        /// [`call`] routes requests to it.
        pub trait TradingService: Send + Sync + 'static {
            type Context: Send + Sync + 'static;
            #(#methods)*
        }

        /// Every operation of the spec.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum Operation {
            #(#variants),*
        }

        impl Operation {
            /// Its `operationId` in the spec.
            pub fn operation_id(self) -> &'static str {
                match self {
                    #(Operation::#variants => #ids),*
                }
            }
        }

        /// Each operation with its method and path template, as in the spec.
        pub const ROUTES: [(Operation, &str, &str); #n] = [#(#routes),*];

        /// Parses the request's parts into `op`'s arguments and calls its
        /// method. Arguments that do not parse reach the method as errors
        /// (see `crate::extract`), so it answers them like its own.
        pub async fn call<S: TradingService>(
            op: Operation,
            rqctx: crate::service::Request<S::Context>,
            parts: crate::service::Parts,
        ) -> Result<http::Response<dropshot::Body>, dropshot::HttpError> {
            match op {
                #(#arms)*
            }
        }
    }
}
