//! Black-box test of trace export: the server sends its spans over OTLP/HTTP
//! to a collector (a plain HTTP listener here that keeps what it is sent),
//! continuing the trace a caller's `traceparent` names, with the request's
//! stages as child spans; the request id and trace id are in its log.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpListener;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use serde_json::json;

use crate::helpers::client::{create_user_cli, login, Api, PASSWORD};
use crate::helpers::{fixtures, run_ok, Server, TestDir};

/// Accepts OTLP/HTTP export requests on a free port and keeps each body.
fn collector() -> (String, Arc<Mutex<Vec<Vec<u8>>>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("collector port");
    let url = format!("http://{}/v1/traces", listener.local_addr().unwrap());
    let bodies = Arc::new(Mutex::new(Vec::new()));
    let sink = bodies.clone();
    std::thread::spawn(move || {
        for stream in listener.incoming().map_while(Result::ok) {
            let mut reader = BufReader::new(stream);
            let mut length = 0usize;
            let mut line = String::new();
            while reader.read_line(&mut line).is_ok_and(|n| n > 0) {
                if line == "\r\n" {
                    break;
                }
                if let Some((k, v)) = line.split_once(':') {
                    if k.eq_ignore_ascii_case("content-length") {
                        length = v.trim().parse().unwrap_or(0);
                    }
                }
                line.clear();
            }
            let mut body = vec![0u8; length];
            if reader.read_exact(&mut body).is_ok() {
                sink.lock().unwrap().push(body);
            }
            let mut stream = reader.into_inner();
            let _ = stream.write_all(
                b"HTTP/1.1 200 OK\r\ncontent-type: application/x-protobuf\r\ncontent-length: 0\r\nconnection: close\r\n\r\n",
            );
        }
    });
    (url, bodies)
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn spans_go_to_the_otlp_collector_in_the_callers_trace() {
    let dir = TestDir::new();
    let data = dir.path().join("data");
    let kb = fixtures().join("kb");
    run_ok(
        &data,
        &["ingest", kb.to_str().unwrap(), "--collection", "aero"],
    );
    create_user_cli(&data, "admin", PASSWORD, true);
    let (endpoint, bodies) = collector();
    let server = Server::start_logged(
        &data,
        &[
            ("RAGCHAT_TELEMETRY_OTLP_ENDPOINT", endpoint.as_str()),
            ("RAGCHAT_LOG_LEVEL", "warn,ragchat=debug"),
        ],
    );
    let api = Api::new(&server);
    let (token, _) = login(&api, "admin", PASSWORD);
    let trace_hex = "4bf92f3577b34da6a3ce929d0e0e4736";
    let traceparent = format!("00-{trace_hex}-00f067aa0ba902b7-01");
    let (status, body, headers) = api.request_with(
        reqwest::Method::POST,
        "/api/v1/query",
        Some(&token),
        Some(json!({"query": "normal shock wave", "mode": "hybrid"})),
        &[("traceparent", traceparent.as_str())],
    );
    assert_eq!(status, 200, "{body}");
    assert!(headers.contains_key("x-request-id"));
    // A refused request is logged (at debug), inside its request span.
    let (status, _, headers) = api.post("/api/v1/query", Some(&token), Some(json!({"query": ""})));
    assert_eq!(status, 400);
    let request_id = headers
        .get("x-request-id")
        .and_then(|v| v.to_str().ok())
        .expect("X-Request-Id")
        .to_string();
    let log = server.log();
    server.stop();

    // The exporter flushes at shutdown; give the listener a moment.
    let trace_id: Vec<u8> = (0..16)
        .map(|i| u8::from_str_radix(&trace_hex[2 * i..2 * i + 2], 16).unwrap())
        .collect();
    let deadline = Instant::now() + Duration::from_secs(10);
    let all = loop {
        let all: Vec<u8> = bodies.lock().unwrap().concat();
        if contains(&all, b"dense search") || Instant::now() > deadline {
            break all;
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    for name in [
        &b"POST /api/v1/query"[..],
        b"search",
        b"embed query",
        b"dense search",
        b"lexical search",
        b"ragchat",
    ] {
        assert!(
            contains(&all, name),
            "span or resource {:?} not exported ({} bytes received)",
            String::from_utf8_lossy(name),
            all.len()
        );
    }
    assert!(
        contains(&all, &trace_id),
        "the spans continue the caller's trace {trace_hex}"
    );
    assert!(
        log.contains(&format!("request_id={request_id}")),
        "the request id is in the log:\n{log}"
    );
}
