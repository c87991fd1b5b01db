//! An OTLP trace receiver on a loopback port, as a collector would be: over HTTP
//! (`POST /v1/traces`, protobuf) or gRPC (`TraceService/Export`). It decodes every
//! export with opentelemetry's generated protobuf types and keeps the spans, so a test
//! can check what the binaries exported. [`OtlpSink`] keeps nothing, for the benchmark.

use std::collections::BTreeMap;
use std::net::TcpListener;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use actix_web::dev::ServerHandle;
use actix_web::{App, HttpResponse, HttpServer, web};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::KeyValue;
use opentelemetry_proto::tonic::common::v1::any_value::Value as AnyValue;
use prost::Message as _;

/// One exported span, flattened.
#[derive(Debug, Clone, PartialEq)]
pub struct ReceivedSpan {
    /// `service.name` of the process that exported it.
    pub service: String,
    pub name: String,
    /// OTLP's `SpanKind`: 1 internal, 2 server, 3 client, 4 producer, 5 consumer.
    pub kind: i32,
    /// Lowercase hex.
    pub trace_id: String,
    pub span_id: String,
    /// Empty for a root span.
    pub parent_span_id: String,
    /// Attribute values as text.
    pub attributes: BTreeMap<String, String>,
    /// The spans it links to: (trace id, span id).
    pub links: Vec<(String, String)>,
}

impl ReceivedSpan {
    pub fn attribute(&self, key: &str) -> Option<&str> {
        self.attributes.get(key).map(String::as_str)
    }
}

/// How the receiver takes exports.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Protocol {
    HttpProtobuf,
    Grpc,
}

impl Protocol {
    /// The value of `OTEL_EXPORTER_OTLP_PROTOCOL`.
    pub fn env_value(self) -> &'static str {
        match self {
            Protocol::HttpProtobuf => "http/protobuf",
            Protocol::Grpc => "grpc",
        }
    }
}

type Spans = Arc<Mutex<Vec<ReceivedSpan>>>;

/// The receiver; stops when dropped.
pub struct OtlpReceiver {
    endpoint: String,
    protocol: Protocol,
    spans: Spans,
    stop: Stop,
}

enum Stop {
    Http(ServerHandle),
    Grpc(Option<tokio::sync::oneshot::Sender<()>>),
}

impl OtlpReceiver {
    pub async fn start(protocol: Protocol) -> OtlpReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let endpoint = format!("http://127.0.0.1:{port}");
        let spans = Spans::default();
        let stop = match protocol {
            Protocol::HttpProtobuf => Stop::Http(serve_http(listener, Arc::clone(&spans))),
            Protocol::Grpc => Stop::Grpc(Some(serve_grpc(listener, Arc::clone(&spans)))),
        };
        OtlpReceiver {
            endpoint,
            protocol,
            spans,
            stop,
        }
    }

    /// The base endpoint, for `OTEL_EXPORTER_OTLP_ENDPOINT`.
    pub fn endpoint(&self) -> &str {
        &self.endpoint
    }

    /// The environment that points a binary at this receiver, exporting every span
    /// within 100 ms of its end.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", self.endpoint.clone()),
            (
                "OTEL_EXPORTER_OTLP_PROTOCOL",
                self.protocol.env_value().to_owned(),
            ),
            ("OTEL_BSP_SCHEDULE_DELAY", "100".to_owned()),
            ("OTEL_TRACES_SAMPLER", "parentbased_always_on".to_owned()),
        ]
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<ReceivedSpan> {
        self.spans
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// The spans of `trace_id` once `until` holds for them, within `within`.
    pub async fn wait_for(
        &self,
        trace_id: &str,
        within: Duration,
        until: impl Fn(&[ReceivedSpan]) -> bool,
    ) -> Vec<ReceivedSpan> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            let spans: Vec<ReceivedSpan> = self
                .spans()
                .into_iter()
                .filter(|span| span.trace_id == trace_id)
                .collect();
            if until(&spans) {
                return spans;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the spans of trace {trace_id} never were complete; got {spans:#?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

impl Drop for OtlpReceiver {
    fn drop(&mut self) {
        match &mut self.stop {
            Stop::Http(handle) => drop(handle.stop(false)),
            Stop::Grpc(stop) => {
                if let Some(stop) = stop.take() {
                    let _ = stop.send(());
                }
            }
        }
    }
}

/// A receiver that keeps nothing: it answers every HTTP/protobuf export as a collector
/// does, decoding nothing, and counts the exports and their bytes. For measuring what
/// exporting costs the processes that export (the benchmark), with as little of its own.
pub struct OtlpSink {
    endpoint: String,
    counts: Arc<SinkCounts>,
    handle: ServerHandle,
}

#[derive(Default)]
struct SinkCounts {
    exports: AtomicU64,
    bytes: AtomicU64,
}

impl OtlpSink {
    pub async fn start() -> OtlpSink {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
        let port = listener.local_addr().expect("local address").port();
        let counts = Arc::new(SinkCounts::default());
        let shared = Arc::clone(&counts);
        let handle = serve_traces(listener, move |body| {
            shared.exports.fetch_add(1, Ordering::Relaxed);
            shared.bytes.fetch_add(body.len() as u64, Ordering::Relaxed);
            HttpResponse::Ok()
                .content_type("application/x-protobuf")
                .finish()
        });
        OtlpSink {
            endpoint: format!("http://127.0.0.1:{port}"),
            counts,
            handle,
        }
    }

    /// The environment that points a binary at this sink; the export queue and batches
    /// are the binaries' defaults, so that what is measured is what ships.
    pub fn env(&self) -> Vec<(&'static str, String)> {
        vec![
            ("OTEL_EXPORTER_OTLP_ENDPOINT", self.endpoint.clone()),
            ("OTEL_EXPORTER_OTLP_PROTOCOL", "http/protobuf".to_owned()),
        ]
    }

    /// Exports received and their bytes, so far.
    pub fn received(&self) -> (u64, u64) {
        (
            self.counts.exports.load(Ordering::Relaxed),
            self.counts.bytes.load(Ordering::Relaxed),
        )
    }
}

impl Drop for OtlpSink {
    fn drop(&mut self) {
        drop(self.handle.stop(false));
    }
}

fn serve_http(listener: TcpListener, spans: Spans) -> ServerHandle {
    serve_traces(
        listener,
        move |body| match ExportTraceServiceRequest::decode(body) {
            Ok(request) => {
                keep(&spans, request);
                HttpResponse::Ok()
                    .content_type("application/x-protobuf")
                    .body(ExportTraceServiceResponse::default().encode_to_vec())
            }
            Err(error) => HttpResponse::BadRequest().body(error.to_string()),
        },
    )
}

/// Serves `POST /v1/traces` on `listener`, answering each export with `answer`.
fn serve_traces(
    listener: TcpListener,
    answer: impl Fn(web::Bytes) -> HttpResponse + Send + Sync + 'static,
) -> ServerHandle {
    let answer = Arc::new(answer);
    let server = HttpServer::new(move || {
        let answer = Arc::clone(&answer);
        App::new()
            .app_data(web::PayloadConfig::new(64 * 1024 * 1024))
            .route(
                "/v1/traces",
                web::post().to(move |body: web::Bytes| {
                    let response = answer(body);
                    async move { response }
                }),
            )
    })
    .workers(1)
    .disable_signals()
    .listen(listener)
    .expect("listen")
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    handle
}

struct Collector(Spans);

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        keep(&self.0, request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse::default()))
    }
}

