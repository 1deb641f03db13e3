//! `jarvis config check`: the effective settings and where each comes from.

use crate::config;

/// Prints every setting's effective value (secrets masked) and where it comes from, then validates them.
pub fn check(file: Option<&std::path::Path>) -> anyhow::Result<()> {
    let env: std::collections::BTreeMap<String, String> = std::env::vars().collect();
    let text = config::read_file(file)?;
    let sources = config::Sources::read(text.as_deref(), &env)?;
    match file {
        Some(path) => println!("configuration file: {}", path.display()),
        None => println!("configuration file: none (--config / JARVIS_CONFIG)"),
    }
    let report = sources.report();
    let width = report
        .iter()
        .map(|(s, _, _)| s.name.len())
        .max()
        .unwrap_or(0);
    for (setting, value, origin) in &report {
        println!("{:<width$}  {value}  [{origin}]", setting.name);
    }
    sources.settings()?;
    println!("settings are valid");
    Ok(())
}
