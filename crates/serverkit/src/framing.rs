//! What a request head may say, by RFC 9110 and 9112, read on the bytes: which methods and
//! versions are served, and how `Content-Length`, `Host`, `Connection`, `Transfer-Encoding`
//! and `Expect` are read. [`crate::http::RequestBuffer`] hands every complete head that
//! `httparse` accepted to `interpret`, and asks `version` when `httparse` refused the
//! version. docs/http.md lists every rule beside nginx's answer to the same bytes.
//!
//! Why on the bytes: two parsers that disagree on where a body ends are a request-smuggling
//! hole. A field value is surrounded by optional whitespace, which is SP and HTAB only (RFC
//! 9110 5.6.3); Rust's `str::trim` also strips Unicode spaces and would read `5` followed by
//! U+00A0 as the length 5, where a proxy in front reads it as invalid.

use crate::http::{HttpError, Request};

/// What a complete, accepted head asks for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Head {
    pub(crate) request: Request,
    /// Body bytes that follow the head (`Content-Length`; 0 without one).
    pub(crate) body: u64,
    /// `Expect: 100-continue` on HTTP/1.1: the client may wait for a `100` before its body.
    pub(crate) expects_continue: bool,
}

/// The methods the servers answer; every other one is refused (405 with this list in `Allow`,
/// or 501 when the method is not one of RFC 9110's).
pub const ALLOWED_METHODS: &str = "GET, HEAD, POST";

/// Reads what the server needs out of a head `httparse` accepted.
///
/// # Errors
/// The [`HttpError`] to answer: 400 for a bad `Content-Length` or `Host` (or a missing
/// `Host` on HTTP/1.1), 405 or 501 for a method not served, 501 for `Transfer-Encoding`.
pub(crate) fn interpret(parsed: &httparse::Request<'_, '_>) -> Result<Head, HttpError> {
    let head_only = match parsed.method.unwrap_or_default() {
        "GET" | "POST" => false,
        "HEAD" => true,
        // RFC 9110 9.3.6: a 2xx to CONNECT turns the connection into a tunnel; the others
        // would be answered as if they were a GET. Known methods are 405, the rest 501 (15.6.2).
        "PUT" | "DELETE" | "CONNECT" | "OPTIONS" | "TRACE" | "PATCH" => {
            return Err(HttpError::MethodNotAllowed)
        }
        _ => return Err(HttpError::NotImplemented),
    };
    let http10 = parsed.version == Some(0);
    let (mut close, mut asked_keep_alive, mut expects_continue) = (false, false, false);
    let mut body: Option<u64> = None;
    let mut hosts = 0;
    for header in parsed.headers.iter() {
        let (name, value) = (header.name.as_bytes(), || trim_ows(header.value));
        // The length first: one comparison for most headers, which the server ignores.
        match name.len() {
            4 if name.eq_ignore_ascii_case(b"host") => {
                // RFC 9112 3.2: more than one, or an invalid one, is 400.
                hosts += 1;
                if hosts > 1 || !valid_host(value()) {
                    return Err(HttpError::Malformed);
                }
            }
            6 if name.eq_ignore_ascii_case(b"expect") => {
                expects_continue |=
                    tokens(value()).any(|t| t.eq_ignore_ascii_case(b"100-continue"));
            }
            10 if name.eq_ignore_ascii_case(b"connection") => {
                // RFC 9112 9.3 and 9.6: `close` anywhere in any Connection header wins.
                for token in tokens(value()) {
                    close |= token.eq_ignore_ascii_case(b"close");
                    asked_keep_alive |= token.eq_ignore_ascii_case(b"keep-alive");
                }
            }
            14 if name.eq_ignore_ascii_case(b"content-length") => {
                // RFC 9110 8.6 lets a recipient merge identical repeats; refusing any repeat,
                // as nginx does, leaves no two readings of one message.
                if body.is_some() {
                    return Err(HttpError::Malformed);
                }
                body = Some(content_length(value()).ok_or(HttpError::Malformed)?);
            }
            17 if name.eq_ignore_ascii_case(b"transfer-encoding") => {
                return Err(HttpError::NotImplemented)
            }
            _ => {}
        }
    }
    if hosts == 0 && !http10 {
        return Err(HttpError::Malformed);
    }
    Ok(Head {
        request: Request {
            // HTTP/1.0 keeps the connection only when asked with `keep-alive`.
            keep_alive: !close && (!http10 || asked_keep_alive),
            http10,
            head_only,
        },
        body: body.unwrap_or(0),
        // RFC 9110 10.1.1: an HTTP/1.0 request's 100-continue MUST be ignored.
        expects_continue: expects_continue && !http10,
    })
}

