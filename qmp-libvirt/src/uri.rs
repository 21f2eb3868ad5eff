//! libvirt connection URIs: where to connect, and the name to open there.
//!
//! The forms users write: `qemu:///system`, `qemu:///session`,
//! `qemu+unix:///system`, `qemu+tcp://host[:port]/system`, each optionally
//! with `?socket=PATH` (unix). libvirt's remote driver strips the transport
//! and its own parameters before `CONNECT_OPEN`: `qemu+tcp://host/system`
//! opens `qemu:///system` on host. TLS (`+tls`, and a plain `qemu://host/`,
//! which means TLS), SSH (`+ssh`, `+libssh`, `+libssh2`), `+ext` and user
//! names (SASL or SSH) are not supported and say so.

use alloc::string::{String, ToString};
use core::fmt;

/// libvirtd's TCP port (`LIBVIRTD_TCP_PORT`).
pub const DEFAULT_TCP_PORT: u16 = 16509;
/// The system daemon's socket.
pub const SYSTEM_SOCKET: &str = "/var/run/libvirt/libvirt-sock";

/// Where to connect.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Transport {
    /// A unix socket at this path.
    Unix {
        /// The socket's path.
        path: String,
    },
    /// The per-user session daemon's socket: `$XDG_RUNTIME_DIR/libvirt/libvirt-sock`
    /// (see [`session_socket`]), resolved by the transport, which can read
    /// the environment.
    SessionUnix,
    /// TCP, without TLS or authentication.
    Tcp {
        /// Host name or address (IPv6 without brackets).
        host: String,
        /// Port.
        port: u16,
    },
}

/// A parsed URI.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Target {
    /// Where to connect.
    pub transport: Transport,
    /// What to open there (`CONNECT_OPEN`'s name), such as `qemu:///system`.
    pub name: String,
}

/// Why a URI was refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum UriError {
    /// Not of the form `driver[+transport]://[host][:port]/path[?query]`.
    Malformed {
        /// What is wrong.
        reason: &'static str,
    },
    /// A transport this crate does not speak (TLS, SSH, ext).
    UnsupportedTransport {
        /// The transport as written (`tls`, `ssh`, ...).
        transport: String,
    },
    /// A user name, which only SASL and SSH use.
    UserName,
    /// A port that is not a number from 1 to 65535.
    BadPort,
}

impl fmt::Display for UriError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Malformed { reason } => write!(f, "malformed libvirt URI: {reason}"),
            Self::UnsupportedTransport { transport } => write!(
                f,
                "libvirt transport '{transport}' is not supported (only unix and tcp; \
                 TLS and SSH may come later)"
            ),
            Self::UserName => f.write_str(
                "a user name in a libvirt URI means SASL or SSH authentication, \
                 which is not supported (only auth none over unix and tcp)",
            ),
            Self::BadPort => {
                f.write_str("the port in the libvirt URI is not a number from 1 to 65535")
            }
        }
    }
}

impl core::error::Error for UriError {}

/// The session daemon's socket path, from `$XDG_RUNTIME_DIR` or, without
/// it, `$HOME` (as libvirt's client finds it).
pub fn session_socket(xdg_runtime_dir: Option<&str>, home: Option<&str>) -> Option<String> {
    match (xdg_runtime_dir, home) {
        (Some(dir), _) if !dir.is_empty() => Some(alloc::format!("{dir}/libvirt/libvirt-sock")),
        (_, Some(home)) if !home.is_empty() => {
            Some(alloc::format!("{home}/.cache/libvirt/libvirt-sock"))
        }
        _ => None,
    }
}

