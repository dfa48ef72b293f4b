//! Unit tests of loading, overriding and validating the configuration.

use strum::VariantArray;

use super::*;

fn env(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

#[test]
fn defaults_are_valid() {
    Config::default().validate().expect("defaults validate");
}

#[test]
fn shipped_config_file_parses_and_validates() {
    let text = include_str!("../../config/galley.toml");
    Config::from_sources(text, None, &BTreeMap::new()).expect("config/galley.toml is valid");
}

#[test]
fn env_overrides_file_values_with_the_right_type() {
    let text = "[kafka]\nbrokers = \"a:1\"\n[pipeline]\nbatch_max_events = 10\n";
    let cfg = Config::from_sources(
        text,
        None,
        &env(&[
            ("GALLEY_KAFKA__BROKERS", "b:2"),
            ("GALLEY_PIPELINE__BATCH_MAX_EVENTS", "77"),
            ("GALLEY_PIPELINE__BATCH_LINGER", "5ms"),
            ("GALLEY_CQL__CONTACT_POINTS", "h1:9042, h2:9042"),
            ("GALLEY_CONFIG", "ignored-here.toml"),
            ("OTHER", "x"),
        ]),
    )
    .expect("valid");
    assert_eq!(cfg.kafka.brokers, "b:2");
    assert_eq!(cfg.pipeline.batch_max_events, 77);
    assert_eq!(cfg.pipeline.batch_linger, Duration::from_millis(5));
    assert_eq!(cfg.cql.contact_points, vec!["h1:9042", "h2:9042"]);
}

#[test]
fn unknown_file_key_is_rejected_with_its_path() {
    let err = Config::from_sources("[kafka]\nbrokrs = \"x\"\n", None, &BTreeMap::new())
        .expect_err("unknown key");
    let text = err.to_string();
    assert!(text.contains("kafka"), "{text}");
    assert!(text.contains("brokrs"), "{text}");
}

#[test]
fn unknown_env_key_is_rejected_with_its_name() {
    let err = Config::from_sources("", None, &env(&[("GALLEY_KAFKA__BROKRS", "x")]))
        .expect_err("unknown env key");
    assert!(err.to_string().contains("GALLEY_KAFKA__BROKRS"), "{err}");
    let err = Config::from_sources("", None, &env(&[("GALLEY_KAFKA_BROKERS", "x")]))
        .expect_err("single underscore");
    assert!(err.to_string().contains("__"), "{err}");
}

#[test]
fn bad_values_name_the_key() {
    let cases = [
        (
            "[pipeline]\nbatch_max_events = 0\n",
            "pipeline.batch_max_events",
        ),
        (
            "[shop]\nrow_cache_max_bytes = 10\n",
            "shop.row_cache_max_bytes",
        ),
        (
            "[pipeline]\nbatch_max_bytes = 10\n",
            "pipeline.batch_max_bytes",
        ),
        (
            "[kafka]\nconsumer_queue_max_bytes = 4096\n",
            "kafka.consumer_queue_max_bytes",
        ),
        ("[cql]\nkeyspace = \"1bad\"\n", "cql.keyspace"),
        ("[cql]\nconsistency = \"most\"\n", "cql.consistency"),
        ("[admin]\nlisten = \"127.0.0.1:8080\"\n", "admin.listen"),
        ("[api]\nlisten = \"nowhere\"\n", "api.listen"),
        ("[topics]\nresults = \"shop.orders\"\n", "topics.results"),
        (
            "[pipeline]\nbatch_linger = \"soon\"\n",
            "pipeline.batch_linger",
        ),
        ("[log]\nformat = \"xml\"\n", "log.format"),
        // Larger than what fits in a dead letter with the default producer.
        (
            "[pipeline]\nmax_event_bytes = 1048576\n",
            "pipeline.max_event_bytes",
        ),
        (
            "[kafka]\nmessage_max_bytes = 900000\n[pipeline]\nmax_event_bytes = 900000\n",
            "pipeline.max_event_bytes",
        ),
        (
            "[kafka]\nmessage_max_bytes = 1000\n",
            "kafka.message_max_bytes",
        ),
        (
            "[kafka]\nsecurity_protocol = \"tls\"\n",
            "kafka.security_protocol",
        ),
        ("[api]\nmax_page_size = 0\n", "api.max_page_size"),
        (
            "[api]\nmax_page_size = 10\ndefault_page_size = 11\n",
            "api.default_page_size",
        ),
        ("[api]\nmax_time_window = \"0s\"\n", "api.max_time_window"),
        ("[api]\ncursor_key = \"too-short\"\n", "api.cursor_key"),
        ("[api]\ncursor_ttl = \"0s\"\n", "api.cursor_ttl"),
        ("[api]\ncursor_ttl = \"30days\"\n", "api.cursor_ttl"),
        (
            "[api]\nheader_read_timeout = \"0s\"\n",
            "api.header_read_timeout",
        ),
        (
            "[api]\nheader_read_timeout = \"1h\"\n",
            "api.header_read_timeout",
        ),
        ("[api]\nrequest_timeout = \"1ms\"\n", "api.request_timeout"),
        ("[api]\nmax_connections = 0\n", "api.max_connections"),
        ("[admin]\nmax_connections = 0\n", "admin.max_connections"),
        (
            "[api]\nunauthenticated_rate_limit_burst = 0\n",
            "api.unauthenticated_rate_limit_burst",
        ),
        (
            "[api]\nunauthenticated_max_clients = 0\n",
            "api.unauthenticated_max_clients",
        ),
        (
            "[api]\ncors_allowed_origins = [\"*\"]\n",
            "api.cors_allowed_origins",
        ),
        (
            "[api]\ncors_allowed_origins = [\"https://a.example/path\"]\n",
            "api.cors_allowed_origins",
        ),
        (
            "[[api.tokens]]\nname = \"g\"\nsha256 = \"plain-text-token\"\n",
            "api.tokens[0].sha256",
        ),
        (
            "[[api.tokens]]\nname = \"bad name\"\nsha256 = \"\"\n",
            "api.tokens[0].name",
        ),
    ];
    for (text, key) in cases {
        let err = Config::from_sources(text, None, &BTreeMap::new()).expect_err(text);
        assert!(err.to_string().contains(key), "{text}: {err}");
    }
}

#[test]
fn api_tokens_come_from_the_file_or_an_inline_array_in_the_environment() {
    let digest = "ab".repeat(32);
    let text = format!(
        "[api]\ncors_allowed_origins = [\"https://grafana.example.com\"]\n\
         [[api.tokens]]\nname = \"grafana\"\nsha256 = \"{digest}\"\nrate_limit_burst = 5\n"
    );
    let cfg = Config::from_sources(&text, None, &BTreeMap::new()).expect("valid");
    assert_eq!(cfg.api.tokens.len(), 1);
    assert_eq!(cfg.api.tokens[0].digest(), Some([0xab; 32]));
    assert_eq!(cfg.api.tokens[0].rate_limit_burst, Some(5));

    let other = "cd".repeat(32);
    let inline = format!(
        "[{{name = \"a\", sha256 = \"{digest}\"}}, \
         {{name = \"b\", sha256 = \"{other}\", rate_limit_per_second = 1}}]"
    );
    let cfg = Config::from_sources(
        &text,
        None,
        &env(&[
            ("GALLEY_API__TOKENS", inline.as_str()),
            ("GALLEY_API__CORS_ALLOWED_ORIGINS", "http://localhost:3000"),
        ]),
    )
    .expect("valid");
    let names: Vec<&str> = cfg.api.tokens.iter().map(|t| t.name.as_str()).collect();
    assert_eq!(names, ["a", "b"]);
    assert_eq!(cfg.api.tokens[1].rate_limit_per_second, Some(1));
    assert_eq!(cfg.api.cors_allowed_origins, ["http://localhost:3000"]);

    let twice = format!(
        "[{{name = \"a\", sha256 = \"{digest}\"}}, {{name = \"b\", sha256 = \"{digest}\"}}]"
    );
    let err = Config::from_sources("", None, &env(&[("GALLEY_API__TOKENS", twice.as_str())]))
        .expect_err("one digest, two names");
    assert!(err.to_string().contains("api.tokens[1].sha256"), "{err}");
}

#[test]
fn secrets_do_not_show_in_debug_output() {
    let text = "[cql]\npassword = \"hunter2\"\n[kafka]\nsasl_password = \"s3cret\"\n";
    let cfg = Config::from_sources(text, None, &BTreeMap::new()).expect("valid");
    let shown = format!("{cfg:?}");
    assert!(
        !shown.contains("hunter2") && !shown.contains("s3cret"),
        "{shown}"
    );
    assert_eq!(cfg.cql.password.expose(), "hunter2");
}

fn spellings<T: VariantArray + AsRef<str>>() -> Vec<&'static str> {
    T::VARIANTS.iter().map(AsRef::as_ref).collect()
}

