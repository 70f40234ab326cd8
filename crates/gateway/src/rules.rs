//! What every request is checked against, as pure functions: the path as Fooocus's server will
//! route it, the token wherever the client put it, and (without a token) whether the request
//! comes from a page of this Fooocus on a name of this machine.

use std::net::IpAddr;

use percent_encoding::{percent_decode, utf8_percent_encode, AsciiSet, CONTROLS};

/// What must be escaped for a token to pass whole in a query and in a cookie.
const UNSAFE: &AsciiSet = &CONTROLS
    .add(b' ')
    .add(b'"')
    .add(b'#')
    .add(b'%')
    .add(b'&')
    .add(b'+')
    .add(b',')
    .add(b'/')
    .add(b';')
    .add(b'=')
    .add(b'?')
    .add(b'\\');

/// The cookie a browser keeps the token in after opening the `?token=` link once.
pub const COOKIE: &str = "fooocus_guard_token";

/// The path as the upstream server routes it: percent-decoded, repeated slashes collapsed, `.`
/// and `..` segments resolved. Only used to decide; the request goes upstream as it came.
pub fn normalise_path(raw: &str) -> String {
    let decoded = percent_decode(raw.as_bytes())
        .decode_utf8_lossy()
        .replace('\\', "/");
    let mut out: Vec<&str> = Vec::new();
    for seg in decoded.split('/') {
        match seg {
            "" | "." => {}
            ".." => {
                out.pop();
            }
            s => out.push(s),
        }
    }
    let mut p = String::from("/");
    p.push_str(&out.join("/"));
    p
}

/// A Gradio queue join (a generation is queued through it).
pub fn is_queue_join(norm: &str) -> bool {
    norm == "/queue/join" || norm.ends_with("/queue/join")
}

/// A Fooocus-API generation call (its own REST API; queued like a Gradio join).
pub fn is_api_generation(method: &http::Method, norm: &str) -> bool {
    method == http::Method::POST
        && (norm.starts_with("/v1/generation/") || norm.starts_with("/v2/generation/"))
}

/// Equal, in a time that depends on the length of `given` only, never on where it differs.
pub fn same_secret(given: &[u8], want: &[u8]) -> bool {
    if want.is_empty() {
        return false;
    }
    let mut diff = u8::from(given.len() != want.len());
    for (i, g) in given.iter().enumerate() {
        diff |= g ^ want[i % want.len()];
    }
    std::hint::black_box(diff) == 0
}

/// The token a request brings, from wherever it brings it.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Presented {
    pub query: Option<Vec<u8>>,
    pub bearer: Option<Vec<u8>>,
    pub cookie: Option<Vec<u8>>,
}

impl Presented {
    pub fn any(&self) -> bool {
        self.query.is_some() || self.bearer.is_some() || self.cookie.is_some()
    }

    /// Whether any of them is the token (each compared in constant time).
    pub fn matches(&self, token: &str) -> bool {
        [&self.query, &self.bearer, &self.cookie]
            .into_iter()
            .flatten()
            .fold(false, |ok, t| ok | same_secret(t, token.as_bytes()))
    }
}

/// The query's `token=` (percent-decoded), and the query without it.
pub fn token_in_query(query: &str) -> (Option<Vec<u8>>, String) {
    let mut token = None;
    let mut rest = Vec::new();
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        if percent_decode(k.as_bytes()).collect::<Vec<u8>>() == b"token" {
            token = Some(percent_decode(v.as_bytes()).collect());
        } else {
            rest.push(kv);
        }
    }
    (token, rest.join("&"))
}

/// `Authorization: Bearer <token>`, the scheme in any case.
pub fn bearer(value: &[u8]) -> Option<Vec<u8>> {
    let text = std::str::from_utf8(value).ok()?.trim();
    let (scheme, rest) = text.split_once(char::is_whitespace)?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| percent_decode(rest.trim().as_bytes()).collect())
}

/// The guard's cookie in a `Cookie:` header (percent-decoded), and the header without it.
pub fn token_in_cookie(value: &[u8]) -> (Option<Vec<u8>>, String) {
    let text = String::from_utf8_lossy(value);
    let mut token = None;
    let mut rest = Vec::new();
    for kv in text.split(';').map(str::trim).filter(|kv| !kv.is_empty()) {
        match kv.split_once('=') {
            Some((k, v)) if k.trim() == COOKIE => {
                token = Some(percent_decode(v.trim().as_bytes()).collect())
            }
            _ => rest.push(kv),
        }
    }
    (token, rest.join("; "))
}