/// Parses a libvirt URI.
pub fn parse(uri: &str) -> Result<Target, UriError> {
    let malformed = |reason| UriError::Malformed { reason };
    let (scheme, rest) = uri
        .split_once("://")
        .ok_or(malformed("no '://' (expected e.g. qemu:///system)"))?;
    let (driver, transport) = match scheme.split_once('+') {
        Some((d, t)) => (d, Some(t)),
        None => (scheme, None),
    };
    if driver.is_empty() || !driver.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err(malformed("the driver name must be letters and digits"));
    }
    let (rest, fragment) = match rest.split_once('#') {
        Some((r, _)) => (r, true),
        None => (rest, false),
    };
    if fragment {
        return Err(malformed("a fragment ('#') is not allowed"));
    }
    let (before_query, query) = match rest.split_once('?') {
        Some((b, q)) => (b, Some(q)),
        None => (rest, None),
    };
    let (authority, path) = match before_query.find('/') {
        Some(i) => before_query.split_at(i),
        None => (before_query, ""),
    };
    if authority.contains('@') {
        return Err(UriError::UserName);
    }
    let (host, port) = split_host_port(authority)?;

    let mut socket = None;
    let mut name_param = None;
    let mut kept = String::new();
    for pair in query.into_iter().flat_map(|q| q.split('&')) {
        if pair.is_empty() {
            continue;
        }
        let (key, value) = pair.split_once('=').unwrap_or((pair, ""));
        match key {
            "socket" => socket = Some(percent_decode(value).ok_or(malformed("bad %-escape"))?),
            "name" => name_param = Some(percent_decode(value).ok_or(malformed("bad %-escape"))?),
            // The remote driver's own parameters, not the daemon's.
            "mode" | "proxy" | "no_verify" | "no_tty" | "pkipath" | "keyfile" | "known_hosts"
            | "known_hosts_verify" | "sshauth" | "command" | "netcat" | "tls_priority" => {}
            _ => {
                kept.push(if kept.is_empty() { '?' } else { '&' });
                kept.push_str(pair);
            }
        }
    }
    let name = match name_param {
        Some(n) => n,
        None => alloc::format!("{driver}://{path}{kept}"),
    };

    let transport = match transport {
        Some("tcp") => {
            if socket.is_some() {
                return Err(malformed("'socket=' is for unix, not tcp"));
            }
            Transport::Tcp {
                host: if host.is_empty() {
                    "localhost".to_string()
                } else {
                    host.to_string()
                },
                port: port.unwrap_or(DEFAULT_TCP_PORT),
            }
        }
        Some("unix") | None => {
            if !host.is_empty() || port.is_some() {
                // libvirt's default transport for a URI with a host is TLS.
                if transport.is_none() {
                    return Err(UriError::UnsupportedTransport {
                        transport: "tls".to_string(),
                    });
                }
                return Err(malformed("the unix transport takes no host"));
            }
            match socket {
                Some(path) => Transport::Unix { path },
                None if path == "/session" => Transport::SessionUnix,
                None => Transport::Unix {
                    path: SYSTEM_SOCKET.to_string(),
                },
            }
        }
        Some(other) => {
            return Err(UriError::UnsupportedTransport {
                transport: other.to_string(),
            });
        }
    };
    Ok(Target { transport, name })
}