/// Credentials that a SASL protocol requires, so that every protocol validates.
const SASL_CREDENTIALS: &str = "sasl_mechanism = \"PLAIN\"\nsasl_username = \"galley\"\n";

#[test]
fn closed_sets_accept_exactly_the_documented_spellings() {
    assert_eq!(
        spellings::<SecurityProtocol>(),
        ["plaintext", "ssl", "sasl_plaintext", "sasl_ssl"]
    );
    assert_eq!(
        spellings::<CqlConsistency>(),
        ["local_quorum", "quorum", "all"]
    );
    assert_eq!(spellings::<LogFormat>(), ["text", "json"]);
}

#[test]
fn every_security_protocol_spelling_parses() {
    for &protocol in SecurityProtocol::VARIANTS {
        let text = format!("[kafka]\nsecurity_protocol = \"{protocol}\"\n{SASL_CREDENTIALS}");
        let cfg = Config::from_sources(&text, None, &BTreeMap::new()).expect(&text);
        assert_eq!(cfg.kafka.security_protocol, protocol, "{text}");
    }
    // Upper case was never accepted; librdkafka's own spelling is not ours.
    let err = Config::from_sources(
        "[kafka]\nsecurity_protocol = \"PLAINTEXT\"\n",
        None,
        &BTreeMap::new(),
    )
    .expect_err("upper case protocol");
    assert!(err.to_string().contains("kafka.security_protocol"), "{err}");
}