/// The cookie value for a token (percent-encoded: any token survives a `Cookie:` header).
pub fn cookie_value(token: &str) -> String {
    utf8_percent_encode(token, UNSAFE).to_string()
}

/// The address to open in the browser for a gateway listening on `listen`: a wildcard listen
/// is opened on loopback, and a token goes along as `?token=` (the gateway answers with the
/// cookie, so the token leaves the address bar at once).
pub fn browser_url(listen: std::net::SocketAddr, token: Option<&str>) -> String {
    let ip = match listen.ip() {
        IpAddr::V4(v) if v.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        IpAddr::V6(v) if v.is_unspecified() => IpAddr::from([127, 0, 0, 1]),
        ip => ip,
    };
    let host = match ip {
        IpAddr::V6(v) => format!("[{v}]"),
        v4 => v4.to_string(),
    };
    match token {
        Some(t) => format!("http://{host}:{}/?token={}", listen.port(), cookie_value(t)),
        None => format!("http://{host}:{}/", listen.port()),
    }
}

/// `url` (the status's address, which never carries the token) with the token as `?token=`:
/// what "Open Fooocus in the browser" opens when a token is set.
pub fn url_with_token(url: &str, token: Option<&str>) -> String {
    let Some(t) = token else {
        return url.to_string();
    };
    let (base, fragment) = url
        .split_once('#')
        .map_or((url, None), |(b, f)| (b, Some(f)));
    let sep = if base.contains('?') { '&' } else { '?' };
    let base =
        if base.contains("://") && !base.split_once("://").is_some_and(|(_, r)| r.contains('/')) {
            format!("{base}/")
        } else {
            base.to_string()
        };
    let mut out = format!("{base}{sep}token={}", cookie_value(t));
    if let Some(f) = fragment {
        out.push('#');
        out.push_str(f);
    }
    out
}

/// Host and port of `Host:` or an origin's authority (`[v6]:port`, `name:port`, `name`).
fn split_authority(a: &str) -> (String, Option<u16>) {
    let a = a.trim();
    if let Some(rest) = a.strip_prefix('[') {
        if let Some((h, p)) = rest.split_once(']') {
            return (
                h.to_ascii_lowercase(),
                p.strip_prefix(':').and_then(|p| p.parse().ok()),
            );
        }
    }
    match a.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') => (h.to_ascii_lowercase(), p.parse().ok()),
        _ => (a.to_ascii_lowercase(), None),
    }
}

/// This machine's own name (for `Host: mypc:7865` and `mypc.local`).
pub fn machine_name() -> Option<String> {
    #[cfg(unix)]
    {
        let mut buf = [0u8; 256];
        // SAFETY: the buffer is valid for its length; gethostname NUL-terminates within it.
        let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
        if rc != 0 {
            return None;
        }
        let end = buf.iter().position(|b| *b == 0).unwrap_or(buf.len());
        String::from_utf8(buf[..end].to_vec())
            .ok()
            .map(|s| s.to_ascii_lowercase())
    }
    #[cfg(not(unix))]
    {
        std::env::var("COMPUTERNAME")
            .ok()
            .map(|s| s.to_ascii_lowercase())
    }
}

/// Whether `Host:` names this machine: localhost, a loopback address, the address the client
/// connected to, or the machine's name. A DNS-rebinding page's Host is its own domain.
pub fn host_names_this_machine(host: &str, local: IpAddr, machine: Option<&str>) -> bool {
    let (h, _) = split_authority(host);
    if h == "localhost" || h.ends_with(".localhost") {
        return true;
    }
    if let Ok(ip) = h.parse::<IpAddr>() {
        return ip.is_loopback() || ip == local || to_canonical(ip) == to_canonical(local);
    }
    machine.is_some_and(|m| !m.is_empty() && (h == m || h == format!("{m}.local")))
}

fn to_canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v) => v.to_ipv4_mapped().map(IpAddr::V4).unwrap_or(ip),
        v4 => v4,
    }
}

