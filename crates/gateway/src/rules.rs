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

/// The token a request brings, from wherever it brings it: the query, and every
/// `Authorization: Bearer` and guard cookie of every `Authorization:` and `Cookie:` header (a
/// second header is as good a place as the first).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Presented {
    pub query: Option<Vec<u8>>,
    pub bearer: Vec<Vec<u8>>,
    pub cookie: Vec<Vec<u8>>,
}

impl Presented {
    /// Everything a request's head presents.
    pub fn of(query: Option<Vec<u8>>, headers: &http::HeaderMap) -> Presented {
        Presented {
            query,
            bearer: headers
                .get_all(http::header::AUTHORIZATION)
                .iter()
                .filter_map(|v| bearer(v.as_bytes()))
                .collect(),
            cookie: headers
                .get_all(http::header::COOKIE)
                .iter()
                .filter_map(|v| token_in_cookie(v.as_bytes()).0)
                .collect(),
        }
    }

    pub fn any(&self) -> bool {
        self.query.is_some() || !self.bearer.is_empty() || !self.cookie.is_empty()
    }

    /// How many different tokens it brings.
    pub fn distinct(&self) -> usize {
        let mut all: Vec<&Vec<u8>> = self
            .query
            .iter()
            .chain(&self.bearer)
            .chain(&self.cookie)
            .collect();
        all.sort();
        all.dedup();
        all.len()
    }

    /// Whether any of them is the token (each compared in constant time).
    pub fn matches(&self, token: &str) -> bool {
        self.query
            .iter()
            .chain(&self.bearer)
            .chain(&self.cookie)
            .fold(false, |ok, t| ok | same_secret(t, token.as_bytes()))
    }
}

/// Whether `hay` holds `needle`, as it is or percent-decoded.
fn carries(hay: &[u8], needle: &[u8]) -> bool {
    let has = |h: &[u8]| h.windows(needle.len()).any(|w| w == needle);
    !needle.is_empty() && (has(hay) || has(&percent_decode(hay).collect::<Vec<u8>>()))
}

/// Take the token out of every header that can carry it before the request goes to Fooocus:
/// the guard's cookie (and any cookie holding the token) from every `Cookie:` header, folded
/// into one; every `Authorization: Bearer` and any `Authorization:` holding the token; and any
/// other header whose value holds it (a `Referer` with `?token=`, a copy in a custom header).
pub fn scrub_token(headers: &mut http::HeaderMap, token: &str) {
    use http::header::{AUTHORIZATION, COOKIE as COOKIE_HEADER};
    let secret = token.as_bytes();
    let mut cookies = Vec::new();
    for v in headers.get_all(COOKIE_HEADER) {
        let text = String::from_utf8_lossy(v.as_bytes()).into_owned();
        for kv in text.split(';').map(str::trim).filter(|kv| !kv.is_empty()) {
            let name = kv.split_once('=').map_or(kv, |(k, _)| k).trim();
            if name != COOKIE && !carries(kv.as_bytes(), secret) {
                cookies.push(kv.to_string());
            }
        }
    }
    headers.remove(COOKIE_HEADER);
    if let Ok(v) = http::HeaderValue::from_str(&cookies.join("; ")) {
        if !cookies.is_empty() {
            headers.insert(COOKIE_HEADER, v);
        }
    }
    let auth: Vec<http::HeaderValue> = headers
        .get_all(AUTHORIZATION)
        .iter()
        .filter(|v| bearer(v.as_bytes()).is_none() && !carries(v.as_bytes(), secret))
        .cloned()
        .collect();
    headers.remove(AUTHORIZATION);
    for v in auth {
        headers.append(AUTHORIZATION, v);
    }
    let leaking: Vec<http::HeaderName> = headers
        .iter()
        .filter(|(_, v)| carries(v.as_bytes(), secret))
        .map(|(k, _)| k.clone())
        .collect();
    for k in leaking {
        headers.remove(k);
    }
}

/// The query's `token=` (the key in any case, the value percent-decoded), and the query without
/// it nor any other pair holding `secret` (as it is, percent- or `+`-decoded: `?a=1;token=…`, a
/// copy under another key), which would reach Fooocus's access log when another credential
/// brought the token.
pub fn token_in_query(query: &str, secret: &str) -> (Option<Vec<u8>>, String) {
    let mut token = None;
    let mut rest = Vec::new();
    for kv in query.split('&').filter(|kv| !kv.is_empty()) {
        let (k, v) = kv.split_once('=').unwrap_or((kv, ""));
        if percent_decode(k.as_bytes())
            .collect::<Vec<u8>>()
            .eq_ignore_ascii_case(b"token")
        {
            token = Some(percent_decode(v.as_bytes()).collect());
        } else if !carries(kv.as_bytes(), secret.as_bytes())
            && !carries(kv.replace('+', " ").as_bytes(), secret.as_bytes())
        {
            rest.push(kv);
        }
    }
    (token, rest.join("&"))
}

