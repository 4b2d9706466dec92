//! Where to send load: a URL (`http://127.0.0.1:8080/path`) or `host:port`.

use std::fmt;
use std::net::{SocketAddr, ToSocketAddrs};
use std::str::FromStr;

/// A resolved target and the request bytes that go to it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    /// The address connected to.
    pub addr: SocketAddr,
    /// `Host` header value.
    pub host: String,
    /// Request path.
    pub path: String,
}

impl Target {
    /// The request sent on each connection: keep-alive asks to reuse it, otherwise the request
    /// says `Connection: close` and the server closes after answering (as with ab without -k).
    pub fn request(&self, keep_alive: bool) -> Vec<u8> {
        let connection = if keep_alive {
            ""
        } else {
            "Connection: close\r\n"
        };
        format!(
            "GET {} HTTP/1.1\r\nHost: {}\r\n{connection}\r\n",
            self.path, self.host
        )
        .into_bytes()
    }
}

impl FromStr for Target {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let rest = match text.split_once("://") {
            Some(("http", rest)) => rest,
            Some((scheme, _)) => return Err(format!("unsupported scheme '{scheme}' (only http)")),
            None => text,
        };
        let (authority, path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.is_empty() {
            return Err(format!("'{text}' has no host"));
        }
        let with_port = if authority
            .rsplit_once(':')
            .is_some_and(|(_, p)| p.parse::<u16>().is_ok())
            && !authority.ends_with(']')
        {
            authority.to_string()
        } else {
            format!("{authority}:80")
        };
        let addr = with_port
            .to_socket_addrs()
            .map_err(|e| format!("cannot resolve '{authority}': {e}"))?
            .next()
            .ok_or_else(|| format!("'{authority}' resolves to no address"))?;
        Ok(Target {
            addr,
            host: authority.to_string(),
            path: path.to_string(),
        })
    }
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "http://{}{}", self.host, self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_and_host_port_parse() {
        let t: Target = "http://127.0.0.1:8080/x/y".parse().unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            (t.host.as_str(), t.path.as_str()),
            ("127.0.0.1:8080", "/x/y")
        );
        let t: Target = "127.0.0.1:9000".parse().unwrap();
        assert_eq!((t.addr.port(), t.path.as_str()), (9000, "/"));
        let t: Target = "[::1]:81".parse().unwrap();
        assert_eq!(t.addr, "[::1]:81".parse().unwrap());
        assert_eq!(
            "http://localhost/".parse::<Target>().unwrap().addr.port(),
            80
        );
    }

    #[test]
    fn bad_targets_say_why() {
        assert!("https://x:1/"
            .parse::<Target>()
            .unwrap_err()
            .contains("scheme"));
        assert!("http:///"
            .parse::<Target>()
            .unwrap_err()
            .contains("no host"));
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
