//! The `galley` command: parses the command line and hands over to the library.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use galley::{cli, config::Config, telemetry};

/// jemalloc serves every allocation of the process: Rust's through this,
/// librdkafka's (linked in statically) because the crate replaces `malloc`
/// itself. Against glibc's malloc it cut galley's CPU per event by a
/// third in `make bench` (README "Performance").
#[global_allocator]
static ALLOCATOR: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// jemalloc's options, read at its first allocation (`MALLOC_CONF` in the
/// environment adds to them): two arenas and pages returned after a second
/// unused, because its defaults (an arena per thread group, ten seconds)
/// held a quarter more memory at peak.
#[export_name = "malloc_conf"]
#[allow(non_upper_case_globals)]
pub static malloc_conf: &[u8; 70] =
    b"narenas:2,dirty_decay_ms:1000,muzzy_decay_ms:0,background_thread:true\0";

#[derive(Parser)]
#[command(
    name = "galley",
    version,
    about = "Kafka in, exactly-once projections, result events out"
)]
struct Cli {
    /// Config file (default: $GALLEY_CONFIG, else config/galley.toml if present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Consume, apply, publish and serve until SIGTERM or SIGINT.
    Run(cli::RunArgs),
    /// Create the keyspace and apply CQL migrations (idempotent).
    Migrate,
    /// Create galley's topics if they do not exist.
    CreateTopics(cli::CreateTopicsArgs),
    /// Generate and send a realistic stream of shop events.
    Produce(cli::ProduceArgs),
    /// Reset the consumer group to the earliest offsets of the input topics
    /// (refused while any `galley run` of the group is active).
    Replay,
    /// Empty every table derived from the input topics and reset the group
    /// to the earliest offsets, so the next run rebuilds every row (refused
    /// while any `galley run` of the group is active).
    Rebuild,
    /// Check the config and print it with secrets redacted.
    CheckConfig,
    /// Read an API token on stdin and print the SHA-256 that api.tokens takes.
    HashToken,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    // Needs no configuration: it only turns a token into its digest.
    if let Command::HashToken = cli.command {
        return exit_code(cli::print_token_digest());
    }
    let config = match Config::load(cli.config.as_deref()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("galley: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    telemetry::init_logging(&config.log);
    exit_code(match cli.command {
        Command::Run(args) => cli::run(config, args),
        Command::Migrate => cli::migrate(config),
        Command::CreateTopics(args) => cli::create_topics(config, args),
        Command::Produce(args) => cli::produce(config, args),
        Command::Replay => cli::replay(config),
        Command::Rebuild => cli::rebuild(config),
        Command::CheckConfig => cli::check_config(&config),
        Command::HashToken => Ok(()),
    })
}

fn exit_code(result: anyhow::Result<()>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("galley: {e:#}");
            ExitCode::FAILURE
        }
    }
}
