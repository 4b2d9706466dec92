//! Where to send load: a URL (`http://127.0.0.1:8080/path?q`) or `host:port`, read as curl
//! reads it.
//!
//! The URL is parsed by the `url` crate (the WHATWG rules browsers and curl follow): the scheme
//! is case-insensitive, the fragment stays on the client, the query goes with the path, dot
//! segments are resolved, the port must fit 16 bits, IPv6 addresses need brackets
//! (`[::1]:8080`), and userinfo (`http://user:pass@host/`) becomes a Basic `Authorization`
//! header. A name is resolved once, before the run, to every address it has; the run connects
//! to the first that accepts (see `load::preflight`), in the resolver's order, as curl does.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

use base64::Engine as _;

/// A resolved target: where to connect and what the request line and `Host` header say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The address connected to: the first of `addrs` until the pre-flight picks the first that
    /// accepts.
    pub addr: SocketAddr,
    /// Every address the host resolved to, in the resolver's order.
    pub addrs: Vec<SocketAddr>,
    /// `Host` header value: the host as written in the URL (IPv6 in brackets), with the port
    /// unless it is 80.
    pub host: String,
    /// Request target: the path and the query, percent-encoded as the URL parser left them.
    pub path: String,
    /// `Authorization: Basic ...` value from the URL's userinfo, if it had one.
    pub authorization: Option<String>,
}

impl Target {
    /// A target at a socket address, path `/`.
    pub fn at(addr: SocketAddr) -> Target {
        Target {
            addr,
            addrs: vec![addr],
            host: addr.to_string(),
            path: "/".into(),
            authorization: None,
        }
    }

    /// The plain GET request sent on each connection (what the suite sends): keep-alive asks to
    /// reuse it, otherwise the request says `Connection: close` and the server closes after
    /// answering (as with ab without -k). `load` builds its requests with
    /// [`crate::request::RequestSpec::bytes`].
    pub fn request(&self, keep_alive: bool) -> Vec<u8> {
        crate::request::RequestSpec::default().bytes(self, keep_alive)
    }
}

/// Why a target was refused.
fn refuse(text: &str, why: impl fmt::Display) -> String {
    format!("'{text}': {why}")
}

/// Parses and resolves a target without any I/O beyond name resolution.
impl FromStr for Target {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let has_scheme = text
            .split_once("://")
            .is_some_and(|(scheme, _)| !scheme.is_empty() && !scheme.contains(['/', '[', ':']));
        // The host and port, as written: after the scheme and any userinfo, before the path.
        let after_scheme = text
            .split_once("://")
            .filter(|_| has_scheme)
            .map_or(text, |(_, r)| r);
        let authority = after_scheme
            .split(['/', '?', '#'])
            .next()
            .unwrap_or("")
            .rsplit('@')
            .next()
            .unwrap_or("");
        if authority.matches(':').count() > 1 && !authority.starts_with('[') {
            return Err(refuse(
                text,
                "an IPv6 address needs brackets, as in curl: [::1]:8080 or http://[::1]:8080/",
            ));
        }
        let full = if has_scheme {
            text.to_string()
        } else {
            format!("http://{text}")
        };
        let url = url::Url::parse(&full).map_err(|e| refuse(text, explain(e)))?;
        if url.scheme() != "http" {
            return Err(refuse(
                text,
                format!("unsupported scheme '{}' (only http)", url.scheme()),
            ));
        }
        let host = match url.host() {
            Some(url::Host::Domain(name)) => name.to_string(),
            Some(url::Host::Ipv4(ip)) => ip.to_string(),
            Some(url::Host::Ipv6(ip)) => format!("[{ip}]"),
            None => return Err(refuse(text, "no host")),
        };
        let port = url.port_or_known_default().unwrap_or(80);
        let name = host.trim_start_matches('[').trim_end_matches(']');
        let addrs: Vec<SocketAddr> = (name, port)
            .to_socket_addrs()
            .map_err(|e| refuse(text, format!("cannot resolve '{name}': {e}")))?
            .collect();
        let addr = *addrs
            .first()
            .ok_or_else(|| refuse(text, format!("'{name}' resolves to no address")))?;
        let mut path = url.path().to_string();
        if let Some(query) = url.query() {
            path.push('?');
            path.push_str(query);
        }
        let authorization = (!url.username().is_empty() || url.password().is_some()).then(|| {
            let user = percent_decoded(url.username());
            let password = percent_decoded(url.password().unwrap_or(""));
            let pair = format!("{user}:{password}");
            format!(
                "Basic {}",
                base64::engine::general_purpose::STANDARD.encode(pair)
            )
        });
        Ok(Target {
            addr,
            addrs,
            host: match url.port() {
                Some(port) => format!("{host}:{port}"),
                None => host,
            },
            path,
            authorization,
        })
    }
}

/// The URL parser's error in words a user of curl would recognise.
fn explain(e: url::ParseError) -> String {
    match e {
        url::ParseError::InvalidPort => "the port is not a number from 0 to 65535".into(),
        url::ParseError::EmptyHost => "no host".into(),
        url::ParseError::InvalidIpv6Address => "not a valid IPv6 address in brackets".into(),
        other => other.to_string(),
    }
}

