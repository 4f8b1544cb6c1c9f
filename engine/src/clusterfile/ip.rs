//! IP lists and ranges as users write them: `10.0.0.2`, `10.0.0.2,10.0.0.3`, `10.0.0.2-10.0.0.9`.

use std::net::IpAddr;

/// Largest number of addresses one range may expand to; a larger range is almost always a typo
/// (`10.0.0.1-10.0.9.1`) and would otherwise plan thousands of hosts by accident.
pub const MAX_RANGE_LEN: u128 = 65_536;

#[derive(Debug, PartialEq, Eq)]
pub enum IpListError {
    Invalid(String),
    Reversed(String),
    Oversized(String, u128),
    MixedFamilies(String),
}

impl std::fmt::Display for IpListError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IpListError::Invalid(s) => write!(f, "`{s}` is not an IP address"),
            IpListError::Reversed(s) => write!(f, "range `{s}` ends before it starts"),
            IpListError::Oversized(s, n) => {
                write!(f, "range `{s}` holds {n} addresses, more than the limit of {MAX_RANGE_LEN}")
            }
            IpListError::MixedFamilies(s) => write!(f, "range `{s}` mixes IPv4 and IPv6"),
        }
    }
}

fn parse_ip(s: &str) -> Result<IpAddr, IpListError> {
    s.trim().parse::<IpAddr>().map_err(|_| IpListError::Invalid(s.trim().to_string()))
}

fn to_u128(ip: IpAddr) -> u128 {
    match ip {
        IpAddr::V4(v4) => u128::from(u32::from(v4)),
        IpAddr::V6(v6) => u128::from(v6),
    }
}

fn from_u128(n: u128, v4: bool) -> IpAddr {
    if v4 {
        IpAddr::V4(std::net::Ipv4Addr::from(n as u32))
    } else {
        IpAddr::V6(std::net::Ipv6Addr::from(n))
    }
}

/// Expands one item: a single address or an inclusive `first-last` range.
pub fn expand_item(item: &str) -> Result<Vec<IpAddr>, IpListError> {
    let item = item.trim();
    // IPv6 addresses contain no `-`, so a dash always separates a range.
    let Some((first, last)) = item.split_once('-') else {
        return Ok(vec![parse_ip(item)?]);
    };
    let (first, last) = (parse_ip(first)?, parse_ip(last)?);
    if first.is_ipv4() != last.is_ipv4() {
        return Err(IpListError::MixedFamilies(item.to_string()));
    }
    let (a, b) = (to_u128(first), to_u128(last));
    if b < a {
        return Err(IpListError::Reversed(item.to_string()));
    }
    let len = b - a + 1;
    if len > MAX_RANGE_LEN {
        return Err(IpListError::Oversized(item.to_string(), len));
    }
    Ok((a..=b).map(|n| from_u128(n, first.is_ipv4())).collect())
}

/// Expands a comma-separated list of addresses and ranges, keeping the order written.
pub fn expand_list(list: &str) -> Result<Vec<IpAddr>, IpListError> {
    let mut out = Vec::new();
    for item in list.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        out.extend(expand_item(item)?);
    }
    if out.is_empty() {
        return Err(IpListError::Invalid(list.to_string()));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ips(v: &[&str]) -> Vec<IpAddr> {
        v.iter().map(|s| s.parse().unwrap()).collect()
    }

    #[test]
    fn single_address() {
        assert_eq!(expand_item("192.168.0.3").unwrap(), ips(&["192.168.0.3"]));
    }

    #[test]
    fn inclusive_range_crosses_octets() {
        assert_eq!(
            expand_item("10.0.0.254-10.0.1.1").unwrap(),
            ips(&["10.0.0.254", "10.0.0.255", "10.0.1.0", "10.0.1.1"])
        );
    }

    #[test]
    fn comma_list_with_ranges_keeps_order() {
        assert_eq!(expand_list("10.0.0.9, 10.0.0.2-10.0.0.3").unwrap(), ips(&["10.0.0.9", "10.0.0.2", "10.0.0.3"]));
    }

    #[test]
    fn ipv6_range() {
        assert_eq!(expand_item("fd00::1-fd00::2").unwrap(), ips(&["fd00::1", "fd00::2"]));
    }

    #[test]
    fn rejects_reversed_oversized_invalid_and_mixed() {
        assert_eq!(expand_item("10.0.0.7-10.0.0.3"), Err(IpListError::Reversed("10.0.0.7-10.0.0.3".into())));
        assert!(matches!(expand_item("10.0.0.0-10.2.0.0"), Err(IpListError::Oversized(_, 131_073))));
        assert_eq!(expand_item("10.0.0.300"), Err(IpListError::Invalid("10.0.0.300".into())));
        assert!(matches!(expand_item("10.0.0.1-fd00::1"), Err(IpListError::MixedFamilies(_))));
        assert!(expand_list(" , ").is_err());
    }
}
