//! The README's configuration tables are the documentation people read: every option `zimage` reads
//! from the environment must be in them, with its command-line spelling.

use clap::CommandFactory as _;
use zimage::config::Cli;

fn options(command: &clap::Command, found: &mut Vec<(String, String)>) {
    for argument in command.get_arguments() {
        if let (Some(long), Some(env)) = (argument.get_long(), argument.get_env()) {
            found.push((format!("--{long}"), env.to_string_lossy().into_owned()));
        }
    }
    for subcommand in command.get_subcommands() {
        options(subcommand, found);
    }
}

#[test]
fn every_environment_variable_is_documented_in_the_readme_with_its_option() {
    let readme = include_str!("../../README.md");
    let mut found = Vec::new();
    options(&Cli::command(), &mut found);
    assert!(found.len() > 10, "{found:?}");
    for (long, env) in found {
        let row = readme
            .lines()
            .find(|line| line.starts_with('|') && line.contains(&format!("`{env}`")))
            .unwrap_or_else(|| panic!("README.md has no table row for {env}"));
        assert!(
            row.contains(&format!("`{long}`")),
            "the README row of {env} should name {long}: {row}"
        );
    }
}
