//! Which addresses a crawl may connect to.
//!
//! A crawl is started by an API caller, so without a guard the server would
//! fetch from its own network on the caller's behalf (loopback admin ports,
//! cloud metadata at 169.254.169.254, the intranet) and report back what it
//! found: server-side request forgery. Unless
//! [`CrawlSpec::allow_private_networks`](super::CrawlSpec) is set, every
//! request the crawler sends (pages, each redirect hop, robots.txt) may only
//! reach public addresses:
//!
//! - a URL whose host is an IP literal is checked before the request
//!   ([`check_host`]);
//! - a name is checked by the client's DNS resolver ([`GuardedResolver`],
//!   installed by `client_builder`), which hands the connector only the
//!   addresses that passed. The addresses checked are the addresses connected
//!   to, so a name that answers with a public address for the check and
//!   127.0.0.1 for the connection (DNS rebinding) gains nothing.
//!
//! Every refusal reads the same ([`FetchError::AddressNotAllowed`]), and no
//! connection is attempted, so a crawl's results cannot tell a closed
//! internal port from an open one.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use url::{Host, Url};

use super::FetchError;

/// Why an address is not public.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    Unspecified,
    Loopback,
    Private,
    /// 100.64.0.0/10, carrier-grade NAT.
    SharedCgnat,
    LinkLocal,
    /// fc00::/7.
    UniqueLocal,
    Multicast,
    Broadcast,
    Documentation,
    /// Benchmarking, protocol assignments, future use, discard: nothing a
    /// web page lives on.
    Reserved,
}

impl Refused {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Refused::Unspecified => "an unspecified",
            Refused::Loopback => "a loopback",
            Refused::Private => "a private",
            Refused::SharedCgnat => "a carrier-grade NAT",
            Refused::LinkLocal => "a link-local",
            Refused::UniqueLocal => "a unique-local",
            Refused::Multicast => "a multicast",
            Refused::Broadcast => "the broadcast",
            Refused::Documentation => "a documentation",
            Refused::Reserved => "a reserved",
        }
    }
}

/// IPv4 blocks that are not public (IANA special-purpose registry), most
/// specific first: `(network, prefix length, class)`.
const V4: &[(u32, u32, Refused)] = &[
    (0xffff_ffff, 32, Refused::Broadcast),
    (0x0000_0000, 8, Refused::Unspecified), // "this network"
    (0x0a00_0000, 8, Refused::Private),
    (0x6440_0000, 10, Refused::SharedCgnat),
    (0x7f00_0000, 8, Refused::Loopback),
    (0xa9fe_0000, 16, Refused::LinkLocal), // cloud metadata lives here
    (0xac10_0000, 12, Refused::Private),
    (0xc000_0000, 24, Refused::Reserved), // IETF protocol assignments
    (0xc000_0200, 24, Refused::Documentation),
    (0xc058_6300, 24, Refused::Reserved), // 6to4 relay anycast
    (0xc0a8_0000, 16, Refused::Private),
    (0xc612_0000, 15, Refused::Reserved), // benchmarking
    (0xc633_6400, 24, Refused::Documentation),
    (0xcb00_7100, 24, Refused::Documentation),
    (0xe000_0000, 4, Refused::Multicast),
    (0xf000_0000, 4, Refused::Reserved), // future use
];

/// IPv6 blocks that are not public, besides `::`, `::1` and the forms that
/// embed an IPv4 address (see [`embedded_v4`]). Everything outside
/// 2000::/3 (global unicast) is refused too.
const V6: &[(u128, u32, Refused)] = &[
    (0x0064_ff9b_0001 << 80, 48, Refused::Private), // local-use NAT64
    (0x0100 << 112, 64, Refused::Reserved),         // discard-only
    (0x2001 << 112, 23, Refused::Reserved),         // protocol assignments, Teredo
    (0x2001_0db8 << 96, 32, Refused::Documentation),
    (0x3fff << 112, 20, Refused::Documentation),
    (0x5f00 << 112, 16, Refused::Reserved), // SRv6 SIDs
    (0xfc00 << 112, 7, Refused::UniqueLocal),
    (0xfe80 << 112, 10, Refused::LinkLocal),
    (0xfec0 << 112, 10, Refused::Private), // site-local (deprecated)
    (0xff00 << 112, 8, Refused::Multicast),
];