/// Whether `Origin:` is this very site (same scheme-less host and port as `Host:`). A request
/// without Origin is not from a web page (browsers send it on WebSockets and on POSTs).
pub fn same_origin(origin: Option<&str>, host: &str) -> bool {
    let Some(origin) = origin else { return true };
    let Some((scheme, authority)) = origin.trim().split_once("://") else {
        return false; // "null" and anything else unparseable
    };
    let default = match scheme.to_ascii_lowercase().as_str() {
        "http" => 80,
        "https" => 443,
        _ => return false,
    };
    let (oh, op) = split_authority(authority.trim_end_matches('/'));
    let (hh, hp) = split_authority(host);
    oh == hh && op.unwrap_or(default) == hp.unwrap_or(default)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn paths_are_read_as_the_server_routes_them() {
        assert_eq!(normalise_path("/queue/%6Aoin"), "/queue/join");
        assert_eq!(normalise_path("//queue//join"), "/queue/join");
        assert_eq!(normalise_path("/x/../queue/./join"), "/queue/join");
        assert_eq!(normalise_path("/%2e%2e/queue%2Fjoin"), "/queue/join");
        assert!(is_queue_join(&normalise_path("/queue/%6A%6F%69%6E")));
        assert!(!is_queue_join(&normalise_path("/queue/status")));
    }

    #[test]
    fn tokens_are_decoded_and_compared_whole() {
        assert!(same_secret(b"abcdefgh", b"abcdefgh"));
        assert!(!same_secret(b"abcdefg", b"abcdefgh"));
        assert!(!same_secret(b"abcdefghi", b"abcdefgh"));
        assert!(!same_secret(b"", b"abcdefgh"));
        assert!(!same_secret(b"x", b""));
        let (t, rest) = token_in_query("a=1&token=s%2Bcr%20t&b=2");
        assert_eq!(t.as_deref(), Some(&b"s+cr t"[..]));
        assert_eq!(rest, "a=1&b=2");
        assert_eq!(bearer(b"bEaReR  abc%21").as_deref(), Some(&b"abc!"[..]));
        assert_eq!(bearer(b"Basic abc"), None);
        assert_eq!(bearer(b"Bearer"), None);
        let (c, rest) = token_in_cookie(b"a=b; fooocus_guard_token=x%3By; c=d");
        assert_eq!(c.as_deref(), Some(&b"x;y"[..]));
        assert_eq!(rest, "a=b; c=d");
        let p = Presented {
            query: Some(b"wrong".to_vec()),
            bearer: Some(b"right-token".to_vec()),
            cookie: None,
        };
        assert!(p.matches("right-token") && !p.matches("other-token"));
    }

    #[test]
    fn the_browser_url_carries_the_token() {
        let a = "0.0.0.0:7865".parse().unwrap();
        assert_eq!(browser_url(a, None), "http://127.0.0.1:7865/");
        assert_eq!(
            browser_url(a, Some("a b/c+d")),
            "http://127.0.0.1:7865/?token=a%20b%2Fc%2Bd"
        );
        let (t, _) = token_in_query("token=a%20b%2Fc%2Bd");
        assert_eq!(t.as_deref(), Some(&b"a b/c+d"[..]));
        assert_eq!(
            browser_url("[::1]:80".parse().unwrap(), None),
            "http://[::1]:80/"
        );
    }

    #[test]
    fn the_status_url_gets_the_token() {
        assert_eq!(
            url_with_token("http://127.0.0.1:7865", Some("a&b")),
            "http://127.0.0.1:7865/?token=a%26b"
        );
        assert_eq!(
            url_with_token("http://127.0.0.1:7865/?x=1", Some("t")),
            "http://127.0.0.1:7865/?x=1&token=t"
        );
        assert_eq!(url_with_token("http://h:1/", None), "http://h:1/");
    }

    #[test]
    fn hosts_and_origins() {
        let lan: IpAddr = "192.168.1.5".parse().unwrap();
        for ok in [
            "localhost:7865",
            "127.0.0.1:7865",
            "192.168.1.5:7865",
            "[::1]:7865",
            "MyPC:7865",
            "mypc.local",
        ] {
            assert!(host_names_this_machine(ok, lan, Some("mypc")), "{ok}");
        }
        for bad in [
            "evil.example:7865",
            "192.168.1.6:7865",
            "mypc.evil.example",
            "",
        ] {
            assert!(!host_names_this_machine(bad, lan, Some("mypc")), "{bad}");
        }
        assert!(same_origin(None, "127.0.0.1:7865"));
        assert!(same_origin(Some("http://127.0.0.1:7865"), "127.0.0.1:7865"));
        assert!(same_origin(Some("http://localhost"), "localhost:80"));
        assert!(!same_origin(Some("http://evil.example"), "127.0.0.1:7865"));
        assert!(!same_origin(
            Some("http://127.0.0.1:7866"),
            "127.0.0.1:7865"
        ));
        assert!(!same_origin(Some("null"), "127.0.0.1:7865"));
    }
}
