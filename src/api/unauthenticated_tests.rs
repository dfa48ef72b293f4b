use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::time::{Duration, Instant};

use super::*;

const LIMIT: RateLimit = RateLimit {
    per_second: 1,
    burst: 3,
};

fn v4(last: u8) -> IpAddr {
    IpAddr::V4(Ipv4Addr::new(192, 0, 2, last))
}

#[test]
fn an_ip_is_refused_after_its_burst_of_failures_until_it_refills() {
    let limiter = FailureLimiter::new(LIMIT, 100);
    let t0 = Instant::now();
    for _ in 0..3 {
        assert_eq!(limiter.check(v4(1), t0), Ok(()));
        limiter.charge(v4(1), t0);
    }
    assert_eq!(limiter.check(v4(1), t0), Err(1));
    assert_eq!(
        limiter.check(v4(2), t0),
        Ok(()),
        "another IP is not affected"
    );
    assert_eq!(limiter.check(v4(1), t0 + Duration::from_secs(1)), Ok(()));
}

#[test]
fn ipv6_clients_are_keyed_by_their_64() {
    let a: IpAddr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
    let b: IpAddr = "2001:db8:1:2:bbbb::2".parse().expect("ip");
    let other: IpAddr = "2001:db8:1:3::1".parse().expect("ip");
    assert_eq!(client_key(a), client_key(b));
    assert_ne!(client_key(a), client_key(other));
    let mapped = IpAddr::V6(Ipv4Addr::new(192, 0, 2, 1).to_ipv6_mapped());
    assert_eq!(client_key(mapped), v4(1));
    assert_eq!(
        client_key(IpAddr::V6(Ipv6Addr::LOCALHOST)),
        "::".parse::<IpAddr>().expect("ip")
    );
}

#[test]
fn many_ips_never_grow_the_table_past_its_bound_and_share_the_overflow() {
    let limiter = FailureLimiter::new(LIMIT, 10);
    let t0 = Instant::now();
    for i in 0..1_000u32 {
        let ip = IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + i));
        if limiter.check(ip, t0).is_ok() {
            limiter.charge(ip, t0);
        }
    }
    assert_eq!(limiter.tracked(), 10);
    // The overflow bucket was drained by the untracked IPs: a new one is refused.
    let fresh = IpAddr::V4(Ipv4Addr::new(10, 9, 9, 9));
    assert!(limiter.check(fresh, t0).is_err());
    // Once the tracked buckets refill they are forgotten, making room again.
    let later = t0 + Duration::from_secs(10);
    limiter.charge(fresh, later);
    assert_eq!(limiter.tracked(), 1);
}

#[test]
fn a_rate_of_zero_turns_the_limit_off() {
    let off = RateLimit {
        per_second: 0,
        burst: 1,
    };
    let limiter = FailureLimiter::new(off, 1);
    let t0 = Instant::now();
    for _ in 0..100 {
        limiter.charge(v4(1), t0);
        assert_eq!(limiter.check(v4(1), t0), Ok(()));
    }
    assert_eq!(limiter.tracked(), 0);
}
