//! The configuration file of `tarn serve` (`--config FILE` or `TARN_CONFIG`).
//!
//! A flat TOML table whose keys are the long flags of `tarn serve` with `-` written `_`
//! (`data_dir = "/var/lib/tarn"`, `flush_interval_secs = 10.0`, `auth = true`), so one
//! vocabulary serves the flags, the `TARN_*` variables and the file. It sits under them:
//! a flag beats its environment variable, which beats the file, which beats the built-in
//! default. Unknown keys and values of the wrong type are errors naming the file, so a
//! typo cannot silently fall back to a default. `deploy/tarn.toml` is the commented
//! example.

use std::ffi::OsString;
use std::path::Path;

use anyhow::{Context, bail};
use clap::parser::ValueSource;
use clap::{ArgMatches, CommandFactory, FromArgMatches};

use crate::cli::{Cli, Command};

/// Keys of the file that are not flags of `tarn serve`.
const NOT_IN_FILE: &[&str] = &["config", "help"];

/// The text of a TOML value as a flag value; `None` for a `false` switch (absent).
fn flag_value(key: &str, value: &toml::Value, switch: bool) -> anyhow::Result<Option<String>> {
    Ok(match value {
        toml::Value::Boolean(on) if switch => on.then(String::new),
        _ if switch => bail!("`{key}` is a switch: write true or false"),
        toml::Value::String(text) => Some(text.clone()),
        toml::Value::Integer(number) => Some(number.to_string()),
        toml::Value::Float(number) => Some(number.to_string()),
        toml::Value::Boolean(on) => Some(on.to_string()),
        toml::Value::Array(items) => {
            let mut parts = Vec::with_capacity(items.len());
            for item in items {
                match flag_value(key, item, false)? {
                    Some(text) => parts.push(text),
                    None => bail!("`{key}`: arrays hold plain values"),
                }
            }
            Some(parts.join(","))
        }
        toml::Value::Datetime(time) => Some(time.to_string()),
        toml::Value::Table(_) => bail!("`{key}` cannot be a table: the file is flat"),
    })
}

/// The `serve` arguments of `args` with the file's settings added wherever the command
/// line and the environment left the default.
fn with_file(
    args: &[OsString],
    matches: &ArgMatches,
    file: &Path,
) -> anyhow::Result<Vec<OsString>> {
    let text = std::fs::read_to_string(file)
        .with_context(|| format!("reading the configuration file {}", file.display()))?;
    let table: toml::Table = text
        .parse()
        .with_context(|| format!("parsing {}", file.display()))?;
    let command = Cli::command();
    let serve = command
        .find_subcommand("serve")
        .context("the serve command is defined")?;
    let mut extra: Vec<OsString> = Vec::new();
    for (key, value) in &table {
        let flag = serve
            .get_arguments()
            .find(|arg| arg.get_id().as_str() == key.as_str())
            .filter(|_| !NOT_IN_FILE.contains(&key.as_str()));
        let Some(flag) = flag else {
            bail!(
                "{}: unknown setting `{key}` (settings are the flags of `tarn serve` with _ for -)",
                file.display()
            );
        };
        let switch = !flag.get_action().takes_values();
        let value = flag_value(key, value, switch).with_context(|| file.display().to_string())?;
        let from_default = matches!(
            matches.value_source(key),
            None | Some(ValueSource::DefaultValue)
        );
        if !from_default {
            continue;
        }
        let long = flag
            .get_long()
            .with_context(|| format!("`{key}` has no long flag"))?;
        if let Some(value) = value {
            if switch {
                extra.push(format!("--{long}").into());
            } else {
                extra.push(format!("--{long}={value}").into());
            }
        }
    }
    let mut combined = args.to_vec();
    combined.extend(extra);
    Ok(combined)
}