/// A `Location:` for a path of this site: leading slashes and backslashes folded into one
/// `/`, since a browser reads `//host/` or `/\\host/` as another site (an open redirect).
pub fn same_site_location(path_and_query: &str) -> String {
    format!("/{}", path_and_query.trim_start_matches(['/', '\\']))
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

/// An origin as compared: scheme, host (lower case) and port (the scheme's default when absent).
/// None for anything but `http(s)://host[:port]` (`null` included).
fn origin_parts(origin: &str) -> Option<(String, String, u16)> {
    let (scheme, authority) = origin.trim().split_once("://")?;
    let scheme = scheme.to_ascii_lowercase();
    let default = match scheme.as_str() {
        "http" => 80,
        "https" => 443,
        _ => return None,
    };
    let authority = authority.strip_suffix('/').unwrap_or(authority);
    if authority.is_empty() || authority.contains(['/', '?', '#', '@', ' ']) {
        return None;
    }
    let port_text = match authority.strip_prefix('[') {
        Some(rest) => rest.split_once(']')?.1.strip_prefix(':'),
        None => authority.rsplit_once(':').map(|(_, p)| p),
    };
    let (host, _) = split_authority(authority);
    let port = match port_text {
        Some(p) => p.parse().ok()?,
        None => default,
    };
    (!host.is_empty()).then_some((scheme, host, port))
}

/// Whether a `gateway.allowed_origins` entry is an origin the gateway can compare:
/// `http://host:port` or `https://host:port` (the port may be left out for 80 and 443), no
/// path, no `*`. The error names the entry and the form it must take.
pub fn valid_origin(entry: &str) -> Result<(), String> {
    match origin_parts(entry) {
        Some(_) if !entry.contains('*') => Ok(()),
        _ => Err(format!(
            "\"{entry}\" is not an origin: write it as scheme://host:port, e.g. http://192.168.1.5:3000 (no path, no wildcard)"
        )),
    }
}

/// Whether `origin` (a request's `Origin:`) is one of `allowed`, compared as origins (case of
/// scheme and host, default port). `null` never is.
pub fn origin_allowed(origin: &str, allowed: &[String]) -> bool {
    let Some(o) = origin_parts(origin) else {
        return false;
    };
    allowed
        .iter()
        .any(|a| !a.contains('*') && origin_parts(a).as_ref() == Some(&o))
}

/// Whether `Origin:` is this very site (same host and port as `Host:`). A request without
/// Origin is not from another site as far as Origin tells.
pub fn same_origin(origin: Option<&str>, host: &str) -> bool {
    let Some(origin) = origin else { return true };
    let Some((scheme, oh, op)) = origin_parts(origin) else {
        return false; // "null" and anything else unparseable
    };
    let default = if scheme == "https" { 443 } else { 80 };
    let (hh, hp) = split_authority(host);
    oh == hh && op == hp.unwrap_or(default)
}

/// Whether the browser says another page made this request: an `Origin:` that is not this
/// site, or `Sec-Fetch-Site` other than `same-origin` / `none` (`none`: typed, a bookmark, the
/// guard's "Open in the browser"). `same-site` counts as another site: a page on another port
/// of this machine is same-site, and it is not this Fooocus.
pub fn from_another_site(origin: Option<&str>, host: &str, fetch_site: Option<&str>) -> bool {
    if !same_origin(origin, host) {
        return true;
    }
    fetch_site.is_some_and(|s| {
        let s = s.trim();
        !(s.eq_ignore_ascii_case("same-origin") || s.eq_ignore_ascii_case("none"))
    })
}

/// A link followed to this Fooocus in a tab of its own (`Sec-Fetch-Mode: navigate`,
/// `Sec-Fetch-Dest: document`, a GET or HEAD without `Origin`): its answer goes to the user's
/// tab, where no other page can read it. Frames are not (`Sec-Fetch-Dest: iframe`).
pub fn is_top_navigation(
    method: &http::Method,
    origin: Option<&str>,
    mode: Option<&str>,
    dest: Option<&str>,
) -> bool {
    (method == http::Method::GET || method == http::Method::HEAD)
        && origin.is_none()
        && mode.is_some_and(|m| m.trim().eq_ignore_ascii_case("navigate"))
        && dest.is_some_and(|d| d.trim().eq_ignore_ascii_case("document"))
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
        let (t, rest) = token_in_query("a=1&token=s%2Bcr%20t&b=2", "s+cr t");
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
            bearer: vec![b"right-token".to_vec()],
            cookie: Vec::new(),
        };
        assert!(p.matches("right-token") && !p.matches("other-token"));
    }

    /// No copy of the token stays in the query: under `Token=`, after a `;`, under another
    /// key, percent- or `+`-encoded.
    #[test]
    fn the_query_loses_every_copy_of_the_token() {
        let secret = "s3cret tok";
        let (t, rest) = token_in_query("Token=s3cret%20tok&a=1", secret);
        assert_eq!(
            (t.as_deref(), rest.as_str()),
            (Some(&b"s3cret tok"[..]), "a=1")
        );
        for q in [
            "a=1;token=s3cret%20tok",
            "x=s3cret+tok",
            "x=s3cret%20tok",
            "s3cret tok",
            "x=%73%33cret%20tok",
        ] {
            let (t, rest) = token_in_query(&format!("keep=1&{q}&b=2"), secret);
            assert_eq!((t, rest.as_str()), (None, "keep=1&b=2"), "{q}");
        }
    }

    #[test]
    fn the_browser_url_carries_the_token() {
        let a = "0.0.0.0:7865".parse().unwrap();
        assert_eq!(browser_url(a, None), "http://127.0.0.1:7865/");
        assert_eq!(
            browser_url(a, Some("a b/c+d")),
            "http://127.0.0.1:7865/?token=a%20b%2Fc%2Bd"
        );
        let (t, _) = token_in_query("token=a%20b%2Fc%2Bd", "x");
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

    #[test]
    fn the_token_is_taken_out_of_every_header() {
        let token = "s3cret-token";
        let mut h = http::HeaderMap::new();
        h.append("cookie", "a=b".parse().unwrap());
        h.append(
            "cookie",
            "fooocus_guard_token=s3cret-token; c=d".parse().unwrap(),
        );
        h.append("cookie", "x=s3cret%2Dtoken".parse().unwrap());
        h.append("authorization", "Basic YTpi".parse().unwrap());
        h.append("authorization", "bearer s3cret-token".parse().unwrap());
        h.append("referer", "http://h/?token=s3cret-token".parse().unwrap());
        h.append("x-other", "keep".parse().unwrap());
        let p = Presented::of(None, &h);
        assert_eq!(p.cookie, vec![token.as_bytes().to_vec()]);
        assert_eq!(p.bearer, vec![token.as_bytes().to_vec()]);
        scrub_token(&mut h, token);
        let mut all: Vec<String> = h
            .iter()
            .map(|(k, v)| format!("{k}: {}", v.to_str().unwrap()))
            .collect();
        all.sort();
        assert_eq!(
            all,
            [
                "authorization: Basic YTpi",
                "cookie: a=b; c=d",
                "x-other: keep"
            ],
            "{all:?}"
        );
    }

    #[test]
    fn origins_allowed_and_other_sites() {
        let allowed = vec![
            "http://192.168.1.5:3000".to_string(),
            "https://app.example".into(),
        ];
        assert!(origin_allowed("http://192.168.1.5:3000", &allowed));
        assert!(origin_allowed("HTTPS://App.Example:443", &allowed));
        assert!(!origin_allowed("http://192.168.1.5:3001", &allowed));
        assert!(!origin_allowed("https://app.example.evil", &allowed));
        assert!(!origin_allowed("null", &allowed));
        assert!(!origin_allowed("null", &["null".to_string()]));
        assert!(valid_origin("http://192.168.1.5:3000").is_ok());
        assert!(valid_origin("https://[::1]").is_ok());
        for bad in [
            "*",
            "http://*.example",
            "192.168.1.5:3000",
            "http://h/path",
            "ftp://h",
            "http://h:x",
        ] {
            assert!(valid_origin(bad).is_err(), "{bad}");
        }
        let host = "127.0.0.1:7865";
        assert!(!from_another_site(None, host, None));
        assert!(!from_another_site(
            Some("http://127.0.0.1:7865"),
            host,
            Some("same-origin")
        ));
        assert!(!from_another_site(None, host, Some("none")));
        assert!(from_another_site(None, host, Some("cross-site")));
        assert!(from_another_site(None, host, Some("same-site")));
        assert!(from_another_site(Some("http://127.0.0.1:3000"), host, None));
        let get = http::Method::GET;
        assert!(is_top_navigation(
            &get,
            None,
            Some("navigate"),
            Some("document")
        ));
        assert!(!is_top_navigation(
            &get,
            None,
            Some("navigate"),
            Some("iframe")
        ));
        assert!(!is_top_navigation(&get, None, Some("cors"), Some("empty")));
        assert!(!is_top_navigation(
            &http::Method::POST,
            None,
            Some("navigate"),
            Some("document")
        ));
    }
}