fn percent_decoded(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        if bytes[i] == b'%' && i + 2 < bytes.len() {
            if let (Some(hi), Some(lo)) = (hex(bytes[i + 1]), hex(bytes[i + 2])) {
                out.push((hi * 16 + lo) as u8);
                i += 3;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.host, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a target must come to: the address connected to, the Host header, the request
    /// target; or the words its refusal must contain.
    enum Expect {
        Parsed(&'static str, &'static str, &'static str),
        Refused(&'static str),
    }
    use Expect::*;

    #[test]
    fn targets_are_read_as_curl_reads_them() {
        #[rustfmt::skip]
        let table = [
            // Plain forms.
            ("http://127.0.0.1:8080/x/y", Parsed("127.0.0.1:8080", "127.0.0.1:8080", "/x/y")),
            ("127.0.0.1:9000", Parsed("127.0.0.1:9000", "127.0.0.1:9000", "/")),
            ("http://127.0.0.1/", Parsed("127.0.0.1:80", "127.0.0.1", "/")),
            // A query with no path, a fragment (never sent), both.
            ("http://127.0.0.1:8080?x=1", Parsed("127.0.0.1:8080", "127.0.0.1:8080", "/?x=1")),
            ("http://127.0.0.1:8080#top", Parsed("127.0.0.1:8080", "127.0.0.1:8080", "/")),
            ("http://127.0.0.1:8080/a/b?x=1#frag", Parsed("127.0.0.1:8080", "127.0.0.1:8080", "/a/b?x=1")),
            ("127.0.0.1:8080/p?q=2", Parsed("127.0.0.1:8080", "127.0.0.1:8080", "/p?q=2")),
            // Schemes are case-insensitive; the default port is not written in Host.
            ("HTTP://127.0.0.1:8080/", Parsed("127.0.0.1:8080", "127.0.0.1:8080", "/")),
            ("Http://127.0.0.1:80/", Parsed("127.0.0.1:80", "127.0.0.1", "/")),
            // Dot segments resolved, spaces encoded, as curl sends them.
            ("http://127.0.0.1:1/a/../b/./c", Parsed("127.0.0.1:1", "127.0.0.1:1", "/b/c")),
            ("http://127.0.0.1:1/a b", Parsed("127.0.0.1:1", "127.0.0.1:1", "/a%20b")),
            // IPv6: brackets in the URL and in Host, as curl.
            ("[::1]:81", Parsed("[::1]:81", "[::1]:81", "/")),
            ("http://[::1]:81/x", Parsed("[::1]:81", "[::1]:81", "/x")),
            ("http://[::1]/", Parsed("[::1]:80", "[::1]", "/")),
            // Userinfo is accepted (it becomes Authorization, tested below).
            ("http://user:pw@127.0.0.1:5/", Parsed("127.0.0.1:5", "127.0.0.1:5", "/")),
            // Refusals, each saying why.
            ("::1:8080", Refused("needs brackets")),
            ("http://::1:8080/", Refused("needs brackets")),
            ("http://u@::1/", Refused("needs brackets")),
            ("http://127.0.0.1:99999/", Refused("0 to 65535")),
            ("127.0.0.1:99999", Refused("0 to 65535")),
            ("https://127.0.0.1:1/", Refused("unsupported scheme 'https'")),
            ("ftp://127.0.0.1/", Refused("unsupported scheme 'ftp'")),
            ("http:///", Refused("no host")),
            ("http://no-such-host.invalid/", Refused("cannot resolve")),
        ];
        for (text, expect) in table {
            let parsed = text.parse::<Target>();
            match (expect, parsed) {
                (Parsed(addr, host, path), Ok(t)) => {
                    assert_eq!(t.addr, addr.parse().unwrap(), "{text}");
                    assert_eq!((t.host.as_str(), t.path.as_str()), (host, path), "{text}");
                    assert_eq!(t.addrs[0], t.addr, "{text}");
                }
                (Refused(words), Err(why)) => {
                    assert!(why.contains(words) && why.contains(text), "{text}: {why}")
                }
                (Parsed(..), Err(why)) => panic!("{text} refused: {why}"),
                (Refused(_), Ok(t)) => panic!("{text} accepted: {t:?}"),
            }
        }
    }

    #[test]
    fn a_name_resolves_to_every_address_in_order() {
        let t: Target = "http://localhost:8080/".parse().unwrap();
        let expected: Vec<SocketAddr> = ("localhost", 8080).to_socket_addrs().unwrap().collect();
        assert_eq!(t.addrs, expected);
        assert_eq!(t.host, "localhost:8080");
        assert!(t.addrs.iter().all(|a| a.ip().is_loopback()));
    }

    #[test]
    fn userinfo_becomes_basic_authorization() {
        let t: Target = "http://Aladdin:open%20sesame@127.0.0.1:1/".parse().unwrap();
        // RFC 7617's example credentials.
        assert_eq!(
            t.authorization.as_deref(),
            Some("Basic QWxhZGRpbjpvcGVuIHNlc2FtZQ==")
        );
        let t: Target = "http://127.0.0.1:1/".parse().unwrap();
        assert_eq!(t.authorization, None);
    }

    #[test]
    fn requests_are_http11_with_close_when_not_kept_alive() {
        let t: Target = "127.0.0.1:1".parse().unwrap();
        assert_eq!(
            t.request(true),
            b"GET / HTTP/1.1\r\nHost: 127.0.0.1:1\r\n\r\n"
        );
        assert!(String::from_utf8(t.request(false))
            .unwrap()
            .contains("Connection: close\r\n"));
    }
}