#[test]
fn a_sasl_protocol_needs_its_mechanism_and_username() {
    let err = Config::from_sources(
        "[kafka]\nsecurity_protocol = \"sasl_ssl\"\n",
        None,
        &BTreeMap::new(),
    )
    .expect_err("no SASL mechanism");
    assert!(err.to_string().contains("kafka.sasl_mechanism"), "{err}");
    assert!(SecurityProtocol::SaslPlaintext.uses_sasl() && SecurityProtocol::SaslSsl.uses_sasl());
    assert!(!SecurityProtocol::Plaintext.uses_sasl() && !SecurityProtocol::Ssl.uses_sasl());
}

#[test]
fn every_consistency_spelling_parses_in_any_letter_case() {
    for &level in CqlConsistency::VARIANTS {
        let lower = level.as_ref().to_string();
        for spelling in [lower.clone(), lower.to_ascii_uppercase()] {
            let text = format!("[cql]\nconsistency = \"{spelling}\"\nlocal_datacenter = \"dc1\"\n");
            let cfg = Config::from_sources(&text, None, &BTreeMap::new()).expect(&text);
            assert_eq!(cfg.cql.consistency, level, "{text}");
        }
    }
    let cfg = Config::from_sources(
        "[cql]\nconsistency = \"Local_Quorum\"\nlocal_datacenter = \"dc1\"\n",
        None,
        &BTreeMap::new(),
    )
    .expect("mixed case");
    assert_eq!(cfg.cql.consistency, CqlConsistency::LocalQuorum);
}

#[test]
fn every_log_format_spelling_parses() {
    for &format in LogFormat::VARIANTS {
        let text = format!("[log]\nformat = \"{format}\"\n");
        let cfg = Config::from_sources(&text, None, &BTreeMap::new()).expect(&text);
        assert_eq!(cfg.log.format, format, "{text}");
    }
}

#[test]
fn an_unknown_closed_set_value_names_the_key_and_the_accepted_values() {
    let cases = [
        (
            "[kafka]\nsecurity_protocol = \"tls\"\n",
            "kafka.security_protocol",
            "plaintext, ssl, sasl_plaintext, sasl_ssl",
        ),
        (
            "[cql]\nconsistency = \"most\"\n",
            "cql.consistency",
            "local_quorum, quorum, all",
        ),
        ("[log]\nformat = \"xml\"\n", "log.format", "text, json"),
    ];
    for (text, key, accepted) in cases {
        let err = Config::from_sources(text, None, &BTreeMap::new()).expect_err(text);
        let shown = err.to_string();
        assert!(
            matches!(&err, ConfigError::Invalid { key: k, .. } if k == key),
            "{text}: {shown}"
        );
        assert!(shown.contains(accepted), "{text}: {shown}");
    }
}

#[test]
fn closed_sets_are_overridden_from_the_environment() {
    let cfg = Config::from_sources(
        "",
        None,
        &env(&[
            ("GALLEY_CQL__CONSISTENCY", "quorum"),
            ("GALLEY_KAFKA__SECURITY_PROTOCOL", "sasl_ssl"),
            ("GALLEY_KAFKA__SASL_MECHANISM", "SCRAM-SHA-512"),
            ("GALLEY_KAFKA__SASL_USERNAME", "galley"),
            ("GALLEY_LOG__FORMAT", "json"),
        ]),
    )
    .expect("valid");
    assert_eq!(cfg.cql.consistency, CqlConsistency::Quorum);
    assert_eq!(cfg.kafka.security_protocol, SecurityProtocol::SaslSsl);
    assert_eq!(cfg.log.format, LogFormat::Json);

    let cfg = Config::from_sources(
        "[cql]\nconsistency = \"all\"\n",
        None,
        &env(&[("GALLEY_CQL__CONSISTENCY", "QUORUM")]),
    )
    .expect("the environment wins over the file, in any case");
    assert_eq!(cfg.cql.consistency, CqlConsistency::Quorum);
}

