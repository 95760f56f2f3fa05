//! `zimage`: the gateway binary. Parses the command line, starts logging, and hands over to the library.

use anyhow::Context as _;
use clap::Parser as _;
use zimage::config::{Cli, Command};

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    zimage::telemetry::init();
    match cli.command {
        Command::Serve(config) => {
            zimage::site_bundle::check(&config.site_root, config.allow_missing_bundle)?;
            let listener = tokio::net::TcpListener::bind(config.listen)
                .await
                .with_context(|| format!("cannot listen on {}", config.listen))?;
            zimage::serve(config, listener, zimage::shutdown::signal()).await
        }
        Command::Models { action } => zimage::models::run(action).await,
        Command::Bench(config) => zimage::bench::run(config).await,
        Command::Generate(config) => {
            let status = zimage::cli::generate::run(config).await;
            std::process::exit(i32::from(status))
        }
        Command::Backup(config) => {
            let report = zimage::backup::backup(config.data_dir, config.dir.clone()).await?;
            let say = zimage::i18n::Report::of(zimage::config::terminal_language());
            println!(
                "{}",
                (say.backed_up)(
                    report.records,
                    &config.dir.display().to_string(),
                    report.images_copied,
                    report.images_kept,
                    report.images_removed
                )
            );
            Ok(())
        }
        Command::Restore(config) => {
            let report = zimage::backup::restore(config.dir, config.data_dir.clone()).await?;
            let say = zimage::i18n::Report::of(zimage::config::terminal_language());
            println!(
                "{}",
                (say.restored)(report.records, &config.data_dir.display().to_string())
            );
            Ok(())
        }
    }
}