/// Whether `addr` lies in `net`/`len`, for addresses `bits` wide.
fn in_block(addr: u128, net: u128, len: u32, bits: u32) -> bool {
    let mask = u128::MAX.checked_shl(128 - len).unwrap_or(0) >> (128 - bits);
    addr & mask == net & mask
}

/// `None` when `ip` is a public address a crawl may reach; else its class.
pub(crate) fn refused(ip: IpAddr) -> Option<Refused> {
    match ip {
        IpAddr::V4(v4) => refused_v4(v4),
        IpAddr::V6(v6) => refused_v6(v6),
    }
}

fn refused_v4(ip: Ipv4Addr) -> Option<Refused> {
    let addr = u32::from(ip);
    V4.iter()
        .find(|(net, len, _)| in_block(addr.into(), (*net).into(), *len, 32))
        .map(|(_, _, class)| *class)
}

fn refused_v6(ip: Ipv6Addr) -> Option<Refused> {
    if ip.is_unspecified() {
        return Some(Refused::Unspecified);
    }
    if ip.is_loopback() {
        return Some(Refused::Loopback);
    }
    // ::ffff:127.0.0.1 reaches 127.0.0.1: judge the IPv4 address inside.
    if let Some(v4) = embedded_v4(ip) {
        return refused_v4(v4);
    }
    let addr = u128::from(ip);
    V6.iter()
        .find(|(net, len, _)| in_block(addr, *net, *len, 128))
        .map(|(_, _, class)| *class)
        .or_else(|| (!in_block(addr, 0x2000 << 112, 3, 128)).then_some(Refused::Reserved))
}

/// The IPv4 address an IPv6 address stands for: IPv4-mapped (::ffff:a.b.c.d),
/// IPv4-translated (::ffff:0:a.b.c.d), IPv4-compatible (::a.b.c.d,
/// deprecated), NAT64 (64:ff9b::a.b.c.d) and 6to4 (2002:aabb:ccdd::).
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let addr = u128::from(ip);
    let low = Ipv4Addr::from(u32::try_from(addr & 0xffff_ffff).unwrap_or(0));
    let s = ip.segments();
    match s {
        [0, 0, 0, 0, 0, 0xffff, _, _]
        | [0, 0, 0, 0, 0xffff, 0, _, _]
        | [0, 0, 0, 0, 0, 0, _, _]
        | [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))),
        _ => None,
    }
}

/// The one answer a refused address gets, whatever its class: the job
/// results it ends up in are read by API callers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("address not allowed")]
pub(crate) struct AddressNotAllowed;

/// Refuse a URL whose host is a non-public IP literal (names are the
/// resolver's to check).
pub(crate) fn check_host(url: &Url, allow_private: bool) -> Result<(), FetchError> {
    match literal_ip(url) {
        Some(ip) if !allow_private && refused(ip).is_some() => Err(FetchError::AddressNotAllowed),
        _ => Ok(()),
    }
}

/// The URL's host when it is an IP literal (the URL parser has already
/// read `0x7f.1`, `2130706433` and the like as IPv4).
fn literal_ip(url: &Url) -> Option<IpAddr> {
    match url.host()? {
        Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        Host::Domain(_) => None,
    }
}

/// Why a start URL written as an IP literal is refused up front, for the
/// caller who typed it; `None` for names and public addresses.
pub(crate) fn literal_refusal(url: &Url) -> Option<String> {
    let ip = literal_ip(url)?;
    refused(ip).map(|class| {
        format!(
            "address not allowed: {ip} is {} address; crawls reach public addresses only \
             unless crawl.allow_private_networks is set",
            class.as_str()
        )
    })
}

