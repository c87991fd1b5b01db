//! JSON answers. Each body ends with a newline, so that a client such as `curl` prints
//! the next prompt on a line of its own; JSON parsers ignore the trailing whitespace.

use actix_web::body::BoxBody;
use actix_web::http::header::{self, HeaderValue};
use actix_web::{HttpRequest, HttpResponse, HttpResponseBuilder, Responder};
use serde::Serialize;

/// A `200 OK` JSON answer; the handlers' replacement for `web::Json`.
#[derive(Debug)]
pub struct Json<T>(pub T);

impl<T: Serialize> Responder for Json<T> {
    type Body = BoxBody;

    fn respond_to(self, _: &HttpRequest) -> HttpResponse<Self::Body> {
        HttpResponse::Ok().json_line(&self.0)
    }
}

/// `HttpResponseBuilder::json`, with the closing newline.
pub trait JsonLine {
    /// Finishes the response with `value` as its JSON body. Keeps a content type set
    /// before (`application/problem+json`), else sets `application/json`.
    fn json_line<T: Serialize>(&mut self, value: T) -> HttpResponse;
}

impl JsonLine for HttpResponseBuilder {
    fn json_line<T: Serialize>(&mut self, value: T) -> HttpResponse {
        match serde_json::to_vec(&value) {
            Ok(mut body) => {
                body.push(b'\n');
                let mut response = self.body(body);
                if !response.headers().contains_key(header::CONTENT_TYPE) {
                    response.headers_mut().insert(
                        header::CONTENT_TYPE,
                        HeaderValue::from_static("application/json"),
                    );
                }
                response
            }
            // Only a type that cannot be JSON fails here (a map with non-string keys):
            // a bug, not a client's fault.
            Err(error) => {
                tracing::error!(%error, "Could not serialise a response.");
                HttpResponse::InternalServerError().finish()
            }
        }
    }
}