fn split_host_port(authority: &str) -> Result<(&str, Option<u16>), UriError> {
    let (host, port) = if let Some(rest) = authority.strip_prefix('[') {
        let (host, after) = rest.split_once(']').ok_or(UriError::Malformed {
            reason: "unclosed '[' in the host",
        })?;
        match after {
            "" => (host, None),
            p => (
                host,
                Some(p.strip_prefix(':').ok_or(UriError::Malformed {
                    reason: "junk after ']' in the host",
                })?),
            ),
        }
    } else {
        match authority.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port = match port {
        None => None,
        Some(p) => match p.parse::<u16>() {
            Ok(0) | Err(_) => return Err(UriError::BadPort),
            Ok(p) => Some(p),
        },
    };
    Ok((host, port))
}

fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = alloc::vec::Vec::with_capacity(bytes.len());
    let mut i = 0;
    // i < bytes.len() <= isize::MAX, so i + 3 cannot overflow.
    while let Some(&b) = bytes.get(i) {
        match b {
            b'%' => {
                // Two hex digits exactly (from_str_radix alone takes "+1").
                let &[hi, lo] = bytes.get(i.saturating_add(1)..i.saturating_add(3))? else {
                    return None;
                };
                let digit = |c: u8| char::from(c).to_digit(16);
                let value = digit(hi)?.checked_mul(16)?.checked_add(digit(lo)?)?;
                out.push(u8::try_from(value).ok()?);
                i = i.saturating_add(3);
            }
            b'+' => {
                out.push(b' ');
                i = i.saturating_add(1);
            }
            b => {
                out.push(b);
                i = i.saturating_add(1);
            }
        }
    }
    String::from_utf8(out).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn unix(path: &str) -> Transport {
        Transport::Unix {
            path: path.to_string(),
        }
    }

    #[test]
    fn system_and_session() {
        let t = parse("qemu:///system").unwrap();
        assert_eq!(t.transport, unix(SYSTEM_SOCKET));
        assert_eq!(t.name, "qemu:///system");
        let t = parse("qemu:///session").unwrap();
        assert_eq!(t.transport, Transport::SessionUnix);
        assert_eq!(t.name, "qemu:///session");
        let t = parse("qemu+unix:///system").unwrap();
        assert_eq!(t.transport, unix(SYSTEM_SOCKET));
        assert_eq!(t.name, "qemu:///system");
    }

    #[test]
    fn socket_parameter() {
        let t = parse("qemu:///system?socket=/tmp/x/libvirt-sock").unwrap();
        assert_eq!(t.transport, unix("/tmp/x/libvirt-sock"));
        assert_eq!(t.name, "qemu:///system");
        let t = parse("qemu+unix:///session?socket=/run/a%20b/sock").unwrap();
        assert_eq!(t.transport, unix("/run/a b/sock"));
        assert_eq!(t.name, "qemu:///session");
    }

    #[test]
    fn tcp() {
        let t = parse("qemu+tcp://127.0.0.1:16511/system").unwrap();
        assert_eq!(
            t.transport,
            Transport::Tcp {
                host: "127.0.0.1".into(),
                port: 16511
            }
        );
        assert_eq!(t.name, "qemu:///system");
        let t = parse("qemu+tcp://example.org/system").unwrap();
        assert_eq!(
            t.transport,
            Transport::Tcp {
                host: "example.org".into(),
                port: DEFAULT_TCP_PORT
            }
        );
        let t = parse("qemu+tcp://[::1]:16510/session").unwrap();
        assert_eq!(
            t.transport,
            Transport::Tcp {
                host: "::1".into(),
                port: 16510
            }
        );
        assert_eq!(t.name, "qemu:///session");
        let t = parse("qemu+tcp:///system").unwrap();
        assert!(matches!(t.transport, Transport::Tcp { ref host, .. } if host == "localhost"));
    }

    #[test]
    fn other_parameters_pass_through_and_name_overrides() {
        let t = parse("qemu+tcp://h/system?mode=legacy&foo=bar").unwrap();
        assert_eq!(t.name, "qemu:///system?foo=bar");
        let t = parse("qemu+tcp://h/system?name=qemu:///embed").unwrap();
        assert_eq!(t.name, "qemu:///embed");
    }

    #[test]
    fn unsupported_forms_say_so() {
        for (uri, transport) in [
            ("qemu+tls://host/system", "tls"),
            ("qemu+ssh://host/system", "ssh"),
            ("qemu+libssh2://host/system", "libssh2"),
            ("qemu+ext:///system?command=/bin/x", "ext"),
            ("qemu://host/system", "tls"),
        ] {
            let err = parse(uri).unwrap_err();
            assert_eq!(
                err,
                UriError::UnsupportedTransport {
                    transport: transport.into()
                },
                "{uri}"
            );
            assert!(alloc::format!("{err}").contains("not supported"));
        }
        assert_eq!(
            parse("qemu+tcp://alice@host/system"),
            Err(UriError::UserName)
        );
        assert!(alloc::format!("{}", UriError::UserName).contains("SASL"));
    }

    #[test]
    fn malformed() {
        assert!(matches!(parse("qemu"), Err(UriError::Malformed { .. })));
        assert!(matches!(parse("://x"), Err(UriError::Malformed { .. })));
        assert_eq!(parse("qemu+tcp://h:0/system"), Err(UriError::BadPort));
        assert_eq!(parse("qemu+tcp://h:99999/system"), Err(UriError::BadPort));
        assert!(matches!(
            parse("qemu+unix://host/system"),
            Err(UriError::Malformed { .. })
        ));
        // A %-escape cut short at the end of the URI is malformed, not read
        // past the end.
        // Two hex digits exactly: a sign is not one ("%+1", "%-1").
        for escape in ["%zz", "%", "%4", "a%", "a%2", "%e9", "%+1", "%-1", "% 1"] {
            assert!(
                matches!(
                    parse(&alloc::format!("qemu:///system?socket={escape}")),
                    Err(UriError::Malformed { .. })
                ),
                "{escape}"
            );
        }
        let t = parse("qemu:///system?socket=/a%2Fb+c%41").unwrap();
        assert_eq!(t.transport, unix("/a/b cA"));
        let t = parse("qemu:///system?socket=/%7e%7E%00%c3%BF").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(t.transport, unix("/~~\0\u{ff}"));
    }

    #[test]
    fn session_socket_from_environment() {
        assert_eq!(
            session_socket(Some("/run/user/1000"), Some("/home/a")).as_deref(),
            Some("/run/user/1000/libvirt/libvirt-sock")
        );
        assert_eq!(
            session_socket(None, Some("/home/a")).as_deref(),
            Some("/home/a/.cache/libvirt/libvirt-sock")
        );
        assert_eq!(session_socket(None, None), None);
    }
}
