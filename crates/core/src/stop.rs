//! Graceful stop: ask Fooocus to stop the running generation the way its own Stop button
//! does, where the version allows it. Blocking I/O; the supervisor runs it on a helper thread.
//!
//! * Fooocus 2.1.865 and older, and Fooocus-MRE: the Gradio stop function is global. Its
//!   index is the dependency whose targets hold the component with elem_id `stop_button`
//!   (from `GET /config`); `POST /run/predict {"fn_index": i, "data": [null], "session_hash": h}`.
//! * Fooocus-API: `POST /v1/generation/stop`.
//! * Fooocus 2.2 and later only obey the session that started the task: only the gateway,
//!   which sees that session, can stop them (see guard-gateway).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream, ToSocketAddrs};
use std::time::Duration;

use crate::install::Fork;

/// How this run of Fooocus can be stopped without killing it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopRoute {
    /// Gradio's global stop function (2.1.865 and older, MRE).
    Gradio {
        base: String,
    },
    /// Fooocus-API's stop endpoint.
    Api {
        base: String,
    },
    /// Through the gateway, with the session that started the task.
    Gateway,
    Unavailable {
        why: String,
    },
}

impl StopRoute {
    /// Decide from the fork and version, once the listening URL is known.
    pub fn for_fooocus(
        fork: Option<Fork>,
        version: Option<&str>,
        url: Option<&str>,
        gateway: bool,
    ) -> StopRoute {
        let Some(base) = url.map(|u| u.trim_end_matches('/').to_string()) else {
            return StopRoute::Unavailable {
                why: "Fooocus has not said where it listens yet".into(),
            };
        };
        match fork {
            Some(Fork::FooocusApi) => StopRoute::Api { base },
            Some(f) if f.global_stop(version) => StopRoute::Gradio { base },
            _ if gateway => StopRoute::Gateway,
            Some(_) => StopRoute::Unavailable {
                why: format!(
                    "Fooocus {} only obeys a Stop from the browser tab that started the task; turn the gateway on to stop generations gracefully",
                    version.unwrap_or("2.2+")
                ),
            },
            None => StopRoute::Unavailable { why: "not a Fooocus install (a plain command)".into() },
        }
    }

    pub fn available(&self) -> bool {
        !matches!(self, StopRoute::Unavailable { .. })
    }
}

/// Send the stop over `route` (not the gateway, which the supervisor calls itself).
pub fn request_stop(route: &StopRoute) -> Result<(), String> {
    match route {
        StopRoute::Gradio { base } => {
            let (status, body) = http(base, "GET", "/config", None)?;
            if status != 200 {
                return Err(format!("GET /config answered {status}"));
            }
            let config: serde_json::Value = serde_json::from_slice(&body)
                .map_err(|e| format!("GET /config is not JSON: {e}"))?;
            let fn_index = stop_fn_index(&config).ok_or("no stop function in /config")?;
            let hash = format!("guard{:08x}", std::process::id() ^ 0x5eed);
            let req =
                serde_json::json!({"fn_index": fn_index, "data": [null], "session_hash": hash});
            let (status, _) = http(
                base,
                "POST",
                "/run/predict",
                Some(req.to_string().as_bytes()),
            )?;
            if status != 200 {
                return Err(format!("POST /run/predict answered {status}"));
            }
            Ok(())
        }
        StopRoute::Api { base } => {
            let (status, _) = http(base, "POST", "/v1/generation/stop", Some(b"{}"))?;
            if status != 200 {
                return Err(format!("POST /v1/generation/stop answered {status}"));
            }
            Ok(())
        }
        StopRoute::Gateway => Err("the gateway route is driven by the supervisor".into()),
        StopRoute::Unavailable { why } => Err(why.clone()),
    }
}

/// The index of the dependency a click on the `stop_button` component triggers.
pub fn stop_fn_index(config: &serde_json::Value) -> Option<usize> {
    let id = config["components"].as_array()?.iter().find_map(|c| {
        (c["props"]["elem_id"] == "stop_button")
            .then(|| c["id"].as_u64())
            .flatten()
    })?;
    config["dependencies"].as_array()?.iter().position(|d| {
        let targets = d["targets"].as_array();
        let hit = targets.is_some_and(|ts| {
            ts.iter().any(|t| {
                // Gradio 3.41: [id, ...] with "trigger": "click", or [[id, "click"], ...].
                t.as_u64() == Some(id)
                    || (t[0].as_u64() == Some(id) && t[1].as_str().is_none_or(|tr| tr == "click"))
            })
        });
        hit && d["trigger"].as_str().is_none_or(|tr| tr == "click")
    })
}

