//! `[rate_limit]`: token buckets per client IP and per user.

use std::fmt;
use std::net::{IpAddr, Ipv6Addr};
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use super::{invalid, ConfigError};

/// Token buckets per client IP and per user, one pair per kind of request.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct RateLimitSettings {
    pub enabled: bool,
    pub login_per_minute: u32,
    pub login_burst: u32,
    pub query_per_minute: u32,
    pub query_burst: u32,
    pub chat_per_minute: u32,
    pub chat_burst: u32,
    /// WebSocket upgrades (chat and job events).
    pub ws_connect_per_minute: u32,
    pub ws_connect_burst: u32,
    /// Take the client IP from `X-Forwarded-For` (only behind a trusted proxy).
    pub trust_forwarded_for: bool,
    /// The proxies in front of the server (addresses or networks). With
    /// `trust_forwarded_for`, `X-Forwarded-For` counts only on a connection
    /// from one of them, and the client is the right-most entry that is not
    /// one of them. Empty: any peer, and the right-most entry.
    pub trusted_proxies: Vec<IpNet>,
    /// Per-IP buckets are this many times the per-user ones (users behind one NAT).
    pub ip_factor: u32,
}

impl Default for RateLimitSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            login_per_minute: 10,
            login_burst: 5,
            query_per_minute: 600,
            query_burst: 60,
            chat_per_minute: 60,
            chat_burst: 10,
            ws_connect_per_minute: 30,
            ws_connect_burst: 10,
            trust_forwarded_for: false,
            trusted_proxies: Vec::new(),
            ip_factor: 4,
        }
    }
}

impl RateLimitSettings {
    pub(super) fn check(&self) -> Result<(), ConfigError> {
        for (key, v) in [
            ("rate_limit.login_per_minute", self.login_per_minute),
            ("rate_limit.login_burst", self.login_burst),
            ("rate_limit.query_per_minute", self.query_per_minute),
            ("rate_limit.query_burst", self.query_burst),
            ("rate_limit.chat_per_minute", self.chat_per_minute),
            ("rate_limit.chat_burst", self.chat_burst),
            (
                "rate_limit.ws_connect_per_minute",
                self.ws_connect_per_minute,
            ),
            ("rate_limit.ws_connect_burst", self.ws_connect_burst),
            ("rate_limit.ip_factor", self.ip_factor),
        ] {
            if v == 0 {
                return Err(invalid(key, "must be at least 1"));
            }
        }
        Ok(())
    }
}

/// An address or a network: `10.0.0.7`, `10.0.0.0/8`, `fd00::/8`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct IpNet {
    addr: IpAddr,
    prefix: u8,
}

/// An IPv4-mapped IPv6 address (`::ffff:10.0.0.1`) as the IPv4 address it is.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

impl IpNet {
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, canonical(ip)) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for IpNet {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let s = s.trim();
        let (addr, prefix) = match s.split_once('/') {
            Some((a, p)) => (a, Some(p)),
            None => (s, None),
        };
        let addr = addr
            .parse::<IpAddr>()
            .map(canonical)
            .map_err(|_| format!("`{s}` is not an IP address or network (such as 10.0.0.0/8)"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = match prefix {
            None => max,
            Some(p) => p
                .parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("`{s}`: the prefix length must be 0 to {max}"))?,
        };
        Ok(IpNet { addr, prefix })
    }
}

impl TryFrom<String> for IpNet {
    type Error = String;

    fn try_from(s: String) -> Result<Self, String> {
        s.parse()
    }
}

impl fmt::Display for IpNet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

impl From<IpNet> for String {
    fn from(n: IpNet) -> String {
        n.to_string()
    }
}

/// The per-IP limiter key of a client: the address for IPv4, the /64
/// network for IPv6, since one subscriber usually holds a whole /64 and
/// could otherwise take a fresh bucket per address.
pub fn limiter_key(ip: IpAddr) -> String {
    match canonical(ip) {
        IpAddr::V4(v4) => v4.to_string(),
        IpAddr::V6(v6) => {
            let net = Ipv6Addr::from(u128::from(v6) & (u128::MAX << 64));
            format!("{net}/64")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn networks_parse_and_contain() {
        let n: IpNet = "10.0.0.0/8".parse().unwrap();
        assert!(n.contains(ip("10.200.3.4")));
        assert!(
            n.contains(ip("::ffff:10.1.1.1")),
            "IPv4-mapped counts as IPv4"
        );
        assert!(!n.contains(ip("11.0.0.1")));
        assert!(!n.contains(ip("::1")));
        let one: IpNet = "192.168.1.7".parse().unwrap();
        assert!(one.contains(ip("192.168.1.7")) && !one.contains(ip("192.168.1.8")));
        let v6: IpNet = "fd00::/8".parse().unwrap();
        assert!(v6.contains(ip("fd12::1")) && !v6.contains(ip("fe80::1")));
        let all: IpNet = "0.0.0.0/0".parse().unwrap();
        assert!(all.contains(ip("8.8.8.8")));
        for bad in [
            "",
            "10.0.0.0/33",
            "fd00::/129",
            "localhost",
            "10.0.0.0/x",
            "1.2.3",
        ] {
            assert!(bad.parse::<IpNet>().is_err(), "{bad}");
        }
        assert_eq!(String::from(n), "10.0.0.0/8");
    }

    #[test]
    fn ipv6_clients_share_a_key_per_64() {
        assert_eq!(limiter_key(ip("2001:db8:1:2:aaaa::1")), "2001:db8:1:2::/64");
        assert_eq!(
            limiter_key(ip("2001:db8:1:2:ffff:ffff:ffff:ffff")),
            limiter_key(ip("2001:db8:1:2::7"))
        );
        assert_ne!(
            limiter_key(ip("2001:db8:1:2::1")),
            limiter_key(ip("2001:db8:1:3::1"))
        );
        assert_eq!(limiter_key(ip("203.0.113.9")), "203.0.113.9");
        assert_eq!(limiter_key(ip("::ffff:203.0.113.9")), "203.0.113.9");
    }
}
