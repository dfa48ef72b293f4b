//! The metric definitions follow Prometheus conventions and stay in step
//! with what the code records.

use std::collections::BTreeSet;

use super::*;

fn snake_case(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        && !s.starts_with('_')
        && !s.ends_with('_')
        && !s.contains("__")
}

#[test]
fn names_follow_prometheus_conventions() {
    let mut seen = BTreeSet::new();
    for m in METRICS {
        assert!(seen.insert(m.name), "{} defined twice", m.name);
        assert!(m.name.starts_with("galley_"), "{}", m.name);
        assert!(snake_case(m.name), "{} is not snake_case", m.name);
        assert_eq!(
            m.kind == Kind::Counter,
            m.name.ends_with("_total"),
            "{}: `_total` on counters and only on counters",
            m.name
        );
        for suffix in ["_bucket", "_sum", "_count"] {
            assert!(
                !m.name.ends_with(suffix),
                "{} ends in a reserved suffix",
                m.name
            );
        }
        for unit in ["_ms", "_milliseconds", "_minutes", "_hours", "_kb", "_mb"] {
            assert!(!m.name.contains(unit), "{}: use base units", m.name);
        }
        if m.kind == Kind::Histogram {
            assert!(
                m.name.ends_with("_seconds") || m.name.ends_with("_events"),
                "{}: a histogram names its unit",
                m.name
            );
        }
        for label in m.labels {
            assert!(snake_case(label), "{}: label {label}", m.name);
            assert!(
                !["le", "quantile", "id"].contains(label),
                "{}: {label}",
                m.name
            );
            assert!(
                !label.ends_with("_id"),
                "{}: ids make labels unbounded",
                m.name
            );
        }
        assert!(!m.help.is_empty(), "{} has no help", m.name);
    }
}

#[test]
fn latency_buckets_span_milliseconds_to_tens_of_seconds() {
    assert!(LATENCY_BUCKETS_SECONDS.first().is_some_and(|b| *b <= 0.001));
    assert!(LATENCY_BUCKETS_SECONDS.last().is_some_and(|b| *b >= 30.0));
    assert!(LATENCY_BUCKETS_SECONDS.windows(2).all(|w| w[0] < w[1]));
}

#[test]
fn end_to_end_buckets_are_fine_enough_to_read_quantiles_from() {
    let b = END_TO_END_LATENCY_BUCKETS_SECONDS;
    assert!(b.first().is_some_and(|x| *x <= 0.001));
    assert!(b.last().is_some_and(|x| *x >= 60.0));
    // Up to three seconds no bucket is more than 1.5 times the one before.
    assert!(b
        .windows(2)
        .all(|w| w[0] < w[1] && (w[1] > 3.0 || w[1] / w[0] <= 1.5 + 1e-9)));
}

#[test]
fn quantiles_interpolate_within_their_bucket() {
    let cumulative = [(0.01, 50), (0.02, 90), (0.04, 100), (f64::INFINITY, 100)];
    assert!((histogram_quantile(&cumulative, 0.5) - 0.01).abs() < 1e-12);
    assert!((histogram_quantile(&cumulative, 0.7) - 0.015).abs() < 1e-12);
    assert!((histogram_quantile(&cumulative, 0.95) - 0.03).abs() < 1e-12);
    let beyond = [(0.01, 5), (f64::INFINITY, 10)];
    assert_eq!(histogram_quantile(&beyond, 0.99), 0.01);
}

#[test]
fn histogram_buckets_sum_over_label_sets_and_skip_other_metrics() {
    let text = "x_bucket{topic=\"a\",le=\"0.01\"} 3\n\
                x_bucket{topic=\"b\",le=\"0.01\"} 4\n\
                x_bucket{topic=\"a\",le=\"+Inf\"} 5\n\
                xy_bucket{topic=\"a\",le=\"0.01\"} 100\n\
                x_count{topic=\"a\"} 5\n";
    let b = histogram_buckets(text, "x").expect("parses");
    assert_eq!(b.len(), 2);
    assert_eq!(b.get(&BucketBound(0.01)), Some(&7));
    assert_eq!(b.get(&BucketBound(f64::INFINITY)), Some(&5));
}