fn serve_grpc(listener: TcpListener, spans: Spans) -> tokio::sync::oneshot::Sender<()> {
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    listener
        .set_nonblocking(true)
        .expect("non-blocking listener");
    let listener = tokio::net::TcpListener::from_std(listener).expect("tokio listener");
    tokio::spawn(async move {
        let incoming = tonic::transport::server::TcpIncoming::from(listener);
        let served = tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(Collector(spans)))
            .serve_with_incoming_shutdown(incoming, async {
                let _ = stopped.await;
            })
            .await;
        if let Err(error) = served {
            eprintln!("OTLP gRPC receiver stopped: {error}");
        }
    });
    stop
}

fn keep(spans: &Spans, request: ExportTraceServiceRequest) {
    let mut kept = spans.lock().unwrap_or_else(PoisonError::into_inner);
    for resource_spans in request.resource_spans {
        let service = resource_spans
            .resource
            .map(|resource| attributes(&resource.attributes))
            .and_then(|attributes| attributes.get("service.name").cloned())
            .unwrap_or_default();
        for scope_spans in resource_spans.scope_spans {
            for span in scope_spans.spans {
                kept.push(ReceivedSpan {
                    service: service.clone(),
                    name: span.name,
                    kind: span.kind,
                    trace_id: hex(&span.trace_id),
                    span_id: hex(&span.span_id),
                    parent_span_id: hex(&span.parent_span_id),
                    attributes: attributes(&span.attributes),
                    links: span
                        .links
                        .iter()
                        .map(|link| (hex(&link.trace_id), hex(&link.span_id)))
                        .collect(),
                });
            }
        }
    }
}

fn attributes(attributes: &[KeyValue]) -> BTreeMap<String, String> {
    attributes
        .iter()
        .map(|attribute| {
            let value = match attribute.value.as_ref().and_then(|v| v.value.as_ref()) {
                Some(AnyValue::StringValue(text)) => text.clone(),
                Some(AnyValue::IntValue(n)) => n.to_string(),
                Some(AnyValue::BoolValue(b)) => b.to_string(),
                Some(AnyValue::DoubleValue(x)) => x.to_string(),
                Some(other) => format!("{other:?}"),
                None => String::new(),
            };
            (attribute.key.clone(), value)
        })
        .collect()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|byte| format!("{byte:02x}")).collect()
}