/// A field value without its optional whitespace: SP and HTAB only (RFC 9110 5.6.3).
pub(crate) fn trim_ows(value: &[u8]) -> &[u8] {
    let is_ows = |b: &u8| *b == b' ' || *b == b'\t';
    let start = value.iter().position(|b| !is_ows(b)).unwrap_or(value.len());
    let end = value
        .iter()
        .rposition(|b| !is_ows(b))
        .map_or(start, |i| i + 1);
    &value[start..end]
}

/// The members of a comma-separated list (RFC 9110 5.6.1), each trimmed; empty ones kept.
fn tokens(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

/// `Content-Length = 1*DIGIT` (RFC 9110 8.6), that and nothing else; `None` when invalid or
/// over `u64`.
fn content_length(value: &[u8]) -> Option<u64> {
    if value.is_empty() {
        return None;
    }
    value.iter().try_fold(0u64, |n, &b| {
        let digit = b.checked_sub(b'0').filter(|d| *d <= 9)?;
        n.checked_mul(10)?.checked_add(u64::from(digit))
    })
}

/// `Host = uri-host [ ":" port ]` (RFC 9112 3.2, RFC 3986 3.2.2): a bracketed IPv6 literal or
/// a reg-name (letters, digits, `-._~`, `%` and the sub-delims; an IPv4 address is one), then
/// an optional port of digits. An empty value is allowed (a target without authority).
fn valid_host(value: &[u8]) -> bool {
    let (host_ok, port) = match value.strip_prefix(b"[") {
        Some(rest) => {
            let Some(end) = rest.iter().position(|&b| b == b']') else {
                return false;
            };
            let literal = &rest[..end];
            let ok = !literal.is_empty()
                && literal
                    .iter()
                    .all(|&b| b.is_ascii_hexdigit() || b == b':' || b == b'.');
            (ok, &rest[end + 1..])
        }
        None => {
            let split = value
                .iter()
                .rposition(|&b| b == b':')
                .unwrap_or(value.len());
            let name = &value[..split];
            let ok = name
                .iter()
                .all(|&b| b.is_ascii_alphanumeric() || b"-._~%!$&'()*+,;=".contains(&b));
            (ok, &value[split..])
        }
    };
    let port_ok = match port {
        [] => true,
        [b':', digits @ ..] => digits.iter().all(u8::is_ascii_digit),
        _ => false,
    };
    host_ok && port_ok
}

/// What to do with a request line whose version `httparse` refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Version {
    /// `HTTP/1.2` to `HTTP/1.9`: served as HTTP/1.1 (RFC 9110 2.5: a higher minor version
    /// SHOULD be processed as the highest the recipient conforms to). The byte at this
    /// offset is the minor digit; the caller writes `1` there and parses again.
    Patch(usize),
    /// Another major version (`HTTP/2.0` sent as text on an HTTP/1 connection): 505.
    NotSupported,
    /// The request line has not ended yet: wait for more bytes.
    Incomplete,
    /// Anything else (`HTTP/1.10`, `HTTP/0.9`, `XTTP/1.1`): 400.
    Malformed,
}