/// A DNS resolver that passes on only public addresses; a name with none
/// left fails with [`AddressNotAllowed`].
pub(crate) struct GuardedResolver {
    inner: Arc<dyn Resolve>,
}

impl GuardedResolver {
    /// Over the system resolver (getaddrinfo).
    pub(crate) fn system() -> Self {
        Self::new(Arc::new(SystemResolver))
    }

    pub(crate) fn new(inner: Arc<dyn Resolve>) -> Self {
        GuardedResolver { inner }
    }
}

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let lookup = self.inner.resolve(name);
        Box::pin(async move {
            let mut any = false;
            let public: Vec<SocketAddr> = lookup
                .await?
                .inspect(|_| any = true)
                .filter(|a| refused(a.ip()).is_none())
                .collect();
            if public.is_empty() && any {
                return Err(Box::new(AddressNotAllowed) as Box<dyn std::error::Error + Send + Sync>);
            }
            Ok(Box::new(public.into_iter()) as Addrs)
        })
    }
}

/// getaddrinfo on tokio's blocking pool, as reqwest's default resolver.
struct SystemResolver;

impl Resolve for SystemResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let host = name.as_str().to_string();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

/// Does `error`, or anything in its source chain, say "address not allowed"?
pub(crate) fn is_refusal(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if e.downcast_ref::<AddressNotAllowed>().is_some() {
            return true;
        }
        next = e.source();
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn every_non_public_class_is_refused() {
        use Refused::*;
        for (addr, class) in [
            ("0.0.0.0", Unspecified),
            ("0.1.2.3", Unspecified),
            ("127.0.0.1", Loopback),
            ("127.255.255.254", Loopback),
            ("10.0.0.1", Private),
            ("10.255.255.255", Private),
            ("172.16.0.1", Private),
            ("172.31.255.255", Private),
            ("192.168.1.1", Private),
            ("100.64.0.1", SharedCgnat),
            ("100.127.255.255", SharedCgnat),
            ("169.254.169.254", LinkLocal),
            ("169.254.0.1", LinkLocal),
            ("224.0.0.1", Multicast),
            ("239.255.255.250", Multicast),
            ("255.255.255.255", Broadcast),
            ("240.0.0.1", Reserved),
            ("192.0.0.8", Reserved),
            ("198.18.0.1", Reserved),
            ("198.19.255.255", Reserved),
            ("192.0.2.1", Documentation),
            ("198.51.100.7", Documentation),
            ("203.0.113.9", Documentation),
            ("::", Unspecified),
            ("::1", Loopback),
            ("fc00::1", UniqueLocal),
            ("fd12:3456::1", UniqueLocal),
            ("fe80::1", LinkLocal),
            ("febf::1", LinkLocal),
            ("fec0::1", Private),
            ("ff02::1", Multicast),
            ("2001:db8::1", Documentation),
            ("3fff::1", Documentation),
            ("2001::1", Reserved),
            ("100::1", Reserved),
            ("64:ff9b:1::1", Private),
            ("4000::1", Reserved),
            // IPv4 inside IPv6 is judged as the IPv4 address.
            ("::ffff:127.0.0.1", Loopback),
            ("::ffff:10.1.2.3", Private),
            ("::ffff:169.254.169.254", LinkLocal),
            ("::ffff:0:192.168.0.1", Private),
            ("::127.0.0.1", Loopback),
            ("::10.0.0.1", Private),
            ("64:ff9b::7f00:1", Loopback),
            ("64:ff9b::a9fe:a9fe", LinkLocal),
            ("2002:7f00:1::", Loopback),
            ("2002:c0a8:101::1", Private),
        ] {
            assert_eq!(refused(ip(addr)), Some(class), "{addr}");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for addr in [
            "8.8.8.8",
            "1.1.1.1",
            "93.184.216.34",
            "9.255.255.255",
            "11.0.0.0",
            "100.63.255.255",
            "100.128.0.0",
            "126.255.255.255",
            "128.0.0.0",
            "169.253.255.255",
            "169.255.0.0",
            "172.15.255.255",
            "172.32.0.0",
            "192.167.255.255",
            "192.169.0.0",
            "223.255.255.255",
            "2606:4700:4700::1111",
            "2a00:1450:4001::200e",
            "2001:200::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert_eq!(refused(ip(addr)), None, "{addr}");
        }
    }

    fn url(s: &str) -> Url {
        Url::parse(s).unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn ip_literals_in_urls_are_checked_in_every_spelling() {
        for u in [
            "http://127.0.0.1:8080/",
            "http://[::1]/",
            "http://[::ffff:127.0.0.1]/",
            "http://169.254.169.254/latest/meta-data/",
            "http://0x7f.1/", // the URL parser reads these as 127.0.0.1
            "http://2130706433/",
            "http://0177.0.0.1/",
            "http://10.1/",
            "http://0/",
        ] {
            let u = url(u);
            assert_eq!(
                check_host(&u, false),
                Err(FetchError::AddressNotAllowed),
                "{u}"
            );
            assert_eq!(check_host(&u, true), Ok(()), "{u}");
            assert!(literal_refusal(&u).is_some(), "{u}");
        }
        for u in [
            "http://8.8.8.8/",
            "http://[2606:4700::1]/",
            "http://localhost/",
        ] {
            let u = url(u);
            assert_eq!(check_host(&u, false), Ok(()), "{u}");
            assert_eq!(literal_refusal(&u), None, "{u}");
        }
        assert_eq!(
            literal_refusal(&url("http://10.0.0.5/")).as_deref(),
            Some(
                "address not allowed: 10.0.0.5 is a private address; crawls reach public \
                 addresses only unless crawl.allow_private_networks is set"
            )
        );
    }

    /// Answers every name with fixed addresses.
    struct Fixed(Vec<&'static str>);

    impl Resolve for Fixed {
        fn resolve(&self, _: Name) -> Resolving {
            let addrs: Vec<SocketAddr> = self.0.iter().map(|a| SocketAddr::new(ip(a), 0)).collect();
            Box::pin(async move { Ok(Box::new(addrs.into_iter()) as Addrs) })
        }
    }

    async fn resolve_with(answer: &[&'static str]) -> Result<Vec<IpAddr>, bool> {
        let resolver = GuardedResolver::new(Arc::new(Fixed(answer.to_vec())));
        let name: Name = "example.test".parse().unwrap_or_else(|_| panic!("name"));
        match resolver.resolve(name).await {
            Ok(addrs) => Ok(addrs.map(|a| a.ip()).collect()),
            Err(e) => Err(is_refusal(&*e)),
        }
    }

    #[tokio::test]
    async fn the_resolver_passes_on_only_public_addresses() {
        assert_eq!(resolve_with(&["127.0.0.1"]).await, Err(true));
        assert_eq!(
            resolve_with(&["10.0.0.1", "::1", "169.254.169.254"]).await,
            Err(true)
        );
        assert_eq!(
            resolve_with(&[
                "10.0.0.1",
                "93.184.216.34",
                "::ffff:127.0.0.1",
                "2606:4700::1"
            ])
            .await,
            Ok(vec![ip("93.184.216.34"), ip("2606:4700::1")])
        );
        // No answer at all is a lookup failure, not a refusal.
        assert_eq!(resolve_with(&[]).await, Ok(vec![]));
    }

    #[tokio::test]
    async fn localhost_resolves_to_nothing_allowed() {
        let name: Name = "localhost".parse().unwrap_or_else(|_| panic!("name"));
        let result = GuardedResolver::system().resolve(name).await;
        match result {
            Ok(addrs) => panic!("localhost passed: {:?}", addrs.collect::<Vec<_>>()),
            Err(e) => assert!(is_refusal(&*e), "{e}"),
        }
    }
}
