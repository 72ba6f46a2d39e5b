//! Third-party tools the tests run: pinned Python virtualenvs and npm projects from
//! `compat-tests/`, built once and cached by the fingerprint of what they are built from.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

pub fn compat_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../compat-tests")
        .join(name)
}

fn cache_dir() -> PathBuf {
    let home = std::env::var("HOME").unwrap_or_else(|_| "/tmp".into());
    Path::new(&home).join(".cache/tarn/compat")
}

/// FNV-1a of some files: names a cached environment after what it was built from.
fn fingerprint(files: &[PathBuf]) -> String {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for file in files {
        for byte in std::fs::read(file).unwrap() {
            hash ^= u64::from(byte);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{hash:016x}")
}

/// Whether a tool runs; when it does not, the test fails under CI=true and is skipped
/// (with the reason printed) elsewhere.
pub fn have(tool: &str, version_arg: &str) -> bool {
    let found = Command::new(tool)
        .arg(version_arg)
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("{tool} is required under CI=true");
        }
        eprintln!("SKIPPED: {tool} is not installed");
    }
    found
}

/// Runs a command that must succeed; returns its stdout.
pub fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("{command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed:\nstdout:\n{}\nstderr:\n{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The `bin/` of a virtualenv with `compat-tests/<name>/requirements.txt` installed.
pub fn python_venv(name: &str) -> Option<PathBuf> {
    static VENVS: OnceLock<Mutex<HashMap<String, Option<PathBuf>>>> = OnceLock::new();
    let venvs = VENVS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut venvs = venvs.lock().unwrap();
    venvs
        .entry(name.to_owned())
        .or_insert_with(|| {
            if !have("python3", "--version") {
                return None;
            }
            let requirements = compat_dir(name).join("requirements.txt");
            let venv = cache_dir().join(format!(
                "{name}-{}",
                fingerprint(std::slice::from_ref(&requirements))
            ));
            let bin = venv.join("bin");
            if !venv.join(".complete").exists() {
                std::fs::remove_dir_all(&venv).ok();
                run(Command::new("python3").arg("-m").arg("venv").arg(&venv));
                run(Command::new(bin.join("python"))
                    .args([
                        "-m",
                        "pip",
                        "install",
                        "--quiet",
                        "--disable-pip-version-check",
                        "-r",
                    ])
                    .arg(&requirements));
                std::fs::write(venv.join(".complete"), b"").unwrap();
            }
            Some(bin)
        })
        .clone()
}

/// A directory with `compat-tests/<name>`'s files and its locked `node_modules`.
pub fn node_project(name: &str, files: &[&str]) -> Option<PathBuf> {
    static PROJECTS: OnceLock<Mutex<HashMap<String, Option<PathBuf>>>> = OnceLock::new();
    let projects = PROJECTS.get_or_init(|| Mutex::new(HashMap::new()));
    let mut projects = projects.lock().unwrap();
    projects
        .entry(name.to_owned())
        .or_insert_with(|| {
            if !have("node", "--version") || !have("npm", "--version") {
                return None;
            }
            let source = compat_dir(name);
            let files: Vec<PathBuf> = files.iter().map(|file| source.join(file)).collect();
            let project = cache_dir().join(format!("{name}-{}", fingerprint(&files)));
            if !project.join(".complete").exists() {
                std::fs::remove_dir_all(&project).ok();
                std::fs::create_dir_all(&project).unwrap();
                for file in &files {
                    std::fs::copy(file, project.join(file.file_name().unwrap())).unwrap();
                }
                run(Command::new("npm")
                    .args(["ci", "--no-audit", "--no-fund"])
                    .current_dir(&project));
                std::fs::write(project.join(".complete"), b"").unwrap();
            }
            Some(project)
        })
        .clone()
}