#[test]
fn a_bad_closed_set_value_in_the_environment_names_the_variable_and_the_key() {
    let cases = [
        ("GALLEY_CQL__CONSISTENCY", "most", "cql.consistency"),
        (
            "GALLEY_KAFKA__SECURITY_PROTOCOL",
            "tls",
            "kafka.security_protocol",
        ),
        ("GALLEY_LOG__FORMAT", "xml", "log.format"),
    ];
    for (var, value, key) in cases {
        let err = Config::from_sources("", None, &env(&[(var, value)])).expect_err(var);
        let shown = err.to_string();
        assert!(
            matches!(&err, ConfigError::Env { var: v, .. } if v == var),
            "{var}: {shown}"
        );
        assert!(
            shown.contains(key) && shown.contains(value),
            "{var}: {shown}"
        );
    }
}

#[test]
fn a_bad_value_inside_an_overridden_array_blames_its_variable() {
    let err = Config::from_sources(
        "",
        None,
        &env(&[("GALLEY_API__TOKENS", "[{name = \"a\", sha256 = 5}]")]),
    )
    .expect_err("a number where a digest belongs");
    let shown = err.to_string();
    assert!(
        matches!(&err, ConfigError::Env { var, .. } if var == "GALLEY_API__TOKENS"),
        "{shown}"
    );
    assert!(shown.contains("api.tokens[0].sha256"), "{shown}");
}

#[test]
fn check_config_shows_closed_sets_as_the_file_spells_them() {
    let shown = format!("{:#?}", Config::default());
    for expected in [
        "security_protocol: \"plaintext\"",
        "consistency: \"quorum\"",
        "format: \"text\"",
    ] {
        assert!(shown.contains(expected), "{expected} in {shown}");
    }
    let tree = toml::Value::try_from(Config::default()).expect("serializes");
    assert_eq!(tree["cql"]["consistency"].as_str(), Some("quorum"));
    assert_eq!(
        tree["kafka"]["security_protocol"].as_str(),
        Some("plaintext")
    );
    assert_eq!(tree["log"]["format"].as_str(), Some("text"));
}

#[test]
fn the_cursor_key_is_a_secret() {
    let key = "a-cursor-key-of-at-least-32-bytes-0123456789";
    let cfg = Config::from_sources("", None, &env(&[("GALLEY_API__CURSOR_KEY", key)]))
        .expect("a long enough key");
    assert_eq!(cfg.api.cursor_key.expose(), key);
    assert!(!format!("{cfg:?}").contains(key), "Debug shows the key");
    assert_eq!(cfg.api.cursor_ttl, std::time::Duration::from_secs(900));
}

/// A read at one/local_one can miss the previous owner's last write after a
/// handover; the new owner would then write a stale state with a newer
/// timestamp. Such levels must not start.
#[test]
fn consistency_levels_that_can_lose_updates_are_rejected_naming_the_key() {
    for weak in ["one", "local_one", "ONE", "Local_One"] {
        let text = format!("[cql]\nconsistency = \"{weak}\"\n");
        let err = Config::from_sources(&text, None, &BTreeMap::new()).expect_err(&text);
        let shown = err.to_string();
        assert!(
            matches!(&err, ConfigError::Invalid { key, .. } if key == "cql.consistency"),
            "{text}: {shown}"
        );
        assert!(shown.contains("quorum"), "{text}: {shown}");

        let err = Config::from_sources("", None, &env(&[("GALLEY_CQL__CONSISTENCY", weak)]))
            .expect_err(weak);
        let shown = err.to_string();
        assert!(
            matches!(&err, ConfigError::Env { var, .. } if var == "GALLEY_CQL__CONSISTENCY"),
            "{weak}: {shown}"
        );
        assert!(shown.contains("cql.consistency"), "{weak}: {shown}");
    }
}

/// local_quorum overlaps only within one datacenter: every process must
/// name the same one, or two owners may read and write in different ones.
#[test]
fn local_quorum_needs_a_local_datacenter() {
    let err = Config::from_sources(
        "[cql]\nconsistency = \"local_quorum\"\n",
        None,
        &BTreeMap::new(),
    )
    .expect_err("local_quorum without a datacenter");
    assert!(
        matches!(&err, ConfigError::Invalid { key, .. } if key == "cql.local_datacenter"),
        "{err}"
    );
    let cfg = Config::from_sources(
        "[cql]\nconsistency = \"local_quorum\"\nlocal_datacenter = \"dc1\"\n",
        None,
        &BTreeMap::new(),
    )
    .expect("local_quorum with a datacenter");
    assert_eq!(cfg.cql.consistency, CqlConsistency::LocalQuorum);
    for level in ["quorum", "all"] {
        let text = format!("[cql]\nconsistency = \"{level}\"\n");
        Config::from_sources(&text, None, &BTreeMap::new()).expect(&text);
    }
}
