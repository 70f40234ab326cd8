//! Graceful stop: ask Fooocus to stop the running generation the way its own Stop button
//! does, where the version allows it. Blocking I/O; the supervisor runs it on a helper thread.
//!
//! * Fooocus 2.1.865 and older, and Fooocus-MRE: the Gradio stop function is global. Its
//!   index is the dependency whose targets hold the component with elem_id `stop_button`
//!   (from `GET /config`); `POST /run/predict {"fn_index": i, "data": [null], "session_hash": h}`.
//! * Fooocus-API: `POST /v1/generation/stop`.
//! * Fooocus 2.2 and later only obey the session that started the task: only the gateway,
//!   which sees that session, can stop them (see guard-gateway).

use std::net::{SocketAddr, ToSocketAddrs};
use std::path::Path;
use std::time::Duration;

use crate::install::Fork;

/// What Fooocus may ask of a caller: Gradio's login when auth.json is set and Fooocus listens
/// beyond loopback (webui.py: `auth=check_auth if (share or listen) and auth_enabled`), and
/// Fooocus-API's `X-API-KEY` when it was started with `--apikey`.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Credentials {
    pub login: Option<(String, String)>,
    pub api_key: Option<String>,
}

impl std::fmt::Debug for Credentials {
    // Secrets stay out of logs and panics.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Credentials")
            .field("login", &self.login.as_ref().map(|(u, _)| u))
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .finish()
    }
}

impl Credentials {
    /// From the install's auth.json (the first user with a plain `pass`; a `hash` alone cannot
    /// be logged in with) and the `--apikey` among the flags Fooocus gets.
    pub fn for_install(fooocus_dir: &Path, flags: &[String]) -> Credentials {
        let login = std::fs::read(fooocus_dir.join("auth.json"))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .and_then(|v| {
                v.as_array()?.iter().find_map(|e| {
                    Some((
                        e["user"].as_str()?.to_string(),
                        e["pass"].as_str()?.to_string(),
                    ))
                })
            });
        let mut api_key = None;
        let mut it = flags.iter();
        while let Some(f) = it.next() {
            if f == "--apikey" {
                api_key = it.next().cloned();
            } else if let Some(v) = f.strip_prefix("--apikey=") {
                api_key = Some(v.to_string());
            }
        }
        Credentials { login, api_key }
    }
}

/// How this run of Fooocus can be stopped without killing it.
///
/// The address is always the loopback one the guard told Fooocus to listen on, never a URL
/// Fooocus printed: its console also echoes prompts, so what it says cannot choose where the
/// guard sends a request (and with it the login or API key).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StopRoute {
    /// Gradio's global stop function (2.1.865 and older, MRE).
    Gradio {
        addr: SocketAddr,
        login: Option<(String, String)>,
    },
    /// Fooocus-API's stop endpoint.
    Api {
        addr: SocketAddr,
        api_key: Option<String>,
    },
    /// Through the gateway, with the session that started the task.
    Gateway,
    Unavailable {
        why: String,
    },
}