/// Looks at the version of the request line at the start of `bytes` (after the empty lines
/// RFC 9112 2.2 lets a server ignore): `method SP target SP version`.
pub(crate) fn version(bytes: &[u8]) -> Version {
    let start = bytes
        .iter()
        .position(|&b| b != b'\r' && b != b'\n')
        .unwrap_or(bytes.len());
    let Some(len) = bytes[start..].iter().position(|&b| b == b'\n') else {
        return Version::Incomplete;
    };
    let line = &bytes[start..start + len];
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let Some(at) = line
        .iter()
        .enumerate()
        .filter(|(_, &b)| b == b' ')
        .nth(1)
        .map(|(i, _)| i + 1)
    else {
        return Version::Malformed;
    };
    match &line[at..] {
        [b'H', b'T', b'T', b'P', b'/', b'1', b'.', b'2'..=b'9'] => Version::Patch(start + at + 7),
        [b'H', b'T', b'T', b'P', b'/', b'2'..=b'9', b'.', b'0'..=b'9'] => Version::NotSupported,
        _ => Version::Malformed,
    }
}

/// True when the request line at the start of `bytes` has ended (a `\n` after any leading
/// empty lines): a head that fills the buffer before that has too long a target (414), one
/// that fills it after has too many or too long fields (431).
pub(crate) fn request_line_ended(bytes: &[u8]) -> bool {
    bytes
        .iter()
        .skip_while(|&&b| b == b'\r' || b == b'\n')
        .any(|&b| b == b'\n')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_sp_and_htab_are_trimmed() {
        assert_eq!(trim_ows(b" \t5\t "), b"5");
        assert_eq!(trim_ows("5\u{a0}".as_bytes()), "5\u{a0}".as_bytes());
        assert_eq!(trim_ows(b"\x0b5\x0c"), b"\x0b5\x0c");
        assert_eq!(trim_ows(b"  "), b"");
    }

    #[test]
    fn content_length_is_digits_and_nothing_else() {
        assert_eq!(content_length(b"0"), Some(0));
        assert_eq!(content_length(b"0042"), Some(42));
        assert_eq!(content_length(b"18446744073709551615"), Some(u64::MAX));
        for bad in [
            &b""[..],
            b"18446744073709551616",
            b"+5",
            b"-5",
            b"5 5",
            b"5,5",
            b"0x5",
            "5\u{a0}".as_bytes(),
            "5\u{85}".as_bytes(),
            "\u{3000}5".as_bytes(),
            "\u{661}".as_bytes(), // ARABIC-INDIC DIGIT ONE: a digit to Unicode, not to HTTP
        ] {
            assert_eq!(content_length(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn hosts_follow_the_uri_grammar() {
        for good in [
            &b""[..],
            b"example.com",
            b"example.com:8080",
            b"127.0.0.1:80",
            b"[::1]",
            b"[::1]:8080",
            b"[2001:db8::192.0.2.1]",
            b"a-b_c~d%20e",
            b"host:",
        ] {
            assert!(valid_host(good), "{:?}", String::from_utf8_lossy(good));
        }
        for bad in [
            &b"a b"[..],
            b"a\tb",
            b"a/b",
            b"a@b",
            b"host:8x",
            b"::1",
            b"[::1",
            b"[]",
            b"[::1]x",
            b"[::g]",
            "caf\u{e9}".as_bytes(),
        ] {
            assert!(!valid_host(bad), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn versions_past_1_1_are_patched_or_refused() {
        assert_eq!(version(b"GET / HTTP/1.2\r\n"), Version::Patch(13));
        assert_eq!(version(b"\r\nGET /a HTTP/1.9\n"), Version::Patch(16));
        assert_eq!(version(b"GET / HTTP/2.0\r\n\r\n"), Version::NotSupported);
        assert_eq!(version(b"GET / HTTP/2.0"), Version::Incomplete);
        for bad in [
            &b"GET / HTTP/1.10\r\n"[..],
            b"GET / HTTP/0.9\r\n",
            b"GET / HTTP/2\r\n",
            b"GET / XTTP/1.1\r\n",
            b"GET /\r\n",
        ] {
            assert_eq!(version(bad), Version::Malformed, "{bad:?}");
        }
    }

    #[test]
    fn the_request_line_ends_at_its_first_newline() {
        assert!(!request_line_ended(b"GET /aaaa"));
        assert!(!request_line_ended(b"\r\n\r\nGET /aaaa"));
        assert!(request_line_ended(b"GET / HTTP/1.1\r\nX: y"));
    }
}