/// A small HTTP/1.1 client for loopback calls to Fooocus (no TLS, Connection: close).
pub fn http(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
) -> Result<(u16, Vec<u8>), String> {
    let hostport = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("{base} is not an http:// URL"))?;
    let hostport = hostport.split('/').next().unwrap_or(hostport);
    let addr: SocketAddr = hostport
        .to_socket_addrs()
        .map_err(|e| format!("{hostport}: {e}"))?
        .next()
        .ok_or_else(|| format!("{hostport}: no address"))?;
    // 0.0.0.0 means "every interface": talk to loopback.
    let addr = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let timeout = Duration::from_secs(3);
    let mut s =
        TcpStream::connect_timeout(&addr, timeout).map_err(|e| format!("connect {addr}: {e}"))?;
    s.set_read_timeout(Some(timeout)).ok();
    s.set_write_timeout(Some(timeout)).ok();
    let body = body.unwrap_or_default();
    let head = format!(
        "{method} {path} HTTP/1.1\r\nHost: {hostport}\r\nUser-Agent: fooocus-guard\r\nAccept: application/json\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    s.write_all(head.as_bytes())
        .and_then(|_| s.write_all(body))
        .map_err(|e| format!("send to {addr}: {e}"))?;
    let mut raw = Vec::new();
    s.read_to_end(&mut raw)
        .map_err(|e| format!("read from {addr}: {e}"))?;
    parse_response(&raw)
}

fn parse_response(raw: &[u8]) -> Result<(u16, Vec<u8>), String> {
    let split = raw
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .ok_or("incomplete HTTP response")?;
    let head = String::from_utf8_lossy(&raw[..split]);
    let status: u16 = head
        .split_whitespace()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .ok_or("bad HTTP status line")?;
    let body = &raw[split + 4..];
    let chunked = head.lines().any(|l| {
        let l = l.to_ascii_lowercase();
        l.starts_with("transfer-encoding:") && l.contains("chunked")
    });
    if !chunked {
        return Ok((status, body.to_vec()));
    }
    let mut out = Vec::new();
    let mut rest = body;
    loop {
        let eol = rest
            .windows(2)
            .position(|w| w == b"\r\n")
            .ok_or("bad chunk")?;
        let size_txt = String::from_utf8_lossy(&rest[..eol]);
        let size = usize::from_str_radix(size_txt.split(';').next().unwrap_or("").trim(), 16)
            .map_err(|_| "bad chunk size")?;
        rest = &rest[eol + 2..];
        if size == 0 || rest.len() < size {
            break;
        }
        out.extend_from_slice(&rest[..size]);
        rest = rest.get(size + 2..).unwrap_or_default();
    }
    Ok((status, out))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn finds_the_stop_function_in_both_target_shapes() {
        let comps = json!([{"id": 3, "props": {"elem_id": "generate_button"}}, {"id": 9, "props": {"elem_id": "stop_button"}}]);
        let c1 = json!({"components": comps, "dependencies": [
            {"targets": [3], "trigger": "click"}, {"targets": [9], "trigger": "change"}, {"targets": [9], "trigger": "click"}]});
        assert_eq!(stop_fn_index(&c1), Some(2));
        let c2 = json!({"components": comps, "dependencies": [{"targets": [[3, "click"]]}, {"targets": [[9, "click"]]}]});
        assert_eq!(stop_fn_index(&c2), Some(1));
        assert_eq!(
            stop_fn_index(&json!({"components": [], "dependencies": []})),
            None
        );
    }

    #[test]
    fn route_follows_version() {
        let u = Some("http://127.0.0.1:7865");
        assert!(matches!(
            StopRoute::for_fooocus(Some(Fork::Fooocus), Some("2.1.865"), u, false),
            StopRoute::Gradio { .. }
        ));
        assert!(matches!(
            StopRoute::for_fooocus(Some(Fork::Fooocus), Some("2.5.5"), u, false),
            StopRoute::Unavailable { .. }
        ));
        assert_eq!(
            StopRoute::for_fooocus(Some(Fork::Fooocus), Some("2.5.5"), u, true),
            StopRoute::Gateway
        );
        assert!(matches!(
            StopRoute::for_fooocus(Some(Fork::FooocusApi), None, u, false),
            StopRoute::Api { .. }
        ));
        assert!(matches!(
            StopRoute::for_fooocus(Some(Fork::Mre), Some("2.0.78.5 MRE"), u, false),
            StopRoute::Gradio { .. }
        ));
    }

    #[test]
    fn chunked_responses() {
        let raw = b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n";
        assert_eq!(parse_response(raw).unwrap(), (200, b"Wikipedia".to_vec()));
        let raw = b"HTTP/1.1 404 Not Found\r\nContent-Length: 2\r\n\r\nno";
        assert_eq!(parse_response(raw).unwrap(), (404, b"no".to_vec()));
    }
}
