//! Diagnostics: QEMU-style `-d ITEM[,ITEM]` items, `RUST_LOG`, and `-D FILE`.
//!
//! Logs go to stderr (or to the `-D` file), never to stdout. The filter is
//! built from, in increasing priority: the default `warn`, the directives of
//! each `-d` item, then `RUST_LOG` (env_logger syntax, for fine filters such
//! as `RUST_LOG=cjemu_jit::mmu=trace`).
//!
//! Each `-d` item enables log targets (module paths) at a level. Code that
//! logs something an item is about should log under those targets at that
//! level (or finer), so the item shows it.

use crate::status::Error;
use std::io::Write;
use std::path::Path;

/// A `-d` item.
#[derive(Debug, PartialEq, Eq)]
pub struct LogItem {
    /// The name on the command line (QEMU's where QEMU has one).
    pub name: &'static str,
    /// One line for `-d help`.
    pub help: &'static str,
    /// env_logger directives it adds.
    pub directives: &'static str,
}

/// Every `-d` item cjemu knows.
pub const LOG_ITEMS: &[LogItem] = &[
    LogItem {
        name: "in_asm",
        help: "guest code as it is decoded into blocks",
        directives: "cjemu_jit::block=debug",
    },
    LogItem {
        name: "exec",
        help: "every block entered",
        directives: "cjemu_jit::engine=trace",
    },
    LogItem {
        name: "cpu",
        help: "CPU registers at each run-loop slice and at the end",
        directives: "cjemu::machine=trace",
    },
    LogItem {
        name: "int",
        help: "exceptions and interrupts delivered, faults while delivering",
        directives: "cjemu_jit::interrupt=debug",
    },
    LogItem {
        name: "guest_errors",
        help: "guest mistakes: accesses to nothing, bad device use",
        directives: "cjemu_devices=info,cjemu_devices::guest_errors=debug,cjemu_jit::memory=info,cjemu_jit::interrupt=info",
    },
    LogItem {
        name: "unimp",
        help: "unimplemented instructions and device features",
        directives: "cjemu_jit::semantics=debug,cjemu_devices=debug",
    },
];

/// Look up one item by name.
pub fn find_item(name: &str) -> Option<&'static LogItem> {
    LOG_ITEMS.iter().find(|i| i.name == name)
}

/// Names of all items, comma-separated (for error messages).
pub fn item_names() -> String {
    LOG_ITEMS
        .iter()
        .map(|i| i.name)
        .collect::<Vec<_>>()
        .join(", ")
}

/// The text `-d help` prints.
pub fn items_help() -> String {
    let mut s = String::from("Log items (-d ITEM[,ITEM]):\n");
    for i in LOG_ITEMS {
        s += &format!("  {:<13} {}\n", i.name, i.help);
    }
    s += "RUST_LOG (env_logger syntax) adds finer filters; -D FILE writes logs to FILE.\n";
    s
}

/// Parse one `-d` value (comma-separated items).
pub fn parse_items(list: &str) -> Result<Vec<&'static LogItem>, String> {
    let mut items = Vec::new();
    for name in list.split(',') {
        let name = name.trim();
        if name.is_empty() {
            return Err(format!("-d {list:?}: empty log item"));
        }
        match find_item(name) {
            Some(i) => items.push(i),
            None => {
                return Err(format!(
                    "-d: unknown log item '{name}' (known: {}; -d help lists them)",
                    item_names()
                ))
            }
        }
    }
    Ok(items)
}

/// The full filter string for `items` and a `RUST_LOG` value.
pub fn filter_string(items: &[&LogItem], rust_log: Option<&str>) -> String {
    let mut parts = vec!["warn"];
    parts.extend(items.iter().map(|i| i.directives));
    if let Some(r) = rust_log.filter(|r| !r.trim().is_empty()) {
        parts.push(r);
    }
    parts.join(",")
}

/// Install the global logger. Fails only if the `-D` file cannot be created.
pub fn init(items: &[&LogItem], file: Option<&Path>) -> Result<(), Error> {
    let rust_log = std::env::var("RUST_LOG").ok();
    let mut b = env_logger::Builder::new();
    b.parse_filters(&filter_string(items, rust_log.as_deref()));
    b.format(|buf, r| writeln!(buf, "[{} {}] {}", r.level(), r.target(), r.args()));
    match file {
        Some(path) => {
            let f = std::fs::File::create(path).map_err(|e| {
                Error::Usage(format!(
                    "-D {}: cannot create log file: {e}",
                    path.display()
                ))
            })?;
            b.target(env_logger::Target::Pipe(Box::new(f)));
            b.write_style(env_logger::WriteStyle::Never);
        }
        None => {
            b.target(env_logger::Target::Stderr);
        }
    }
    // A second init (tests in one process) keeps the first logger.
    let _ = b.try_init();
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_items_parse_in_any_order() {
        let v = parse_items("int,in_asm").unwrap();
        assert_eq!(v[0].name, "int");
        assert_eq!(v[1].name, "in_asm");
        for i in LOG_ITEMS {
            assert_eq!(parse_items(i.name).unwrap()[0], i);
        }
    }

    #[test]
    fn unknown_item_lists_the_known_ones() {
        let e = parse_items("in_asm,bogus").unwrap_err();
        assert!(e.contains("bogus"), "{e}");
        for i in LOG_ITEMS {
            assert!(e.contains(i.name), "{e} lacks {}", i.name);
        }
        assert!(parse_items("in_asm,").is_err());
    }

    #[test]
    fn rust_log_comes_last_so_it_wins() {
        let items = parse_items("int").unwrap();
        let f = filter_string(&items, Some("cjemu_jit::interrupt=off"));
        assert_eq!(
            f,
            "warn,cjemu_jit::interrupt=debug,cjemu_jit::interrupt=off"
        );
        assert_eq!(filter_string(&[], Some("  ")), "warn");
    }

    #[test]
    fn every_item_directive_parses() {
        // env_logger ignores bad directives with a message: check the syntax here.
        for i in LOG_ITEMS {
            for d in i.directives.split(',') {
                let (target, level) = d.split_once('=').expect("target=level");
                assert!(!target.is_empty());
                assert!(level.parse::<log::LevelFilter>().is_ok(), "{d}");
            }
        }
    }
}
