//! What each request sends (`-m`, `-H`, `-b`, `-T`), which answers count as ok
//! (`--expect-status`), and the tally of status codes.
//!
//! The request's bytes are built once per run and written as they are for every request: the
//! options cost nothing on the hot path. The status tally is a fixed array indexed by code.

use std::fmt;
use std::str::FromStr;
use std::sync::Arc;

use crate::target::Target;

/// The request `load` sends, beyond the target's path and host.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestSpec {
    /// Method (`GET` by default), sent as given.
    pub method: String,
    /// Extra headers, in order (`-H 'Name: value'`); one named `Host` replaces the target's.
    pub headers: Vec<(String, String)>,
    /// Body (`-b` or `--body-file`), sent with its Content-Length; empty: none.
    pub body: Vec<u8>,
    /// Answers whose status is in this set count as ok; the others are `status` errors.
    pub expect: StatusSet,
}

impl Default for RequestSpec {
    fn default() -> Self {
        RequestSpec {
            method: "GET".into(),
            headers: Vec::new(),
            body: Vec::new(),
            expect: StatusSet::default(),
        }
    }
}

impl RequestSpec {
    /// What the suite and the gate send: a GET whose only answer is `200 OK` (every archbench
    /// server and peer answers exactly that; anything else is a fault of the server).
    pub fn hello() -> Self {
        RequestSpec {
            expect: "200".parse().expect("a valid status set"),
            ..RequestSpec::default()
        }
    }

    /// The whole request for `target`: request line, `Host` (unless a header replaces it),
    /// `Authorization` from the URL's userinfo (unless a header gives one), the extra headers,
    /// `Content-Length` with a body, `Connection: close` unless `keep_alive`, and the body.
    pub fn bytes(&self, target: &Target, keep_alive: bool) -> Vec<u8> {
        let given = |name: &str| {
            self.headers
                .iter()
                .any(|(n, _)| n.eq_ignore_ascii_case(name))
        };
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, target.path);
        if !given("host") {
            head.push_str(&format!("Host: {}\r\n", target.host));
        }
        if let Some(auth) = target
            .authorization
            .as_ref()
            .filter(|_| !given("authorization"))
        {
            head.push_str(&format!("Authorization: {auth}\r\n"));
        }
        for (name, value) in &self.headers {
            head.push_str(&format!("{name}: {value}\r\n"));
        }
        if !self.body.is_empty() && !given("content-length") {
            head.push_str(&format!("Content-Length: {}\r\n", self.body.len()));
        }
        if !keep_alive {
            head.push_str("Connection: close\r\n");
        }
        head.push_str("\r\n");
        let mut bytes = head.into_bytes();
        bytes.extend_from_slice(&self.body);
        bytes
    }

    /// True when answers carry no body whatever their Content-Length says (`HEAD`).
    pub fn head_only(&self) -> bool {
        self.method.eq_ignore_ascii_case("HEAD")
    }
}

/// An HTTP token (RFC 9110 5.6.2): what a method and a header name are made of.
fn is_token(text: &str) -> bool {
    let allowed = |c: char| c.is_ascii_alphanumeric() || "!#$%&'*+-.^_`|~".contains(c);
    !text.is_empty() && text.chars().all(allowed)
}

/// Parses `-H 'Name: value'`.
///
/// # Errors
/// No colon, an empty or invalid name, or a line break in the value.
pub fn parse_header(text: &str) -> Result<(String, String), String> {
    let (name, value) = text
        .split_once(':')
        .ok_or_else(|| format!("'{text}' is not 'Name: value'"))?;
    let name = name.trim();
    if !is_token(name) {
        return Err(format!("'{name}' is not a valid header name"));
    }
    if value.contains(['\r', '\n']) {
        return Err(format!("the value of '{name}' has a line break"));
    }
    Ok((name.to_string(), value.trim().to_string()))
}

/// Parses `-m`: a method is an HTTP token (`GET`, `POST`, `PURGE`...).
///
/// # Errors
/// An empty method or one with characters a token may not have.
pub fn parse_method(text: &str) -> Result<String, String> {
    if !is_token(text) {
        return Err(format!("'{text}' is not a valid HTTP method"));
    }
    Ok(text.to_string())
}

/// Highest status code the set and the tally hold (codes are three digits).
pub const MAX_STATUS: u16 = 999;

/// A set of status codes: `2xx,3xx` (the default: as wrk and oha count answers), `200`,
/// `200-204,404`.
#[derive(Clone, PartialEq, Eq)]
pub struct StatusSet {
    bits: [u64; 16],
    /// The set as the user wrote it, for the summary.
    text: Arc<str>,
}

impl StatusSet {
    /// The empty set (`text` is how it is shown).
    fn empty() -> Self {
        StatusSet {
            bits: [0; 16],
            text: Arc::from(""),
        }
    }

    fn insert_range(&mut self, low: u16, high: u16) {
        for code in low..=high {
            self.bits[code as usize / 64] |= 1 << (code % 64);
        }
    }

    /// True when `code` is in the set.
    #[inline]
    pub fn contains(&self, code: u16) -> bool {
        code <= MAX_STATUS && self.bits[code as usize / 64] & (1 << (code % 64)) != 0
    }
}

impl Default for StatusSet {
    fn default() -> Self {
        let mut set = StatusSet::empty();
        set.insert_range(200, 399);
        set.text = Arc::from("2xx,3xx");
        set
    }
}

