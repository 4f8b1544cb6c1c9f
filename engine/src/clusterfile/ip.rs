//! IP lists and ranges as users write them: `10.0.0.2`, `10.0.0.2,10.0.0.3`, `10.0.0.2-10.0.0.9`.

use std::net::IpAddr;

/// Largest number of addresses one range may expand to; a larger range is almost always a typo
/// (`10.0.0.1-10.0.9.1`) and would otherwise plan thousands of hosts by accident.
pub const MAX_RANGE_LEN: u128 = 65_536;

/// Addresses one file may expand to in all its lists together (hosts, plugin data, `on:`), so that a few
/// bytes of ranges cannot ask for gigabytes.
pub const MAX_ADDRESSES_PER_FILE: usize = 100_000;

#[derive(Debug, PartialEq, Eq)]
pub enum IpListError {
    Invalid(String),
    Reversed(String),
    Oversized(String, u128),
    MixedFamilies(String),
    OverBudget(String),
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
            IpListError::OverBudget(s) => {
                write!(f, "`{s}` takes the file over {MAX_ADDRESSES_PER_FILE} addresses in all its lists together")
            }
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

/// The first and last address of one item (a single address, or an inclusive `first-last` range) and how
/// many it holds, checked, without expanding it.
fn bounds(item: &str) -> Result<(u128, u128, bool), IpListError> {
    let item = item.trim();
    // IPv6 addresses contain no `-`, so a dash always separates a range.
    let Some((first, last)) = item.split_once('-') else {
        let ip = parse_ip(item)?;
        return Ok((to_u128(ip), to_u128(ip), ip.is_ipv4()));
    };
    let (first, last) = (parse_ip(first)?, parse_ip(last)?);
    if first.is_ipv4() != last.is_ipv4() {
        return Err(IpListError::MixedFamilies(item.to_string()));
    }
    let (a, b) = (to_u128(first), to_u128(last));
    if b < a {
        return Err(IpListError::Reversed(item.to_string()));
    }
    // `b - a` cannot overflow; `+ 1` could (the whole IPv6 space), so the comparison avoids it.
    if b - a >= MAX_RANGE_LEN {
        return Err(IpListError::Oversized(item.to_string(), (b - a).saturating_add(1)));
    }
    Ok((a, b, first.is_ipv4()))
}

/// Expands one item: a single address or an inclusive `first-last` range.
pub fn expand_item(item: &str) -> Result<Vec<IpAddr>, IpListError> {
    let (a, b, v4) = bounds(item)?;
    Ok((a..=b).map(|n| from_u128(n, v4)).collect())
}

/// Expands a comma-separated list of addresses and ranges, keeping the order written, taking the
/// addresses from `budget` (what the file may still expand to); nothing is expanded over it.
pub fn expand_list(list: &str, budget: &mut usize) -> Result<Vec<IpAddr>, IpListError> {
    let items: Vec<&str> = list.split(',').map(str::trim).filter(|s| !s.is_empty()).collect();
    let mut total: usize = 0;
    for item in &items {
        let (a, b, _) = bounds(item)?;
        // A range is at most MAX_RANGE_LEN long, so this fits.
        total = total.saturating_add(usize::try_from(b - a + 1).unwrap_or(usize::MAX));
    }
    if total > *budget {
        return Err(IpListError::OverBudget(list.to_string()));
    }
    *budget -= total;
    let mut out = Vec::with_capacity(total);
    for item in items {
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
        let mut budget = 10;
        assert_eq!(
            expand_list("10.0.0.9, 10.0.0.2-10.0.0.3", &mut budget).unwrap(),
            ips(&["10.0.0.9", "10.0.0.2", "10.0.0.3"])
        );
        assert_eq!(budget, 7);
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
        assert!(expand_list(" , ", &mut 10).is_err());
    }

    #[test]
    fn ranges_cannot_overflow_or_exceed_the_files_budget() {
        let whole = "::-ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff";
        assert_eq!(expand_item(whole), Err(IpListError::Oversized(whole.into(), u128::MAX)));
        let mut budget = MAX_ADDRESSES_PER_FILE;
        for i in 0..1 {
            assert!(expand_list(&format!("10.{i}.0.0-10.{i}.255.255"), &mut budget).is_ok());
        }
        let over = expand_list("10.9.0.0-10.9.255.255", &mut budget);
        assert_eq!(over, Err(IpListError::OverBudget("10.9.0.0-10.9.255.255".into())));
        assert_eq!(budget, MAX_ADDRESSES_PER_FILE - 65_536, "nothing is taken by a refused list");
    }
}