impl StopRoute {
    /// Decide from the fork and version. `port`: the port the guard gave Fooocus, once
    /// Fooocus listens on it (None before).
    pub fn for_fooocus(
        fork: Option<Fork>,
        version: Option<&str>,
        port: Option<u16>,
        gateway: bool,
        creds: &Credentials,
    ) -> StopRoute {
        let Some(port) = port else {
            return StopRoute::Unavailable {
                why: "Fooocus is not listening yet".into(),
            };
        };
        // Fooocus listens on loopback whatever else it listens on (127.0.0.1, or 0.0.0.0).
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        match fork {
            Some(Fork::FooocusApi) => StopRoute::Api {
                addr,
                api_key: creds.api_key.clone(),
            },
            Some(f) if f.global_stop(version) => StopRoute::Gradio {
                addr,
                login: creds.login.clone(),
            },
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
/// `still_running` is asked right before the stop is sent: a global stop that lands after its
/// task ended stops the next task at its first step in Fooocus before 2.1.822 and MRE (their
/// interrupt flag is reset only when it is seen), so a late stop is not sent at all.
pub fn request_stop(route: &StopRoute, still_running: &dyn Fn() -> bool) -> Result<Sent, String> {
    if let StopRoute::Gradio { addr, .. } | StopRoute::Api { addr, .. } = route {
        // Only Fooocus on this computer is ever asked (see StopRoute).
        if !addr.ip().is_loopback() {
            return Err(format!(
                "the stop route points at {addr}, which is not this computer: not sent"
            ));
        }
    }
    match route {
        StopRoute::Gradio { addr, login } => {
            let base = &format!("http://{addr}");
            // Any session's task stops on these versions: a session of the guard's own.
            let hash = format!("guard{:08x}", std::process::id() ^ 0x5eed);
            match press_stop_button(base, &hash, None, ASK_TIMEOUT, still_running) {
                Err(Press::LoginNeeded) => {
                    let (user, pass) = login.as_ref().ok_or(
                        "Fooocus asks for a login (auth.json) and the guard has no plain password for it: add a \"pass\" entry, or turn the gateway on",
                    )?;
                    let cookie = gradio_login(base, user, pass)?;
                    press_stop_button(base, &hash, Some(&cookie), ASK_TIMEOUT, still_running)
                        .map_err(String::from)
                }
                other => other.map_err(String::from),
            }
        }
        StopRoute::Api { addr, api_key } => {
            let base = &format!("http://{addr}");
            if !still_running() {
                return Ok(Sent::NotNeeded);
            }
            let headers: Vec<(&str, &str)> = api_key
                .as_deref()
                .map(|k| vec![("X-API-KEY", k)])
                .unwrap_or_default();
            let (status, _) = http(base, "POST", "/v1/generation/stop", Some(b"{}"), &headers)?;
            if status == 401 || status == 403 {
                return Err(format!(
                    "POST /v1/generation/stop answered {status}: Fooocus-API wants its --apikey; give it in the extra flags so the guard can send it"
                ));
            }
            if status != 200 {
                return Err(format!("POST /v1/generation/stop answered {status}"));
            }
            Ok(Sent::Sent)
        }
        StopRoute::Gateway => Err("the gateway route is driven by the supervisor".into()),
        StopRoute::Unavailable { why } => Err(why.clone()),
    }
}

/// How long the guard waits for Fooocus to answer one request of a stop.
const ASK_TIMEOUT: Duration = Duration::from_secs(3);

/// Why a press of the Stop button did not go out.
#[derive(Debug, PartialEq, Eq)]
pub enum Press {
    /// Gradio asks for its login (auth.json) first.
    LoginNeeded,
    Failed(String),
}

impl From<Press> for String {
    fn from(p: Press) -> String {
        match p {
            Press::LoginNeeded => "Fooocus asks for a login (GET /config answered 401)".into(),
            Press::Failed(why) => why,
        }
    }
}

/// Press Fooocus's Stop button for the tab `session_hash`, as a click does: the stop
/// function's index from Gradio's `/config`, then `POST /run/predict`. The one Gradio stop of
/// the guard: the gateway presses it for the tab that started the generation (2.2 and later
/// obey only that session), the old versions' route for any (their stop is global).
/// `still_running` is asked right before the press (see [`request_stop`]).
pub fn press_stop_button(
    base: &str,
    session_hash: &str,
    cookie: Option<&str>,
    timeout: Duration,
    still_running: &dyn Fn() -> bool,
) -> Result<Sent, Press> {
    let headers: Vec<(&str, &str)> = cookie.map(|c| vec![("Cookie", c)]).unwrap_or_default();
    let (status, _, body) =
        http_full(base, "GET", "/config", None, &headers, timeout).map_err(Press::Failed)?;
    if status == 401 {
        return Err(Press::LoginNeeded);
    }
    if status != 200 {
        return Err(Press::Failed(format!("GET /config answered {status}")));
    }
    let config: serde_json::Value = serde_json::from_slice(&body)
        .map_err(|e| Press::Failed(format!("GET /config is not JSON: {e}")))?;
    let fn_index = stop_fn_index(&config)
        .ok_or_else(|| Press::Failed("Fooocus's /config has no stop button".into()))?;
    if !still_running() {
        return Ok(Sent::NotNeeded);
    }
    let req = gradio_stop_request(fn_index, session_hash);
    let (status, _, _) = http_full(
        base,
        "POST",
        "/run/predict",
        Some(req.as_bytes()),
        &headers,
        timeout,
    )
    .map_err(Press::Failed)?;
    if status != 200 {
        return Err(Press::Failed(format!(
            "POST /run/predict answered {status}"
        )));
    }
    Ok(Sent::Sent)
}

/// Whether a stop went out.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sent {
    Sent,
    /// The generation had ended before it could be sent.
    NotNeeded,
}

/// Gradio 3.x's form login; the session cookies it sets, as one Cookie header value.
fn gradio_login(base: &str, user: &str, pass: &str) -> Result<String, String> {
    let form = format!(
        "username={}&password={}",
        form_encode(user),
        form_encode(pass)
    );
    let (status, headers, _) = http_full(
        base,
        "POST",
        "/login",
        Some(form.as_bytes()),
        &[("Content-Type", "application/x-www-form-urlencoded")],
        ASK_TIMEOUT,
    )?;
    let cookies: Vec<String> = headers
        .iter()
        .filter(|(k, _)| k.eq_ignore_ascii_case("set-cookie"))
        .filter_map(|(_, v)| v.split(';').next().map(|c| c.trim().to_string()))
        .collect();
    if status != 200 || cookies.is_empty() {
        return Err(format!(
            "Fooocus refused the login from auth.json (POST /login answered {status}): check its user and pass"
        ));
    }
    Ok(cookies.join("; "))
}

fn form_encode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => {
                out.push(b as char)
            }
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// The index of the dependency a click on Fooocus's Stop button triggers, from Gradio's
/// `/config`. From 2.1.680 the button has `elem_id` `stop_button`; before (2.0.x, 2.1.0 to
/// 2.1.679) it is only a button whose value is "Stop" (upstream webui.py:
/// `gr.Button(label="Stop", value="Stop", ...)`). Gradio 3.x lists targets as `[id, ...]` with
/// `"trigger": "click"`; 4.x as `[[id, "click"], ...]`.
pub fn stop_fn_index(config: &serde_json::Value) -> Option<usize> {
    let comps = config["components"].as_array()?;
    let id = comps
        .iter()
        .find(|c| c["props"]["elem_id"] == "stop_button")
        .or_else(|| {
            comps
                .iter()
                .find(|c| c["type"] == "button" && c["props"]["value"] == "Stop")
        })
        .and_then(|c| c["id"].as_u64())?;
    config["dependencies"].as_array()?.iter().position(|d| {
        d["targets"].as_array().is_some_and(|ts| {
            ts.iter().any(|t| {
                t.as_u64() == Some(id)
                    || (t[0].as_u64() == Some(id) && t[1].as_str().is_none_or(|tr| tr == "click"))
            })
        }) && d["trigger"].as_str().is_none_or(|tr| tr == "click")
    })
}

/// The body of the request a click on the Stop button sends for the tab with `session_hash`
/// (`POST /run/predict`): the one place it is written, for the gateway (that tab's session) and
/// the global stop of the old versions (any session).
pub fn gradio_stop_request(fn_index: usize, session_hash: &str) -> String {
    serde_json::json!({"fn_index": fn_index, "data": [null], "session_hash": session_hash})
        .to_string()
}

/// The most of an answer the guard reads from Fooocus: Gradio's `/config` of the largest UI
/// (2.5 with every tab) is about 1 MB; anything past this is not Fooocus answering.
const MAX_ANSWER_BYTES: u64 = 16 << 20;

/// One HTTP/1.1 request to Fooocus on this computer (no TLS): ureq's client, with a short
/// deadline, no proxy from the environment, no redirects and a ceiling on the answer.
pub fn http(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
) -> Result<(u16, Vec<u8>), String> {
    http_full(base, method, path, body, headers, ASK_TIMEOUT).map(|(s, _, b)| (s, b))
}

type Headers = Vec<(String, String)>;

/// `http`, with the response's headers, waiting `timeout` for all of it.
pub fn http_full(
    base: &str,
    method: &str,
    path: &str,
    body: Option<&[u8]>,
    headers: &[(&str, &str)],
    timeout: Duration,
) -> Result<(u16, Headers, Vec<u8>), String> {
    let hostport = base
        .strip_prefix("http://")
        .ok_or_else(|| format!("{base} is not an http:// URL"))?;
    let hostport = hostport.split('/').next().unwrap_or(hostport);
    // `localhost` may resolve to ::1 first while Gradio bound IPv4 only (0.0.0.0, 127.0.0.1).
    let addrs: Vec<SocketAddr> = hostport
        .to_socket_addrs()
        .map_err(|e| format!("{hostport}: {e}"))?
        .collect();
    let addr = addrs
        .iter()
        .find(|a| a.is_ipv4())
        .or(addrs.first())
        .copied()
        .ok_or_else(|| format!("{hostport}: no address"))?;
    // 0.0.0.0 means "every interface": talk to loopback.
    let addr = if addr.ip().is_unspecified() {
        SocketAddr::from(([127, 0, 0, 1], addr.port()))
    } else {
        addr
    };
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .timeout_global(Some(timeout))
        .http_status_as_error(false)
        .max_redirects(0)
        .proxy(None)
        .max_idle_connections(0)
        .build()
        .into();
    let mut req = ureq::http::Request::builder()
        .method(method)
        .uri(format!("http://{addr}{path}"))
        .header("User-Agent", "fooocus-guard")
        .header("Accept", "application/json");
    if !headers
        .iter()
        .any(|(k, _)| k.eq_ignore_ascii_case("content-type"))
    {
        req = req.header("Content-Type", "application/json");
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let req = req
        .body(body.unwrap_or_default().to_vec())
        .map_err(|e| format!("{method} {path}: {e}"))?;
    let mut resp = agent
        .run(req)
        .map_err(|e| format!("{method} {path} to {addr}: {e}"))?;
    let status = resp.status().as_u16();
    let headers: Headers = resp
        .headers()
        .iter()
        .map(|(k, v)| {
            (
                k.to_string(),
                String::from_utf8_lossy(v.as_bytes()).into_owned(),
            )
        })
        .collect();
    let body = resp
        .body_mut()
        .with_config()
        .limit(MAX_ANSWER_BYTES)
        .read_to_vec()
        .map_err(|e| format!("{method} {path} from {addr}: {e}"))?;
    Ok((status, headers, body))
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::io::{Read, Write};

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

    /// 2.0.x and 2.1 before 2.1.680, as their Gradio 3.39 serves /config: the Stop button has
    /// no elem_id, only its value.
    #[test]
    fn finds_the_stop_button_without_elem_id() {
        let c = json!({"components": [
            {"id": 2, "type": "button", "props": {"value": "Generate", "elem_classes": ["type_row"]}},
            {"id": 3, "type": "button", "props": {"value": "Stop", "elem_classes": ["type_row"], "visible": false}}],
            "dependencies": [{"targets": [3], "trigger": "click"}, {"targets": [2], "trigger": "click"}]});
        assert_eq!(stop_fn_index(&c), Some(0));
    }

    #[test]
    fn localhost_is_reached_over_ipv4() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            let (mut s, _) = l.accept().unwrap();
            let mut buf = [0u8; 1024];
            let _ = s.read(&mut buf).unwrap();
            s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
                .unwrap();
        });
        let (status, body) =
            http(&format!("http://localhost:{port}"), "GET", "/", None, &[]).unwrap();
        assert_eq!((status, body.as_slice()), (200, &b"ok"[..]));
        server.join().unwrap();
    }