impl fmt::Debug for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl fmt::Display for StatusSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl FromStr for StatusSet {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut set = StatusSet::empty();
        let code = |t: &str| match t.trim().parse::<u16>() {
            Ok(c) if (100..=MAX_STATUS).contains(&c) => Ok(c),
            _ => Err(format!("'{t}' is not a status code (100 to 999)")),
        };
        for part in text.split(',') {
            let part = part.trim();
            if let Some(class) = part.strip_suffix("xx").or_else(|| part.strip_suffix("XX")) {
                match class.parse::<u16>() {
                    Ok(c @ 1..=9) => set.insert_range(c * 100, c * 100 + 99),
                    _ => return Err(format!("'{part}' is not a status class (1xx to 9xx)")),
                }
            } else if let Some((low, high)) = part.split_once('-') {
                let (low, high) = (code(low)?, code(high)?);
                if low > high {
                    return Err(format!("'{part}' is an empty range"));
                }
                set.insert_range(low, high);
            } else {
                let c = code(part)?;
                set.insert_range(c, c);
            }
        }
        set.text = Arc::from(text.trim());
        Ok(set)
    }
}

/// How many answers came back with each status code (index: the code): a fixed array, so the
/// hot path only increments.
#[derive(Clone, PartialEq, Eq)]
pub struct StatusCounts(Box<[u64; MAX_STATUS as usize + 1]>);

impl Default for StatusCounts {
    fn default() -> Self {
        StatusCounts(Box::new([0; MAX_STATUS as usize + 1]))
    }
}

impl fmt::Debug for StatusCounts {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl StatusCounts {
    /// One answer with `code`.
    #[inline]
    pub fn count(&mut self, code: u16) {
        self.0[usize::from(code.min(MAX_STATUS))] += 1;
    }

    /// Adds another tally.
    pub fn add(&mut self, other: &StatusCounts) {
        for (mine, theirs) in self.0.iter_mut().zip(other.0.iter()) {
            *mine += theirs;
        }
    }

    /// The codes seen and their counts, lowest code first.
    pub fn iter(&self) -> impl Iterator<Item = (u16, u64)> + '_ {
        self.0
            .iter()
            .enumerate()
            .filter(|(_, &n)| n > 0)
            .map(|(code, &n)| (code as u16, n))
    }

    /// Answers counted.
    pub fn total(&self) -> u64 {
        self.0.iter().sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_sets_parse_classes_ranges_and_codes() {
        let default = StatusSet::default();
        assert!(default.contains(200) && default.contains(204) && default.contains(399));
        assert!(!default.contains(199) && !default.contains(400) && !default.contains(0));
        let set: StatusSet = "200, 404,500-502".parse().unwrap();
        let inside: Vec<u16> = (100..=999).filter(|&c| set.contains(c)).collect();
        assert_eq!(inside, [200, 404, 500, 501, 502]);
        assert_eq!(set.to_string(), "200, 404,500-502");
        let set: StatusSet = "4xx".parse().unwrap();
        assert!(set.contains(400) && set.contains(499) && !set.contains(500));
        for bad in ["", "abc", "99", "1000", "0xx", "10xx", "300-200", "2xx,"] {
            assert!(bad.parse::<StatusSet>().is_err(), "{bad:?} accepted");
        }
    }

    #[test]
    fn requests_carry_method_headers_and_body() {
        let target: Target = "http://u:p@127.0.0.1:9/api?x=1".parse().unwrap();
        let spec = RequestSpec {
            method: "POST".into(),
            headers: vec![
                ("Content-Type".into(), "application/json".into()),
                ("X-Trace".into(), "1".into()),
            ],
            body: b"{\"a\":1}".to_vec(),
            ..RequestSpec::default()
        };
        let text = String::from_utf8(spec.bytes(&target, false)).unwrap();
        assert_eq!(
            text,
            "POST /api?x=1 HTTP/1.1\r\nHost: 127.0.0.1:9\r\nAuthorization: Basic dTpw\r\n\
             Content-Type: application/json\r\nX-Trace: 1\r\nContent-Length: 7\r\n\
             Connection: close\r\n\r\n{\"a\":1}"
        );
        // A Host header given replaces the target's; no body, no Content-Length.
        let spec = RequestSpec {
            headers: vec![("host".into(), "example.org".into())],
            ..RequestSpec::default()
        };
        let text = String::from_utf8(spec.bytes(&target, true)).unwrap();
        assert_eq!(
            text,
            "GET /api?x=1 HTTP/1.1\r\nAuthorization: Basic dTpw\r\nhost: example.org\r\n\r\n"
        );
    }

    #[test]
    fn headers_and_methods_are_checked() {
        assert_eq!(
            parse_header("X-A:  b c "),
            Ok(("X-A".to_string(), "b c".to_string()))
        );
        assert!(parse_header("no colon").is_err());
        assert!(parse_header(": v").is_err());
        assert!(parse_header("bad name: v").is_err());
        assert_eq!(parse_method("PURGE"), Ok("PURGE".to_string()));
        assert!(parse_method("GE T").is_err());
        assert!(parse_method("").is_err());
    }

    #[test]
    fn the_status_tally_counts_by_code() {
        let mut counts = StatusCounts::default();
        for code in [200, 200, 404, 204] {
            counts.count(code);
        }
        let mut other = StatusCounts::default();
        other.count(404);
        counts.add(&other);
        assert_eq!(
            counts.iter().collect::<Vec<_>>(),
            [(200, 2), (204, 1), (404, 2)]
        );
        assert_eq!(counts.total(), 5);
    }
}
