//! Levels, and the run-time filter that decides which call sites record.

use std::fmt;
use std::str::FromStr;

/// Severity of a log entry (the numbers are the wire values).
#[repr(u8)]
#[derive(Clone, Copy, Debug, Hash, Eq, PartialEq, Ord, PartialOrd)]
pub enum Level {
    /// Crashes, panics.
    Fatal = 1,
    /// Very serious errors.
    Error = 2,
    /// Hazardous situations.
    Warn = 3,
    /// Useful information.
    Info = 4,
    /// Lower priority information.
    Debug = 5,
    /// Very verbose information.
    Trace = 6,
}

impl Level {
    /// The wire value (1 = fatal ... 6 = trace).
    pub const fn value(self) -> u8 {
        self as u8
    }

    /// From the wire value.
    pub const fn from_value(value: u8) -> Option<Self> {
        match value {
            1 => Some(Self::Fatal),
            2 => Some(Self::Error),
            3 => Some(Self::Warn),
            4 => Some(Self::Info),
            5 => Some(Self::Debug),
            6 => Some(Self::Trace),
            _ => None,
        }
    }

    /// Lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Fatal => "fatal",
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }

    /// Level of detail written in span and metric descriptors (1 = min, 2 = med, 3 = max).
    pub(crate) const fn lod(self) -> u32 {
        match self {
            Self::Fatal | Self::Error | Self::Warn | Self::Info => 1,
            Self::Debug => 2,
            Self::Trace => 3,
        }
    }
}

impl fmt::Display for Level {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.pad(self.as_str())
    }
}

/// The most verbose level let through (`Off` lets nothing through).
#[repr(u8)]
#[derive(Clone, Copy, Debug, Hash, Eq, PartialEq, Ord, PartialOrd)]
pub enum LevelFilter {
    /// Nothing.
    Off = 0,
    /// Fatal only.
    Fatal = 1,
    /// Error and above.
    Error = 2,
    /// Warn and above.
    Warn = 3,
    /// Info and above.
    Info = 4,
    /// Debug and above.
    Debug = 5,
    /// Everything.
    Trace = 6,
}

impl LevelFilter {
    /// Whether `level` passes.
    pub const fn allows(self, level: Level) -> bool {
        level as u8 <= self as u8
    }

    /// Lower-case name.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Off => "off",
            Self::Fatal => "fatal",
            Self::Error => "error",
            Self::Warn => "warn",
            Self::Info => "info",
            Self::Debug => "debug",
            Self::Trace => "trace",
        }
    }
}

impl From<Level> for LevelFilter {
    fn from(level: Level) -> Self {
        match level {
            Level::Fatal => Self::Fatal,
            Level::Error => Self::Error,
            Level::Warn => Self::Warn,
            Level::Info => Self::Info,
            Level::Debug => Self::Debug,
            Level::Trace => Self::Trace,
        }
    }
}

/// A level name that is not one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParseLevelError(pub String);

impl fmt::Display for ParseLevelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "`{}` is not a level (off, fatal, error, warn, info, debug, trace)",
            self.0
        )
    }
}

impl std::error::Error for ParseLevelError {}

impl FromStr for LevelFilter {
    type Err = ParseLevelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim().to_ascii_lowercase().as_str() {
            "off" | "none" => Ok(Self::Off),
            "fatal" => Ok(Self::Fatal),
            "error" => Ok(Self::Error),
            "warn" | "warning" => Ok(Self::Warn),
            "info" => Ok(Self::Info),
            "debug" => Ok(Self::Debug),
            "trace" | "all" => Ok(Self::Trace),
            _ => Err(ParseLevelError(s.to_owned())),
        }
    }
}

/// Which call sites record: a default level and per-target overrides, matched by the
/// longest prefix of the target (`tarn_gateway::ingest` matches `tarn_gateway`).
///
/// Spans and metrics have levels too (`Info` unless given), so one filter covers all kinds.
///
/// Parsed from `env_logger`-style text: `info,my_crate::db=debug,hyper=off`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    default: LevelFilter,
    /// Sorted longest prefix first.
    targets: Vec<(String, LevelFilter)>,
}

impl Default for Filter {
    fn default() -> Self {
        Self::new(LevelFilter::Info)
    }
}

impl Filter {
    /// Everything up to `default`.
    pub fn new(default: LevelFilter) -> Self {
        Self {
            default,
            targets: Vec::new(),
        }
    }

    /// Adds (or replaces) the level of the targets starting with `prefix`.
    #[must_use]
    pub fn target(mut self, prefix: impl Into<String>, level: LevelFilter) -> Self {
        let prefix = prefix.into();
        self.targets.retain(|(p, _)| *p != prefix);
        self.targets.push((prefix, level));
        self.targets
            .sort_by_key(|(prefix, _)| std::cmp::Reverse(prefix.len()));
        self
    }

    /// The default level.
    pub fn default_level(&self) -> LevelFilter {
        self.default
    }

    /// The level that applies to `target`.
    pub fn level_for(&self, target: &str) -> LevelFilter {
        self.targets
            .iter()
            .find(|(prefix, _)| {
                target.starts_with(prefix.as_str())
                    && (target.len() == prefix.len()
                        || target[prefix.len()..].starts_with("::")
                        || prefix.ends_with("::"))
            })
            .map_or(self.default, |(_, level)| *level)
    }

    /// Whether an event of `level` at `target` passes.
    pub fn enabled(&self, level: Level, target: &str) -> bool {
        self.level_for(target).allows(level)
    }

    /// The most verbose level any target lets through.
    pub fn max_level(&self) -> LevelFilter {
        self.targets
            .iter()
            .map(|(_, l)| *l)
            .fold(self.default, std::cmp::max)
    }
}

impl FromStr for Filter {
    type Err = ParseLevelError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut filter = Filter::new(LevelFilter::Info);
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            match part.split_once('=') {
                Some((target, level)) => {
                    filter = filter.target(target.trim(), level.parse()?);
                }
                None => filter.default = part.parse()?,
            }
        }
        Ok(filter)
    }
}

impl fmt::Display for Filter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.default.as_str())?;
        for (target, level) in self.targets.iter().rev() {
            write!(f, ",{target}={}", level.as_str())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_parses_and_matches_longest_prefix() {
        let f: Filter = "warn, app=debug, app::db=off ,other::x=trace"
            .parse()
            .expect("valid filter");
        assert_eq!(f.level_for("unrelated"), LevelFilter::Warn);
        assert_eq!(f.level_for("app"), LevelFilter::Debug);
        assert_eq!(f.level_for("app::web"), LevelFilter::Debug);
        assert_eq!(f.level_for("app::db"), LevelFilter::Off);
        assert_eq!(f.level_for("app::db::pool"), LevelFilter::Off);
        assert_eq!(f.level_for("application"), LevelFilter::Warn);
        assert!(f.enabled(Level::Trace, "other::x"));
        assert!(!f.enabled(Level::Info, "other"));
        assert_eq!(f.max_level(), LevelFilter::Trace);
        assert!("nope".parse::<Filter>().is_err());
        let round: Filter = f.to_string().parse().expect("round trip");
        assert_eq!(round, f);
    }
}