    /// The route is built from the port the guard chose, on loopback; nothing else can be put
    /// in it, and a route that points elsewhere is not used.
    #[test]
    fn the_route_is_the_guards_own_loopback_port() {
        let creds = Credentials::default();
        let r = StopRoute::for_fooocus(
            Some(Fork::Fooocus),
            Some("2.1.865"),
            Some(7865),
            false,
            &creds,
        );
        assert_eq!(
            r,
            StopRoute::Gradio {
                addr: SocketAddr::from(([127, 0, 0, 1], 7865)),
                login: None
            }
        );
        assert!(
            !StopRoute::for_fooocus(Some(Fork::Fooocus), Some("2.1.865"), None, false, &creds)
                .available()
        );
        let away = StopRoute::Api {
            addr: SocketAddr::from(([192, 0, 2, 1], 8888)),
            api_key: Some("k".into()),
        };
        let err = request_stop(&away, &|| true).unwrap_err();
        assert!(err.contains("not this computer"), "{err}");
    }

    #[test]
    fn route_follows_version() {
        let u = Some(7865);
        assert!(matches!(
            StopRoute::for_fooocus(
                Some(Fork::Fooocus),
                Some("2.1.865"),
                u,
                false,
                &Credentials::default()
            ),
            StopRoute::Gradio { .. }
        ));
        assert!(matches!(
            StopRoute::for_fooocus(
                Some(Fork::Fooocus),
                Some("2.5.5"),
                u,
                false,
                &Credentials::default()
            ),
            StopRoute::Unavailable { .. }
        ));
        assert_eq!(
            StopRoute::for_fooocus(
                Some(Fork::Fooocus),
                Some("2.5.5"),
                u,
                true,
                &Credentials::default()
            ),
            StopRoute::Gateway
        );
        assert!(matches!(
            StopRoute::for_fooocus(
                Some(Fork::FooocusApi),
                None,
                u,
                false,
                &Credentials::default()
            ),
            StopRoute::Api { .. }
        ));
        assert!(matches!(
            StopRoute::for_fooocus(
                Some(Fork::Mre),
                Some("2.0.78.5 MRE"),
                u,
                false,
                &Credentials::default()
            ),
            StopRoute::Gradio { .. }
        ));
    }