/// Parses the command line, layering `tarn serve`'s configuration file under it.
pub fn parse(args: Vec<OsString>) -> anyhow::Result<Cli> {
    let matches = match Cli::command().try_get_matches_from(&args) {
        Ok(matches) => matches,
        Err(error) => error.exit(),
    };
    let cli = Cli::from_arg_matches(&matches).unwrap_or_else(|error| error.exit());
    let Command::Serve(serve) = &cli.command else {
        return Ok(cli);
    };
    let Some(file) = serve.config.clone() else {
        return Ok(cli);
    };
    let serve_matches = matches
        .subcommand_matches("serve")
        .context("serve arguments")?;
    let combined = with_file(&args, serve_matches, &file)?;
    Cli::try_parse_from_args(combined).with_context(|| format!("in {}", file.display()))
}

impl Cli {
    fn try_parse_from_args(args: Vec<OsString>) -> anyhow::Result<Cli> {
        let matches = Cli::command()
            .try_get_matches_from(args)
            .map_err(|error| anyhow::anyhow!("{}", error.render()))?;
        Cli::from_arg_matches(&matches).map_err(|error| anyhow::anyhow!("{}", error.render()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn serve_args(config: &str, argv: &[&str]) -> anyhow::Result<crate::cli::ServeArgs> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("tarn.toml");
        std::fs::write(&file, config)?;
        let mut args: Vec<OsString> = vec!["tarn".into(), "serve".into()];
        args.push(format!("--config={}", file.display()).into());
        args.extend(argv.iter().map(OsString::from));
        match parse(args)?.command {
            Command::Serve(serve) => Ok(*serve),
            _ => bail!("not serve"),
        }
    }

    #[test]
    fn the_file_fills_what_flags_leave_default() {
        let serve = serve_args(
            "flush_interval_secs = 2.5\notlp_grpc_port = 14317\nauth = true\n\
             data_dir = \"/tmp/x\"\nmaintenance_interval_secs = 0\n",
            &["--otlp-grpc-port", "24317"],
        )
        .unwrap();
        assert_eq!(serve.flush_interval_secs, 2.5);
        assert!(serve.auth);
        assert_eq!(serve.lake.data_dir, std::path::PathBuf::from("/tmp/x"));
        assert_eq!(serve.maintenance_interval_secs, 0.0);
        // The command line wins over the file.
        assert_eq!(serve.otlp_grpc_port, 24317);
    }

    #[test]
    fn unknown_keys_and_wrong_types_name_the_file() {
        let error = serve_args("flush_intreval_secs = 1\n", &[]).unwrap_err();
        assert!(
            format!("{error:#}").contains("unknown setting `flush_intreval_secs`"),
            "{error:#}"
        );
        let error = serve_args("otlp_grpc_port = \"many\"\n", &[]).unwrap_err();
        assert!(format!("{error:#}").contains("tarn.toml"), "{error:#}");
        let error = serve_args("auth = \"yes\"\n", &[]).unwrap_err();
        assert!(format!("{error:#}").contains("switch"), "{error:#}");
        let error = serve_args("[serve]\nlisten = \"0.0.0.0\"\n", &[]).unwrap_err();
        assert!(
            format!("{error:#}").contains("unknown setting"),
            "{error:#}"
        );
    }

    #[test]
    fn the_deploy_example_is_valid_and_complete() {
        let example = Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/tarn.toml");
        let text = std::fs::read_to_string(&example).unwrap();
        let table: toml::Table = text.parse().unwrap();
        let args: Vec<OsString> = vec![
            "tarn".into(),
            "serve".into(),
            format!("--config={}", example.display()).into(),
        ];
        let Command::Serve(serve) = parse(args).unwrap().command else {
            panic!("serve expected");
        };
        // Every setting the example sets took effect (spot checks of each kind).
        if let Some(toml::Value::Float(interval)) = table.get("flush_interval_secs") {
            assert_eq!(serve.flush_interval_secs, *interval);
        }
        if let Some(toml::Value::Integer(port)) = table.get("flightsql_port") {
            assert_eq!(i64::from(serve.flightsql_port), *port);
        }
        // Every flag of `tarn serve` is documented in the example, set or commented out.
        let command = Cli::command();
        let serve_command = command.find_subcommand("serve").unwrap();
        for arg in serve_command.get_arguments() {
            let id = arg.get_id().as_str();
            if NOT_IN_FILE.contains(&id) {
                continue;
            }
            assert!(
                text.contains(&format!("{id} =")),
                "deploy/tarn.toml does not mention `{id}`"
            );
        }
    }
}
