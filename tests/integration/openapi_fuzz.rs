//! An outside OpenAPI fuzzer against a real `galley run`: schemathesis
//! (from PyPI, installed pinned by `scripts/schemathesis` into a virtualenv
//! under the target directory) reads the live /openapi.json, generates valid
//! and invalid requests from it, and runs every check it has. A failure
//! means the document promises something the server does not do, or the
//! server enforces something the document does not say.

use std::process::Command;
use std::time::Duration;

use sha2::{Digest, Sha256};

use crate::support::process::GalleyProcess;
use crate::support::scenario::Scenario;

const FUZZ_TOKEN: &str = "fuzz-token-for-the-openapi-tests-0123";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn schemathesis_finds_nothing_with_every_check() {
    let mut scenario = Scenario::new("openapi_fuzz").await;
    let digest: String = Sha256::digest(FUZZ_TOKEN.as_bytes())
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    let tokens = format!("[{{name = \"fuzz\", sha256 = \"{digest}\"}}]");
    scenario.env.set("GALLEY_API__TOKENS", tokens);
    // The fuzzer's bursts are not what the rate limit is for.
    scenario.env.set("GALLEY_API__RATE_LIMIT_PER_SECOND", "0");
    let mut galley = GalleyProcess::spawn(&scenario.env, "openapi_fuzz");
    galley.wait_ready(Duration::from_secs(60)).await;
    // A few orders, so that valid requests find something to answer.
    let messages = scenario.generate(200, 5);
    scenario.produce(messages, 3_000).await;
    scenario.wait_caught_up(&mut [&mut galley]).await;

    let schema = format!("http://{}/openapi.json", galley.api);
    let auth = format!("Authorization: Bearer {FUZZ_TOKEN}");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/scripts/schemathesis");
    let settings = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/integration/schemathesis.toml"
    );
    // No example database, and a working directory of its own for whatever
    // it caches: each run starts from the seed alone, and the work tree
    // stays clean.
    let workdir = tempfile::tempdir().expect("a working directory");
    let cwd = workdir.path().to_path_buf();
    let run = tokio::task::spawn_blocking(move || {
        Command::new(script)
            .current_dir(cwd)
            .args(["--config-file", settings])
            .args(["run", &schema, "--checks", "all", "-H", &auth])
            .args(["--max-examples", "40", "--seed", "12", "--workers", "1"])
            .args(["--request-timeout", "10", "--no-color"])
            .args(["--generation-database", "none"])
            .output()
    })
    .await
    .expect("the fuzzer's task")
    .expect("run scripts/schemathesis (needs python3 with venv, and PyPI the first time)");
    let text = format!(
        "{}\n{}",
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        run.status.success(),
        "schemathesis found failures (exit {:?}):\n{text}\n\ngalley log:\n{}",
        run.status.code(),
        galley.log_tail(20)
    );
    let summary: Vec<&str> = text
        .lines()
        .filter(|l| l.contains("passed") || l.contains("Test cases"))
        .collect();
    println!("[openapi_fuzz] {}", summary.join(" | "));
}