    #[test]
    fn chunked_answers_are_read_and_endless_ones_refused() {
        let (base, h) = server(2, |req| {
            if req.starts_with("GET /big") {
                // A chunked answer that claims far more than any Fooocus page.
                let chunk = format!("{:x}\r\n{}\r\n", 1 << 20, "x".repeat(1 << 20));
                format!(
                    "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n{}",
                    chunk.repeat(17)
                )
            } else {
                "HTTP/1.1 404 Not Found\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nWiki\r\n5\r\npedia\r\n0\r\n\r\n".into()
            }
        });
        let url = format!("http://{base}");
        let (status, headers, body) =
            http_full(&url, "GET", "/small", None, &[], ASK_TIMEOUT).unwrap();
        assert_eq!((status, body), (404, b"Wikipedia".to_vec()));
        assert!(headers
            .iter()
            .any(|(k, v)| k == "transfer-encoding" && v == "chunked"));
        let e = http(&url, "GET", "/big", None, &[]).unwrap_err();
        assert!(e.contains("/big") && e.contains("limit"), "{e}");
        drop(h);
    }

    /// One request as text: its head and the body its Content-Length announces (the client
    /// may write them apart).
    fn read_request(s: &mut std::net::TcpStream) -> String {
        let mut raw = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            let k = s.read(&mut buf).unwrap();
            raw.extend_from_slice(&buf[..k]);
            let text = String::from_utf8_lossy(&raw).into_owned();
            if let Some((head, body)) = text.split_once("\r\n\r\n") {
                let len = head
                    .lines()
                    .find_map(|l| {
                        let (k, v) = l.split_once(':')?;
                        k.eq_ignore_ascii_case("content-length")
                            .then(|| v.trim().parse::<usize>().ok())?
                    })
                    .unwrap_or(0);
                if body.len() >= len || k == 0 {
                    return text;
                }
            } else if k == 0 {
                return text;
            }
        }
    }

    /// A loopback server that answers each request with `answer(request text)`; returns its
    /// address and the requests it saw.
    fn server(
        n: usize,
        answer: impl Fn(&str) -> String + Send + 'static,
    ) -> (SocketAddr, std::thread::JoinHandle<Vec<String>>) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let base = l.local_addr().unwrap();
        let h = std::thread::spawn(move || {
            let mut seen = Vec::new();
            for _ in 0..n {
                let (mut s, _) = l.accept().unwrap();
                let req = read_request(&mut s);
                // The client may give up on an endless answer before it is all written.
                let _ = s.write_all(answer(&req).as_bytes());
                seen.push(req);
            }
            seen
        });
        (base, h)
    }

    #[test]
    fn credentials_come_from_auth_json_and_the_apikey_flag() {
        let t = tempfile::tempdir().unwrap();
        std::fs::write(
            t.path().join("auth.json"),
            r#"[{"user": "h", "hash": "abc"}, {"user": "me", "pass": "p w&"}]"#,
        )
        .unwrap();
        let c = Credentials::for_install(t.path(), &["--apikey".into(), "k1".into()]);
        assert_eq!(c.login, Some(("me".into(), "p w&".into())));
        assert_eq!(c.api_key.as_deref(), Some("k1"));
        assert!(!format!("{c:?}").contains("k1") && !format!("{c:?}").contains("p w&"));
        let c = Credentials::for_install(Path::new("/nonexistent"), &["--apikey=k2".into()]);
        assert_eq!((c.login, c.api_key.as_deref()), (None, Some("k2")));
    }

    #[test]
    fn the_api_stop_carries_the_key() {
        let (base, h) = server(1, |_| {
            "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n{}".into()
        });
        let route = StopRoute::Api {
            addr: base,
            api_key: Some("sekret".into()),
        };
        assert_eq!(request_stop(&route, &|| true), Ok(Sent::Sent));
        let seen = h.join().unwrap();
        assert!(seen[0].starts_with("POST /v1/generation/stop"));
        assert!(
            seen[0].to_ascii_lowercase().contains("x-api-key: sekret"),
            "{}",
            seen[0]
        );
    }

    #[test]
    fn gradio_login_then_stop_with_the_cookie() {
        let config = r#"{"components": [{"id": 7, "type": "button", "props": {"value": "Stop"}}], "dependencies": [{"targets": [7], "trigger": "click"}]}"#;
        let (base, h) = server(4, move |req| {
            let authed = req
                .to_ascii_lowercase()
                .contains("cookie: access-token=t0k");
            if req.starts_with("POST /login") {
                "HTTP/1.1 200 OK\r\nSet-Cookie: access-token=t0k; Path=/; HttpOnly\r\nContent-Length: 0\r\n\r\n".into()
            } else if !authed {
                "HTTP/1.1 401 Unauthorized\r\nContent-Length: 0\r\n\r\n".into()
            } else {
                format!(
                    "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{config}",
                    config.len()
                )
            }
        });
        let route = StopRoute::Gradio {
            addr: base,
            login: Some(("me".into(), "p w&".into())),
        };
        assert_eq!(request_stop(&route, &|| true), Ok(Sent::Sent));
        let seen = h.join().unwrap();
        assert!(
            seen[1].contains("username=me&password=p%20w%26"),
            "{}",
            seen[1]
        );
        assert!(seen[3].starts_with("POST /run/predict") && seen[3].contains(r#""fn_index":0"#));
    }

    #[test]
    fn no_stop_is_sent_once_the_generation_ended() {
        let config = r#"{"components": [{"id": 7, "props": {"elem_id": "stop_button"}}], "dependencies": [{"targets": [7], "trigger": "click"}]}"#;
        let (base, h) = server(1, move |_| {
            format!(
                "HTTP/1.1 200 OK\r\nContent-Length: {}\r\n\r\n{config}",
                config.len()
            )
        });
        let route = StopRoute::Gradio {
            addr: base,
            login: None,
        };
        assert_eq!(request_stop(&route, &|| false), Ok(Sent::NotNeeded));
        let seen = h.join().unwrap();
        assert_eq!(seen.len(), 1, "only /config was asked");
    }
}
