//! The addresses an operator writes: peers (`--peers`, the genesis's validator addresses) as
//! HOST:PORT, and the address to listen on (`--listen`) as IP:PORT. A malformed one is refused at
//! start, naming it, rather than dialed (and never answered) for ever.

use std::net::SocketAddr;

/// Why an address is not HOST:PORT.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum AddressError {
    #[error(
        "{0:?} has no port: write HOST:PORT, e.g. {0}:8001 (the peer's --port, or the port of its \
         --listen)"
    )]
    NoPort(String),
    #[error("{0:?} has no host: write HOST:PORT, e.g. 10.0.0.2{0}")]
    NoHost(String),
    #[error("{text:?}: the port {port:?} is not a number from 1 to 65535")]
    BadPort { text: String, port: String },
    #[error(
        "{0:?} is not HOST:PORT: an IPv6 address is written in brackets, e.g. [2001:db8::1]:8001"
    )]
    BareIpv6(String),
    #[error(
        "{text:?}: {host:?} is not a host name (letters, digits, '-' and '.') or an IP address"
    )]
    BadHost { text: String, host: String },
    #[error(
        "{0:?} is not IP:PORT. The node listens on an IP address of this machine and a port, e.g. \
         0.0.0.0:8001 (every interface) or 127.0.0.1:8001 (this machine only); a host name such \
         as localhost is not resolved here"
    )]
    Listen(String),
}

/// Checks that `text` is HOST:PORT — a host name, an IPv4 address or a bracketed IPv6 address,
/// then a port from 1 to 65535 — and returns it unchanged. Whether the host resolves is known
/// only when it is dialed (`net/dial.rs` warns then).
pub fn peer_address(text: &str) -> Result<String, AddressError> {
    let shown = || text.to_string();
    let (host, port) = match text.rsplit_once(':') {
        None => return Err(AddressError::NoPort(shown())),
        Some((host, _)) if host.contains(':') && !host.starts_with('[') => {
            return Err(AddressError::BareIpv6(shown()));
        }
        Some(parts) => parts,
    };
    if host.is_empty() {
        return Err(AddressError::NoHost(shown()));
    }
    match port.parse::<u16>() {
        Ok(p) if p > 0 => {}
        _ => {
            return Err(AddressError::BadPort {
                text: shown(),
                port: port.into(),
            });
        }
    }
    let bad_host = || AddressError::BadHost {
        text: shown(),
        host: host.into(),
    };
    if let Some(inner) = host.strip_prefix('[') {
        let v6 = inner.strip_suffix(']').ok_or_else(bad_host)?;
        v6.parse::<std::net::Ipv6Addr>().map_err(|_| bad_host())?;
    } else if !host
        .split('.')
        .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '-'))
    {
        return Err(bad_host());
    }
    Ok(shown())
}

/// Parses `--listen`: an IP address of this machine and a port.
pub fn listen_address(text: &str) -> Result<SocketAddr, AddressError> {
    text.parse()
        .map_err(|_| AddressError::Listen(text.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn peer_addresses_are_host_and_port_or_refused_naming_why() {
        for good in [
            "localhost:8001",
            "127.0.0.1:8002",
            "node2.example.com:65535",
            "[::1]:8001",
            "[2001:db8::1]:1",
            "nosuchhost.invalid:1",
        ] {
            assert_eq!(peer_address(good).as_deref(), Ok(good));
        }
        let why = |t: &str| peer_address(t).unwrap_err();
        assert_eq!(why("localhost"), AddressError::NoPort("localhost".into()));
        assert_eq!(
            why("notahostport"),
            AddressError::NoPort("notahostport".into())
        );
        assert!(
            matches!(why("127.0.0.1:99999"), AddressError::BadPort { port, .. } if port == "99999")
        );
        assert!(matches!(why("127.0.0.1:0"), AddressError::BadPort { .. }));
        assert!(matches!(why("host:"), AddressError::BadPort { .. }));
        assert!(matches!(why("host:http"), AddressError::BadPort { .. }));
        assert_eq!(why(":8001"), AddressError::NoHost(":8001".into()));
        assert_eq!(why("::1:8001"), AddressError::BareIpv6("::1:8001".into()));
        assert!(matches!(why("a b:1"), AddressError::BadHost { .. }));
        assert!(matches!(why("host..x:1"), AddressError::BadHost { .. }));
        assert!(matches!(why("[::zz]:1"), AddressError::BadHost { .. }));
        let text = why("127.0.0.1:99999").to_string();
        assert!(text.contains("\"127.0.0.1:99999\""), "{text}");
        assert!(text.contains("1 to 65535"), "{text}");
    }

    #[test]
    fn a_listen_address_must_be_an_ip_and_a_name_gets_a_hint() {
        assert_eq!(
            listen_address("0.0.0.0:8001"),
            Ok(SocketAddr::from(([0, 0, 0, 0], 8001)))
        );
        let text = listen_address("localhost:8001").unwrap_err().to_string();
        assert!(text.contains("127.0.0.1:8001"), "{text}");
        assert!(text.contains("localhost is not resolved"), "{text}");
    }
}
