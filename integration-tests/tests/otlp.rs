//! With `telemetry.otlp_endpoint` set, request spans and the request-duration
//! metric reach an OTLP/gRPC collector (a real tonic server here). Its own
//! test binary, because the tracing subscriber is installed once per process.

#![allow(clippy::unwrap_used)] // test helpers, not only #[test] functions

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::collector::metrics::v1::metrics_service_server::{
    MetricsService, MetricsServiceServer,
};
use opentelemetry_proto::tonic::collector::metrics::v1::{ExportMetricsServiceRequest, ExportMetricsServiceResponse};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{TraceService, TraceServiceServer};
use opentelemetry_proto::tonic::collector::trace::v1::{ExportTraceServiceRequest, ExportTraceServiceResponse};

use juy_integration_tests::{TestServer, http, token};

#[derive(Clone, Default)]
struct Collector {
    spans: Arc<Mutex<Vec<String>>>,
    metrics: Arc<Mutex<Vec<String>>>,
}

#[tonic::async_trait]
impl TraceService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        let mut spans = self.spans.lock().unwrap();
        for resource in request.into_inner().resource_spans {
            for scope in resource.scope_spans {
                spans.extend(scope.spans.into_iter().map(|s| s.name));
            }
        }
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

#[tonic::async_trait]
impl MetricsService for Collector {
    async fn export(
        &self,
        request: tonic::Request<ExportMetricsServiceRequest>,
    ) -> Result<tonic::Response<ExportMetricsServiceResponse>, tonic::Status> {
        let mut metrics = self.metrics.lock().unwrap();
        for resource in request.into_inner().resource_metrics {
            for scope in resource.scope_metrics {
                metrics.extend(scope.metrics.into_iter().map(|m| m.name));
            }
        }
        Ok(tonic::Response::new(ExportMetricsServiceResponse {
            partial_success: None,
        }))
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn request_spans_and_metrics_reach_the_otlp_collector() {
    let collector = Collector::default();
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let serving = tokio::spawn(
        tonic::transport::Server::builder()
            .add_service(TraceServiceServer::new(collector.clone()))
            .add_service(MetricsServiceServer::new(collector.clone()))
            .serve_with_incoming(tokio_stream::wrappers::TcpListenerStream::new(listener)),
    );

    let server = TestServer::start_with(vec![
        ("JUY_TELEMETRY__OTLP_ENDPOINT".into(), format!("http://{addr}")),
        ("JUY_TELEMETRY__LOG_FILTER".into(), "info".into()),
    ])
    .await;
    let response = http()
        .get(server.rest("/v1/calendar/connections"))
        .bearer_auth(token("alice", &[]))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    server.stop().await; // flushes the exporters

    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let has_span = collector.spans.lock().unwrap().iter().any(|s| s == "request");
        let has_metric = collector
            .metrics
            .lock()
            .unwrap()
            .iter()
            .any(|m| m == "juy.calendar.request.duration");
        if has_span && has_metric {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "collector got spans {:?} and metrics {:?}",
            collector.spans.lock().unwrap(),
            collector.metrics.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    serving.abort();
}
