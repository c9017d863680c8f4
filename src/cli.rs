//! The command line (DESIGN.md, "Command line, output and exit status").
//!
//! Every option works with one or two leading dashes, in any order, with its
//! value as the next argument (`-kernel F` = `--kernel F` = `--kernel=F`).
//! clap does the parsing; [`normalise`] first rewrites QEMU's single-dash long
//! options to clap's double-dash form and glues each value to its option
//! (`--kernel=F`), so a value that starts with a dash (`-append -v`) is never
//! mistaken for an option. Short options (`-m`, `-d`, `-D`, `-s`, `-S`, `-M`)
//! keep working.
//!
//! [`parse`] then validates every value and yields a [`Config`]. Options the
//! command line knows but cjemu cannot honour yet are reported by
//! [`Config::not_implemented`] (one line, status 2), never ignored.

use crate::logging::{self, LogItem};
use crate::status::Error;
use clap::{CommandFactory, Parser};
use std::ffi::{OsStr, OsString};
use std::path::PathBuf;

/// Default RAM size (QEMU's default).
pub const DEFAULT_RAM: u64 = 128 << 20;
/// Largest RAM the engine maps.
pub const MAX_RAM: u64 = 1 << 40;
/// Highest `--icount shift=N` (as QEMU).
pub const MAX_ICOUNT_SHIFT: u32 = 10;
/// Serial ports the PC has (COM1–COM4).
pub const MAX_SERIAL: usize = 4;

const AFTER_HELP: &str = "\
Every option also works with a single dash (-kernel F, -m 256M), as in QEMU.
Without -kernel, cjemu runs its built-in demo guest.

QEMU options accepted for pasted command lines (at most a warning):
  -display none, -nographic, -machine pc / -M pc, -accel tcg (= --accel jit),
  -device isa-debug-exit[,iobase=0xf4,iosize=0x04] (honoured), -device pc-testdev,
  -cpu X, -smp 1

Exit status: guest power-off (HLT with IF=0), or triple fault or guest reset with -no-reboot 0;
debug-exit V: (V<<1)|1; usage error, bad input file or feature not implemented yet 2;
replay error 4; internal error 6.";

/// The raw command line as clap sees it (after [`normalise`]).
#[derive(Parser, Debug, Default)]
#[command(
    name = "cjemu",
    version,
    about = "cjemu: a deterministic x86-64 system emulator",
    after_help = AFTER_HELP,
    args_override_self = true
)]
struct RawArgs {
    /// Kernel image to boot: multiboot (v1) ELF or a.out-kludge, or a flat binary with --flat
    #[arg(long, value_name = "FILE")]
    kernel: Option<PathBuf>,
    /// Load -kernel as a flat binary at ADDR and enter it in 64-bit mode
    #[arg(long, value_name = "ADDR")]
    flat: Option<String>,
    /// Entry point of the flat binary, if not its load address
    #[arg(long = "flat-entry", value_name = "ADDR")]
    flat_entry: Option<String>,
    /// Kernel command line
    #[arg(long, value_name = "STR")]
    append: Option<String>,
    /// Initial ramdisk(s)
    #[arg(long, value_name = "FILE[,FILE]")]
    initrd: Option<String>,
    /// RAM size (default 128M; a bare number is MiB; suffixes K, M, G)
    #[arg(short = 'm', long = "m", visible_alias = "memory", value_name = "SIZE")]
    memory: Option<String>,
    /// Serial port target: stdio (default), file:PATH or null; repeat for COM2..
    #[arg(long, value_name = "DEV")]
    serial: Vec<String>,
    /// Feed COM1's receive line from FILE (instead of stdin)
    #[arg(long = "serial-input", value_name = "FILE")]
    serial_input: Option<PathBuf>,
    /// Stop instead of rebooting on reset or triple fault
    #[arg(long = "no-reboot")]
    no_reboot: bool,
    /// RTC start: base=utc (default: host time at start), base=localtime, or base=YYYY-MM-DDTHH:MM:SS / YYYY-MM-DD (UTC)
    #[arg(long, value_name = "base=utc|localtime|DATETIME")]
    rtc: Option<String>,
    /// Log items (-d help lists them)
    #[arg(short = 'd', long = "d", value_name = "ITEM[,ITEM]")]
    log_items: Vec<String>,
    /// Write logs to FILE instead of stderr
    #[arg(short = 'D', long = "D", value_name = "FILE")]
    log_file: Option<PathBuf>,
    /// CPU engine: jit (the default; alias tcg) with an optional compile threshold, or interp
    #[arg(long, value_name = "interp|jit[,threshold=N]")]
    accel: Option<String>,
    /// Virtual clock: shift=N|auto[,sleep=on|off][,align=on|off][,rr=record|replay,rrfile=F]
    #[arg(long, value_name = "OPTS")]
    icount: Option<String>,
    /// Record the run's inputs to FILE
    #[arg(long, value_name = "FILE")]
    record: Option<PathBuf>,
    /// Replay the run recorded in FILE
    #[arg(long, value_name = "FILE")]
    replay: Option<PathBuf>,
    /// Instructions between checkpoints of a recording (default 1000000000)
    #[arg(long = "checkpoint-every", value_name = "N")]
    checkpoint_every: Option<u64>,
    /// Write a snapshot every N instructions (to --snapshot-dir)
    #[arg(long = "snapshot-every", value_name = "N")]
    snapshot_every: Option<u64>,
    /// Directory for --snapshot-every's snap-ICOUNT.cjsnap files (default .)
    #[arg(long = "snapshot-dir", value_name = "DIR")]
    snapshot_dir: Option<PathBuf>,
    /// Start from the snapshot in FILE instead of booting the guest
    #[arg(long, value_name = "FILE")]
    loadvm: Option<PathBuf>,
    /// Print run statistics and final registers to stderr
    #[arg(long)]
    stats: bool,
    /// gdb stub on tcp::1234 (shorthand for -gdb tcp::1234)
    #[arg(short = 's', long = "s")]
    gdb_default: bool,
    /// Do not start the CPU until gdb says so
    #[arg(short = 'S', long = "S")]
    freeze: bool,
    /// gdb remote stub on DEV (e.g. tcp::1234)
    #[arg(long, value_name = "DEV")]
    gdb: Option<String>,
    /// Pause exactly at instruction count N (then wait for the monitor or gdb)
    #[arg(long = "stop-at", value_name = "ICOUNT")]
    stop_at: Option<u64>,
    /// Monitor on a Unix socket: unix:PATH (QEMU's unix:PATH,server,nowait too)
    #[arg(long, value_name = "DEV")]
    monitor: Option<String>,
    /// (QEMU) display backend; cjemu has none
    #[arg(long, value_name = "TYPE", hide = true)]
    display: Option<String>,
    /// (QEMU) no graphics; serial on stdio is already the default
    #[arg(long, hide = true)]
    nographic: bool,
    /// (QEMU) machine type; cjemu is always a pc
    #[arg(short = 'M', long, value_name = "TYPE", hide = true)]
    machine: Option<String>,
    /// (QEMU) devices: isa-debug-exit and pc-testdev are always present
    #[arg(long, value_name = "DEV", hide = true)]
    device: Vec<String>,
    /// (QEMU) CPU model; cjemu's is fixed
    #[arg(long, value_name = "MODEL", hide = true)]
    cpu: Option<String>,
    /// (QEMU) number of CPUs; cjemu has one
    #[arg(long, value_name = "N", hide = true)]
    smp: Option<String>,
    /// (QEMU) rejected: cjemu has no KVM
    #[arg(long = "enable-kvm", hide = true)]
    enable_kvm: bool,
}

/// How the kernel file is loaded.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FlatLoad {
    /// Guest-physical load address.
    pub load: u64,
    /// Entry point (the load address unless `--flat-entry` says otherwise).
    pub entry: u64,
}

/// The CPU engine.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Accel {
    /// The interpreter.
    Interp,
    /// The tiered JIT; compile a block after `threshold` executions.
    Jit {
        /// `None`: the engine's default.
        threshold: Option<u64>,
    },
}

/// `--icount` shift.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Shift {
    /// Each instruction is 2^N ns.
    Fixed(u32),
    /// Adapt the shift to real time.
    Auto,
}

/// Record or replay.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordReplay {
    /// Record inputs to the file.
    Record(PathBuf),
    /// Replay inputs from the file.
    Replay(PathBuf),
}

/// `--icount` options.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Icount {
    pub shift: Shift,
    pub sleep: bool,
    pub align: bool,
}

/// `-rtc base=`: what the RTC shows at the start of the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RtcBase {
    /// The host's UTC time at start (the default).
    Utc,
    /// The host's local time at start.
    LocalTime,
    /// This time, seconds since 1970-01-01 UTC.
    Fixed(i64),
}

/// A serial port's backend.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SerialTarget {
    Stdio,
    File(PathBuf),
    Null,
}

/// The validated configuration of one run.
#[derive(Debug)]
pub struct Config {
    pub kernel: Option<PathBuf>,
    pub flat: Option<FlatLoad>,
    pub append: Option<String>,
    pub initrd: Vec<PathBuf>,
    pub ram_size: u64,
    /// COM1, COM2, … (COM1 = stdio when none is given).
    pub serial: Vec<SerialTarget>,
    /// `--serial-input FILE`: COM1's received bytes.
    pub serial_input: Option<PathBuf>,
    pub no_reboot: bool,
    /// `-rtc base=`.
    pub rtc_base: RtcBase,
    pub log_items: Vec<&'static LogItem>,
    pub log_file: Option<PathBuf>,
    pub accel: Accel,
    pub icount: Option<Icount>,
    pub record_replay: Option<RecordReplay>,
    /// `--checkpoint-every N`.
    pub checkpoint_every: Option<u64>,
    /// `--snapshot-every N`.
    pub snapshot_every: Option<u64>,
    /// `--snapshot-dir DIR` (default `.`; in a replay a debugger drives,
    /// none: `--snapshot-every` alone sets the in-memory history).
    pub snapshot_dir: Option<PathBuf>,
    /// `--loadvm FILE`.
    pub loadvm: Option<PathBuf>,
    pub stats: bool,
    /// `-s` / `-gdb DEV`: the gdb device.
    pub gdb: Option<String>,
    /// `-S`.
    pub freeze: bool,
    /// `--stop-at ICOUNT`.
    pub stop_at: Option<u64>,
    /// `--monitor unix:PATH`: the socket's path.
    pub monitor: Option<PathBuf>,
    /// `-device isa-debug-exit,iobase=B,iosize=S`: (iobase, iosize);
    /// QEMU's defaults 0xf4 and 4.
    pub debug_exit: (u16, u16),
    /// Messages for the user about accepted-but-ignored options.
    pub warnings: Vec<String>,
}

/// What the command line asks for.
#[derive(Debug)]
pub enum Command {
    /// Run a guest.
    Run(Box<Config>),
    /// Print this text to stdout and exit 0 (`--help`, `--version`).
    PrintStdout(String),
    /// Print this text to stderr and exit 0 (`-d help`).
    PrintStderr(String),
    /// `cjemu replay-dump FILE`: print a record/replay log.
    ReplayDump(PathBuf),
}

impl Config {
    /// The first option given that cjemu does not implement yet, as the
    /// one-line error names it.
    pub fn not_implemented(&self) -> Option<Error> {
        let ni = |what: &str, hint: Option<&str>| {
            Some(Error::NotImplemented {
                what: what.into(),
                hint: hint.map(Into::into),
            })
        };
        for (i, s) in self.serial.iter().enumerate() {
            match s {
                SerialTarget::Stdio if i == 0 => {}
                SerialTarget::Stdio => return ni(&format!("-serial stdio for COM{}", i + 1), None),
                SerialTarget::File(_) | SerialTarget::Null => {}
            }
        }
        None
    }
}

/// One option clap knows, for [`normalise`].
struct OptSpec {
    long: String,
    aliases: Vec<String>,
    short: Option<char>,
    takes_value: bool,
}

fn option_specs() -> Vec<OptSpec> {
    let mut cmd = RawArgs::command();
    cmd.build(); // adds --help and --version
    cmd.get_arguments()
        .filter_map(|a| {
            let long = a.get_long()?.to_string();
            let aliases = a
                .get_all_aliases()
                .unwrap_or_default()
                .into_iter()
                .map(String::from)
                .collect();
            Some(OptSpec {
                long,
                aliases,
                short: a.get_short(),
                takes_value: a.get_action().takes_values(),
            })
        })
        .collect()
}

/// Rewrite QEMU-style arguments into clap's: `-kernel F` → `--kernel=F`,
/// `-m 256` → `--m=256`. Unknown single-dash words become `--word`, so
/// clap's error names them and suggests the closest option. Everything
/// after a bare `--` passes unchanged. `args` excludes the program name.
pub fn normalise(args: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let specs = option_specs();
    let by_long = |n: &str| {
        specs
            .iter()
            .find(|s| s.long == n || s.aliases.iter().any(|a| a == n))
    };
    let by_short = |c: char| specs.iter().find(|s| s.short == Some(c));
    let mut out = Vec::new();
    let mut it = args.into_iter();
    while let Some(arg) = it.next() {
        let Some(text) = arg.to_str().map(str::to_owned) else {
            out.push(arg);
            continue;
        };
        if text == "--" {
            out.push(arg);
            out.extend(it);
            break;
        }
        let word = if let Some(w) = text.strip_prefix("--") {
            w
        } else if let Some(w) = text.strip_prefix('-').filter(|w| !w.is_empty()) {
            w
        } else {
            out.push(arg); // a positional (clap rejects it) or "-"
            continue;
        };
        let single = !text.starts_with("--");
        let (name, inline) = match word.split_once('=') {
            Some((n, v)) => (n, Some(v)),
            None => (word, None),
        };
        let mut chars = name.chars();
        let short = match (chars.next(), chars.next()) {
            (Some(c), None) if single => by_short(c),
            _ => None,
        };
        let spec = short.or_else(|| by_long(name));
        match spec {
            Some(s) if s.takes_value && inline.is_none() => {
                let mut joined = OsString::from(format!("--{}=", s.long));
                match it.next() {
                    Some(v) => {
                        joined.push(v);
                        out.push(joined);
                    }
                    // No value: let clap say that one is required.
                    None => out.push(OsString::from(format!("--{}", s.long))),
                }
            }
            Some(s) => match inline {
                Some(v) => out.push(OsString::from(format!("--{}={v}", s.long))),
                None => out.push(OsString::from(format!("--{}", s.long))),
            },
            // `-m256`-style glued short options: clap parses those itself.
            None if single && name.chars().next().and_then(by_short).is_some() => out.push(arg),
            None => out.push(OsString::from(format!("--{word}"))),
        }
    }
    out
}

/// Parse the command line (without the program name).
pub fn parse<I, S>(args: I) -> Result<Command, Error>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<OsString> = args.into_iter().map(|a| a.as_ref().to_owned()).collect();
    if args.first().is_some_and(|a| a == "replay-dump") {
        return match &args[1..] {
            [file] => Ok(Command::ReplayDump(PathBuf::from(file))),
            _ => Err(usage("usage: cjemu replay-dump FILE")),
        };
    }
    let mut argv = vec![OsString::from("cjemu")];
    argv.extend(normalise(args));
    let raw = match RawArgs::try_parse_from(argv) {
        Ok(r) => r,
        Err(e) => {
            use clap::error::ErrorKind as K;
            return match e.kind() {
                K::DisplayHelp | K::DisplayVersion => Ok(Command::PrintStdout(e.to_string())),
                _ => Err(Error::Usage(e.render().to_string().trim_end().to_string())),
            };
        }
    };
    if raw
        .log_items
        .iter()
        .any(|l| l.split(',').any(|i| i == "help"))
    {
        return Ok(Command::PrintStderr(logging::items_help()));
    }
    validate(raw).map(|c| Command::Run(Box::new(c)))
}

fn usage(msg: impl Into<String>) -> Error {
    Error::Usage(msg.into())
}

fn validate(raw: RawArgs) -> Result<Config, Error> {
    let mut warnings = Vec::new();
    if raw.enable_kvm {
        return Err(usage(
            "-enable-kvm: cjemu has no KVM; it emulates the CPU in software (drop the option)",
        ));
    }
    let ram_size = match &raw.memory {
        Some(m) => parse_ram_size(m).map_err(|e| usage(format!("-m {m}: {e}")))?,
        None => DEFAULT_RAM,
    };
    let flat = parse_flat(&raw)?;
    let accel = match &raw.accel {
        Some(a) => parse_accel(a, &mut warnings).map_err(|e| usage(format!("--accel {a}: {e}")))?,
        None => Accel::Jit { threshold: None },
    };
    let mut log_items = Vec::new();
    for l in &raw.log_items {
        log_items.extend(logging::parse_items(l).map_err(usage)?);
    }
    let (icount, rr) = match &raw.icount {
        Some(s) => parse_icount(s).map_err(|e| usage(format!("--icount {s}: {e}")))?,
        None => (None, None),
    };
    let record_replay = combine_record_replay(rr, &raw)?;
    let serial = parse_serials(&raw.serial, &mut warnings)?;
    let rtc_base = match &raw.rtc {
        Some(r) => parse_rtc(r, &mut warnings).map_err(|e| usage(format!("-rtc {r}: {e}")))?,
        None => RtcBase::Utc,
    };
    let initrd = match &raw.initrd {
        Some(s) => parse_initrd(s)?,
        None => Vec::new(),
    };
    let debug_exit = check_qemu_compat(&raw, &mut warnings)?;
    if raw.checkpoint_every == Some(0) {
        return Err(usage("--checkpoint-every must be at least 1"));
    }
    if raw.checkpoint_every.is_some() && !matches!(record_replay, Some(RecordReplay::Record(_))) {
        return Err(usage(
            "--checkpoint-every applies to a recording (--record FILE); a replay checks the \
             checkpoints its log holds",
        ));
    }
    check_snapshot_options(&raw, &record_replay)?;
    if raw.kernel.is_none() && (raw.append.is_some() || raw.initrd.is_some()) {
        return Err(usage("-append and -initrd need -kernel FILE"));
    }
    if flat.is_some() && (raw.append.is_some() || raw.initrd.is_some()) {
        return Err(usage(
            "-append and -initrd need a multiboot kernel; a --flat binary takes neither",
        ));
    }
    let gdb = match (&raw.gdb, raw.gdb_default) {
        (Some(g), _) => Some(g.clone()),
        (None, true) => Some("tcp::1234".into()),
        (None, false) => None,
    };
    if let Some(g) = &gdb {
        crate::gdb::parse_device(g).map_err(|e| usage(format!("-gdb {g}: {e}")))?;
    }
    let monitor = match &raw.monitor {
        Some(m) => Some(parse_monitor(m).map_err(|e| usage(format!("-monitor {m}: {e}")))?),
        None => None,
    };
    Ok(Config {
        kernel: raw.kernel,
        flat,
        append: raw.append,
        initrd,
        ram_size,
        serial,
        serial_input: raw.serial_input,
        no_reboot: raw.no_reboot,
        rtc_base,
        log_items,
        log_file: raw.log_file,
        accel,
        icount,
        record_replay,
        checkpoint_every: raw.checkpoint_every,
        snapshot_every: raw.snapshot_every,
        snapshot_dir: raw.snapshot_dir,
        loadvm: raw.loadvm,
        stats: raw.stats,
        gdb,
        freeze: raw.freeze,
        stop_at: raw.stop_at,
        monitor,
        debug_exit,
        warnings,
    })
}

/// `-monitor unix:PATH[,server][,nowait]`: the socket's path. cjemu's
/// monitor is always a listening server that does not wait for a client.
pub fn parse_monitor(s: &str) -> Result<PathBuf, String> {
    let Some(rest) = s.strip_prefix("unix:") else {
        return Err("only unix:PATH is supported".into());
    };
    let mut parts = rest.split(',');
    let path = parts.next().unwrap_or("");
    if path.is_empty() {
        return Err("unix: needs a path".into());
    }
    for opt in parts {
        match opt {
            "server" | "server=on" | "nowait" | "wait=off" => {}
            o => {
                return Err(format!(
                    "unknown option '{o}' (server and nowait are implied)"
                ))
            }
        }
    }
    Ok(PathBuf::from(path))
}

/// `-m`: `[size=]N[K|M|G|T][B]`, bare number = MiB. Non-zero, a multiple of
/// 4 KiB, at most [`MAX_RAM`].
pub fn parse_ram_size(s: &str) -> Result<u64, String> {
    let v = s.strip_prefix("size=").unwrap_or(s).trim();
    let v = v.split(',').next().unwrap_or(v); // QEMU's slots=/maxmem= follow
    let digits_end = v.find(|c: char| !c.is_ascii_digit()).unwrap_or(v.len());
    let (num, suffix) = v.split_at(digits_end);
    if num.is_empty() {
        return Err("expected a size such as 128M, 2G or 512 (MiB)".into());
    }
    let n: u64 = num.parse().map_err(|_| "size out of range".to_string())?;
    let unit: u64 = match suffix.to_ascii_uppercase().as_str() {
        "" => 1 << 20,
        "B" => 1,
        "K" | "KB" | "KIB" => 1 << 10,
        "M" | "MB" | "MIB" => 1 << 20,
        "G" | "GB" | "GIB" => 1 << 30,
        "T" | "TB" | "TIB" => 1 << 40,
        _ => return Err(format!("unknown size suffix '{suffix}' (use K, M or G)")),
    };
    let bytes = n
        .checked_mul(unit)
        .filter(|&b| b <= MAX_RAM)
        .ok_or_else(|| "more than the 1 TiB cjemu can map".to_string())?;
    if bytes == 0 {
        return Err("RAM size must not be zero".into());
    }
    if bytes % 4096 != 0 {
        return Err("RAM size must be a multiple of 4 KiB".into());
    }
    Ok(bytes)
}

/// An address: `0x…` hex, `0o…` octal, `0b…` binary or decimal; `_` allowed.
pub fn parse_addr(s: &str) -> Result<u64, String> {
    let t: String = s.trim().chars().filter(|&c| c != '_').collect();
    let lower = t.to_ascii_lowercase();
    let (digits, radix) = if let Some(h) = lower.strip_prefix("0x") {
        (h, 16)
    } else if let Some(o) = lower.strip_prefix("0o") {
        (o, 8)
    } else if let Some(b) = lower.strip_prefix("0b") {
        (b, 2)
    } else {
        (lower.as_str(), 10)
    };
    if digits.is_empty() {
        return Err(format!("'{s}' is not an address"));
    }
    u64::from_str_radix(digits, radix).map_err(|_| format!("'{s}' is not a 64-bit address"))
}

fn parse_flat(raw: &RawArgs) -> Result<Option<FlatLoad>, Error> {
    let Some(f) = &raw.flat else {
        if raw.flat_entry.is_some() {
            return Err(usage("--flat-entry needs --flat ADDR"));
        }
        return Ok(None);
    };
    if raw.kernel.is_none() {
        return Err(usage("--flat needs -kernel FILE (the flat binary to load)"));
    }
    let load = parse_addr(f).map_err(|e| usage(format!("--flat: {e}")))?;
    let entry = match &raw.flat_entry {
        Some(e) => parse_addr(e).map_err(|e| usage(format!("--flat-entry: {e}")))?,
        None => load,
    };
    Ok(Some(FlatLoad { load, entry }))
}

/// `--accel interp|jit|tcg[,threshold=N]`: QEMU's `tcg`, which pasted
/// command lines carry, is the JIT.
pub fn parse_accel(s: &str, warnings: &mut Vec<String>) -> Result<Accel, String> {
    let mut parts = s.split(',');
    let name = parts.next().unwrap_or("");
    let mut threshold = None;
    for p in parts {
        match p.split_once('=') {
            Some(("threshold", v)) => {
                threshold =
                    Some(v.parse::<u64>().map_err(|_| {
                        format!("threshold must be a non-negative integer, not '{v}'")
                    })?);
            }
            Some(("thread", "single" | "multi")) | Some(("tb-size", _)) => {
                warnings.push(format!("--accel: '{p}' ignored (cjemu has one CPU thread)"));
            }
            _ => {
                return Err(format!(
                    "unknown accelerator option '{p}' (known: threshold=N)"
                ))
            }
        }
    }
    match name {
        "interp" if threshold.is_some() => Err("threshold= applies only to jit".into()),
        "interp" => Ok(Accel::Interp),
        "jit" | "tcg" => Ok(Accel::Jit { threshold }),
        "kvm" | "hvf" | "whpx" | "xen" | "nvmm" => Err(format!(
            "cjemu has no {name}; it emulates the CPU in software (use interp or jit)"
        )),
        _ => Err(format!("unknown accelerator '{name}' (use interp or jit)")),
    }
}

fn parse_on_off(key: &str, v: &str) -> Result<bool, String> {
    match v {
        "on" | "yes" | "true" => Ok(true),
        "off" | "no" | "false" => Ok(false),
        _ => Err(format!("{key}= takes on or off, not '{v}'")),
    }
}

/// The canonical `--icount` text of a clock mode (what a recording's log
/// stores; `parse_icount` reads it back). `None`: cjemu's default.
pub fn icount_spec(ic: Option<&Icount>) -> String {
    let on = |b: bool| if b { "on" } else { "off" };
    match ic {
        None => "shift=0,sleep=off,align=off".into(),
        Some(ic) => {
            let shift = match ic.shift {
                Shift::Fixed(n) => n.to_string(),
                Shift::Auto => "auto".into(),
            };
            format!(
                "shift={shift},sleep={},align={}",
                on(ic.sleep),
                on(ic.align)
            )
        }
    }
}

/// `--icount shift=N|auto[,sleep=on|off][,align=on|off][,rr=record|replay,rrfile=F]`,
/// or a bare first value (`5`, `auto`) meaning `shift=`. A missing shift is 0.
pub fn parse_icount(s: &str) -> Result<(Option<Icount>, Option<RecordReplay>), String> {
    let mut ic = Icount {
        shift: Shift::Fixed(0),
        sleep: true,
        align: false,
    };
    let (mut shift_given, mut sleep_given) = (false, false);
    let (mut rr, mut rrfile) = (None, None);
    for (i, part) in s.split(',').enumerate() {
        let (key, val) = match part.split_once('=') {
            Some(kv) => kv,
            None if i == 0 => ("shift", part),
            None => return Err(format!("'{part}' is not key=value")),
        };
        match key {
            "shift" => {
                ic.shift = match val {
                    "auto" => Shift::Auto,
                    n => match n.parse::<u32>() {
                        Ok(n) if n <= MAX_ICOUNT_SHIFT => Shift::Fixed(n),
                        _ => {
                            return Err(format!(
                                "shift must be auto or 0..={MAX_ICOUNT_SHIFT}, not '{n}'"
                            ))
                        }
                    },
                };
                shift_given = true;
            }
            "sleep" => {
                ic.sleep = parse_on_off(key, val)?;
                sleep_given = true;
            }
            "align" => ic.align = parse_on_off(key, val)?,
            "rr" => match val {
                "record" | "replay" => rr = Some(val),
                _ => return Err(format!("rr= takes record or replay, not '{val}'")),
            },
            "rrfile" if !val.is_empty() => rrfile = Some(PathBuf::from(val)),
            "rrfile" => return Err("rrfile= needs a file name".into()),
            _ => {
                return Err(format!(
                    "unknown key '{key}' (known: shift, sleep, align, rr, rrfile)"
                ))
            }
        }
    }
    if ic.align && !shift_given {
        return Err("align=on needs an explicit shift".into());
    }
    if ic.align && sleep_given && !ic.sleep {
        return Err("align=on and sleep=off are incompatible".into());
    }
    if ic.align && ic.shift == Shift::Auto {
        return Err("align=on and shift=auto are incompatible".into());
    }
    if ic.shift == Shift::Auto && sleep_given && !ic.sleep {
        return Err(
            "shift=auto needs sleep=on: with sleep=off an idle guest's time would jump \
                    while the shift follows real time (QEMU 7.2 accepts this combination, \
                    by accident; cjemu does not)"
                .into(),
        );
    }
    let record_replay = match (rr, rrfile) {
        (Some("record"), Some(f)) => Some(RecordReplay::Record(f)),
        (Some(_), Some(f)) => Some(RecordReplay::Replay(f)),
        (Some(_), None) => return Err("rr= needs rrfile=FILE".into()),
        (None, Some(_)) => return Err("rrfile= needs rr=record or rr=replay".into()),
        (None, None) => None,
    };
    Ok((Some(ic), record_replay))
}

/// `--snapshot-every`, `--snapshot-dir`, `--loadvm`: what goes together.
fn check_snapshot_options(raw: &RawArgs, rr: &Option<RecordReplay>) -> Result<(), Error> {
    if raw.snapshot_every == Some(0) {
        return Err(usage("--snapshot-every must be at least 1"));
    }
    if raw.snapshot_dir.is_some() && raw.snapshot_every.is_none() {
        return Err(usage("--snapshot-dir needs --snapshot-every N"));
    }
    if raw.loadvm.is_none() {
        return Ok(());
    }
    if matches!(rr, Some(RecordReplay::Record(_))) {
        return Err(usage(
            "--loadvm cannot be combined with --record: a recording starts from the guest's \
             boot (a replay can start from a snapshot taken during its recording)",
        ));
    }
    if raw.serial_input.is_some() {
        return Err(usage(
            "--serial-input with --loadvm: the snapshot carries the serial input the guest \
             had not taken yet",
        ));
    }
    Ok(())
}

fn combine_record_replay(
    from_icount: Option<RecordReplay>,
    raw: &RawArgs,
) -> Result<Option<RecordReplay>, Error> {
    let mut all: Vec<RecordReplay> = from_icount.into_iter().collect();
    all.extend(raw.record.clone().map(RecordReplay::Record));
    all.extend(raw.replay.clone().map(RecordReplay::Replay));
    match all.len() {
        0 | 1 => Ok(all.pop()),
        _ => Err(usage(
            "give only one of --record FILE, --replay FILE and --icount rr=…",
        )),
    }
}

/// `-rtc [base=utc|localtime|DATETIME][,clock=vm|host|rt][,driftfix=none|slew]`
/// (QEMU's syntax). The RTC always follows virtual time, so `clock=` and
/// `driftfix=` other than the deterministic choice are accepted with a
/// warning.
pub fn parse_rtc(s: &str, warnings: &mut Vec<String>) -> Result<RtcBase, String> {
    let mut base = RtcBase::Utc;
    for part in s.split(',') {
        match part.split_once('=') {
            Some(("base", "utc")) => base = RtcBase::Utc,
            Some(("base", "localtime")) => base = RtcBase::LocalTime,
            Some(("base", v)) => base = RtcBase::Fixed(parse_datetime(v)?),
            Some(("clock", "vm")) | Some(("driftfix", "none")) => {}
            Some(("clock", v @ ("host" | "rt"))) => warnings.push(format!(
                "-rtc clock={v}: cjemu's RTC runs on virtual time (as clock=vm)"
            )),
            Some(("driftfix", "slew")) => {
                warnings.push("-rtc driftfix=slew: ignored (no tick is ever lost)".into())
            }
            _ => {
                return Err(format!(
                    "'{part}' is not base=utc|localtime|YYYY-MM-DDTHH:MM:SS, clock=vm|host|rt \
                     or driftfix=none|slew"
                ))
            }
        }
    }
    Ok(base)
}

/// `YYYY-MM-DDTHH:MM:SS` or `YYYY-MM-DD` (midnight), UTC, years
/// 1900–9999 (the RTC's centuries); seconds since 1970-01-01 UTC.
pub fn parse_datetime(s: &str) -> Result<i64, String> {
    use cjemu_devices::rtc_cmos::DateTime;
    let bad = || format!("'{s}' is not a date YYYY-MM-DDTHH:MM:SS or YYYY-MM-DD");
    let (date, time) = match s.split_once('T') {
        Some((d, t)) => (d, Some(t)),
        None => (s, None),
    };
    let num = |f: &str, digits: usize| -> Result<i64, String> {
        if f.len() != digits || !f.bytes().all(|b| b.is_ascii_digit()) {
            return Err(bad());
        }
        f.parse().map_err(|_| bad())
    };
    let d: Vec<&str> = date.split('-').collect();
    let [y, mo, day] = d.as_slice() else {
        return Err(bad());
    };
    let (year, month, day) = (num(y, 4)?, num(mo, 2)?, num(day, 2)?);
    let (hour, minute, second) = match time {
        None => (0, 0, 0),
        Some(t) => {
            let f: Vec<&str> = t.split(':').collect();
            let [h, mi, se] = f.as_slice() else {
                return Err(bad());
            };
            (num(h, 2)?, num(mi, 2)?, num(se, 2)?)
        }
    };
    if !(1900..=9999).contains(&year) {
        return Err(format!("year {year} is outside 1900-9999"));
    }
    if !(1..=12).contains(&month)
        || !(1..=31).contains(&day)
        || hour > 23
        || minute > 59
        || second > 59
    {
        return Err(bad());
    }
    let dt = DateTime {
        year,
        month: month as u8,
        day: day as u8,
        hour: hour as u8,
        minute: minute as u8,
        second: second as u8,
        weekday: 0,
    };
    let secs = dt.to_epoch();
    // A day past the month's end (02-30) comes back as another date.
    let back = DateTime::from_epoch(secs);
    if (back.year, back.month, back.day) != (year, month as u8, day as u8) {
        return Err(format!("{date} is not a day of the calendar"));
    }
    Ok(secs)
}

/// One `-serial` value.
pub fn parse_serial(s: &str, warnings: &mut Vec<String>) -> Result<SerialTarget, String> {
    match s {
        "stdio" => Ok(SerialTarget::Stdio),
        "mon:stdio" => {
            warnings.push("-serial mon:stdio: cjemu has no monitor; using stdio".into());
            Ok(SerialTarget::Stdio)
        }
        "null" | "none" => Ok(SerialTarget::Null),
        _ => match s.strip_prefix("file:") {
            Some("") => Err("file: needs a path".into()),
            Some(p) => Ok(SerialTarget::File(PathBuf::from(p))),
            None => Err("unsupported serial target (use stdio, file:PATH or null)".into()),
        },
    }
}

fn parse_serials(list: &[String], warnings: &mut Vec<String>) -> Result<Vec<SerialTarget>, Error> {
    if list.len() > MAX_SERIAL {
        return Err(usage(format!(
            "-serial given {} times: the PC has {MAX_SERIAL} serial ports",
            list.len()
        )));
    }
    let mut out = Vec::new();
    for s in list {
        out.push(parse_serial(s, warnings).map_err(|e| usage(format!("-serial {s}: {e}")))?);
    }
    if out.is_empty() {
        out.push(SerialTarget::Stdio);
    }
    Ok(out)
}

fn parse_initrd(s: &str) -> Result<Vec<PathBuf>, Error> {
    let files: Vec<PathBuf> = s.split(',').map(PathBuf::from).collect();
    if files.iter().any(|f| f.as_os_str().is_empty()) {
        return Err(usage(format!("-initrd {s}: empty file name")));
    }
    Ok(files)
}

/// The QEMU options cjemu accepts for pasted command lines: accept, warn or
/// reject each value. Returns the debug-exit window (iobase, iosize).
fn check_qemu_compat(raw: &RawArgs, warnings: &mut Vec<String>) -> Result<(u16, u16), Error> {
    let mut debug_exit = (0xf4, 4);
    if let Some(d) = &raw.display {
        if d != "none" {
            warnings.push(format!("-display {d}: cjemu has no display; ignored"));
        }
    }
    if let Some(m) = &raw.machine {
        check_machine(m, warnings)?;
    }
    for d in &raw.device {
        if let Some(dx) = check_device(d, warnings)? {
            debug_exit = dx;
        }
    }
    if let Some(c) = &raw.cpu {
        warnings.push(format!("-cpu {c}: cjemu's CPU model is fixed; ignored"));
    }
    if let Some(s) = &raw.smp {
        let n = s.split(',').next().unwrap_or("");
        let n = n.strip_prefix("cpus=").unwrap_or(n);
        if n != "1" {
            return Err(usage(format!(
                "-smp {s}: cjemu emulates exactly one CPU (use -smp 1)"
            )));
        }
    }
    Ok(debug_exit)
}

fn check_machine(m: &str, warnings: &mut Vec<String>) -> Result<(), Error> {
    for (i, part) in m.split(',').enumerate() {
        let kind = match part.split_once('=') {
            Some(("type", t)) => t,
            None if i == 0 => part,
            Some((k, v)) => {
                if k == "accel" && v == "kvm" {
                    return Err(usage(format!("-machine {m}: cjemu has no KVM")));
                }
                warnings.push(format!("-machine: '{part}' ignored"));
                continue;
            }
            None => return Err(usage(format!("-machine {m}: '{part}' is not key=value"))),
        };
        if kind != "pc" && !kind.starts_with("pc-i440fx") {
            return Err(usage(format!(
                "-machine {m}: cjemu emulates only the 'pc' machine"
            )));
        }
    }
    Ok(())
}

/// One `-device`: isa-debug-exit (its window is returned) or pc-testdev.
fn check_device(d: &str, warnings: &mut Vec<String>) -> Result<Option<(u16, u16)>, Error> {
    let mut parts = d.split(',');
    match parts.next().unwrap_or("") {
        "isa-debug-exit" => {
            let (mut base, mut size) = (0xf4u64, 4u64);
            for p in parts {
                let bad = |e: String| usage(format!("-device {d}: {e}"));
                match p.split_once('=') {
                    Some(("iobase", v)) => base = parse_addr(v).map_err(bad)?,
                    Some(("iosize", v)) => size = parse_addr(v).map_err(bad)?,
                    _ => warnings.push(format!("-device isa-debug-exit: '{p}' ignored")),
                }
            }
            if size == 0 || base.checked_add(size).is_none_or(|end| end > 0x10000) {
                return Err(usage(format!(
                    "-device {d}: the ports must lie inside 0..0xffff and iosize be non-zero"
                )));
            }
            Ok(Some((base as u16, size as u16)))
        }
        "pc-testdev" => Ok(None),
        other => Err(usage(format!(
            "-device {d}: unsupported device '{other}' (cjemu accepts isa-debug-exit and pc-testdev, which are always present)"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `not_implemented` names (without the hint).
    trait Nyi {
        fn nyi(&self) -> Option<String>;
    }
    impl Nyi for Config {
        fn nyi(&self) -> Option<String> {
            match self.not_implemented()? {
                Error::NotImplemented { what, .. } => Some(what),
                e => panic!("not_implemented gave {e:?}"),
            }
        }
    }

    fn run(args: &[&str]) -> Config {
        match parse(args) {
            Ok(Command::Run(c)) => *c,
            other => panic!("{args:?}: expected a run, got {other:?}"),
        }
    }

    fn err(args: &[&str]) -> Error {
        match parse(args) {
            Err(e) => e,
            Ok(c) => panic!("{args:?}: expected an error, got {c:?}"),
        }
    }

    fn usage_text(args: &[&str]) -> String {
        match err(args) {
            Error::Usage(m) => m,
            e => panic!("{args:?}: expected a usage error, got {e:?}"),
        }
    }

    #[test]
    fn no_arguments_is_the_demo_with_defaults() {
        let c = run(&[]);
        assert_eq!(c.kernel, None);
        assert_eq!(c.ram_size, DEFAULT_RAM);
        assert_eq!(c.accel, Accel::Jit { threshold: None }, "the tiered JIT");
        assert_eq!(c.serial, vec![SerialTarget::Stdio]);
        assert!(!c.stats && !c.no_reboot);
        assert_eq!(c.nyi(), None);
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn one_and_two_dashes_and_equals_are_the_same() {
        for args in [
            &["-kernel", "k.bin", "-flat", "0x100000", "-m", "64"][..],
            &["--kernel", "k.bin", "--flat", "0x100000", "--m", "64"],
            &["--kernel=k.bin", "--flat=0x100000", "-m=64"],
            &["-kernel=k.bin", "-flat=1048576", "--memory", "64M"],
            &["-m", "64", "-flat", "0x10_0000", "-kernel", "k.bin"],
            &["-m64", "--flat", "0x100000", "-kernel", "k.bin"],
        ] {
            let c = run(args);
            assert_eq!(c.kernel, Some(PathBuf::from("k.bin")), "{args:?}");
            assert_eq!(
                c.flat,
                Some(FlatLoad {
                    load: 0x100000,
                    entry: 0x100000
                }),
                "{args:?}"
            );
            assert_eq!(c.ram_size, 64 << 20, "{args:?}");
        }
    }

    #[test]
    fn flat_entry_sets_entry_point() {
        for args in [
            &[
                "-kernel",
                "k",
                "--flat",
                "0x100000",
                "--flat-entry",
                "0x100010",
            ][..],
            &[
                "-flat-entry",
                "0x100010",
                "-flat",
                "0x100000",
                "-kernel",
                "k",
            ],
        ] {
            let c = run(args);
            assert_eq!(
                c.flat,
                Some(FlatLoad {
                    load: 0x100000,
                    entry: 0x100010
                })
            );
        }
        assert!(usage_text(&["--flat-entry", "0x10"]).contains("--flat"));
        assert!(usage_text(&["--flat", "0x1000"]).contains("-kernel"));
        assert!(usage_text(&["-kernel", "k", "--flat", "0xzz"]).contains("address"));
        assert!(usage_text(&["-kernel", "k", "--flat", ""]).contains("address"));
    }

    #[test]
    fn short_options_work() {
        let c = run(&["-m", "256", "-d", "int", "-D", "log.txt", "-M", "pc"]);
        assert_eq!(c.ram_size, 256 << 20);
        assert_eq!(c.log_items[0].name, "int");
        assert_eq!(c.log_file, Some(PathBuf::from("log.txt")));
        let c = run(&["-s"]);
        assert_eq!(c.gdb.as_deref(), Some("tcp::1234"));
        assert_eq!(c.nyi(), None);
        let c = run(&["-S"]);
        assert!(c.freeze);
        assert_eq!(c.nyi(), None);
        let c = run(&["--d", "cpu", "--D", "x"]);
        assert_eq!(c.log_items[0].name, "cpu");
    }

    #[test]
    fn ram_sizes() {
        assert_eq!(parse_ram_size("128"), Ok(128 << 20));
        assert_eq!(parse_ram_size("128M"), Ok(128 << 20));
        assert_eq!(parse_ram_size("128m"), Ok(128 << 20));
        assert_eq!(parse_ram_size("2G"), Ok(2 << 30));
        assert_eq!(parse_ram_size("512K"), Ok(512 << 10));
        assert_eq!(parse_ram_size("1GiB"), Ok(1 << 30));
        assert_eq!(parse_ram_size("size=64M"), Ok(64 << 20));
        assert_eq!(parse_ram_size("8192B"), Ok(8192));
        for bad in [
            "0",
            "0M",
            "",
            "M",
            "12X",
            "-5",
            "1.5G",
            "2K",
            "100B",
            "2T",
            "99999999999999999999",
        ] {
            assert!(parse_ram_size(bad).is_err(), "{bad} accepted");
        }
        assert!(usage_text(&["-m", "0"]).contains("zero"));
        assert!(usage_text(&["-m", "lots"]).starts_with("-m lots"));
    }

    #[test]
    fn later_value_of_a_repeated_option_wins() {
        assert_eq!(run(&["-m", "64", "-m", "32"]).ram_size, 32 << 20);
    }

    #[test]
    fn log_items_accumulate_and_unknown_ones_fail() {
        let c = run(&["-d", "in_asm,int", "--d", "cpu"]);
        let names: Vec<_> = c.log_items.iter().map(|i| i.name).collect();
        assert_eq!(names, ["in_asm", "int", "cpu"]);
        let e = usage_text(&["-d", "in_asm,nonsense"]);
        assert!(e.contains("nonsense") && e.contains("guest_errors"), "{e}");
        assert!(
            matches!(parse(["-d", "help"]), Ok(Command::PrintStderr(t)) if t.contains("in_asm"))
        );
    }

    #[test]
    fn accel_spellings() {
        let mut w = Vec::new();
        assert_eq!(parse_accel("interp", &mut w), Ok(Accel::Interp));
        assert_eq!(
            parse_accel("jit", &mut w),
            Ok(Accel::Jit { threshold: None })
        );
        assert_eq!(
            parse_accel("jit,threshold=0", &mut w),
            Ok(Accel::Jit { threshold: Some(0) })
        );
        assert_eq!(
            parse_accel("tcg,threshold=7", &mut w),
            Ok(Accel::Jit { threshold: Some(7) })
        );
        assert!(w.is_empty());
        assert_eq!(
            parse_accel("tcg,thread=single", &mut w),
            Ok(Accel::Jit { threshold: None })
        );
        assert_eq!(w.len(), 1, "thread= is ignored with a warning");
        assert!(parse_accel("interp,threshold=5", &mut w).is_err());
        assert!(parse_accel("jit,threshold=x", &mut w).is_err());
        assert!(parse_accel("jit,speed=max", &mut w).is_err());
        assert!(parse_accel("kvm", &mut w).unwrap_err().contains("no kvm"));
        assert!(parse_accel("fast", &mut w).is_err());

        for args in [
            &["--accel", "interp"][..],
            &["-accel", "interp"],
            &["--accel=interp"],
        ] {
            let c = run(args);
            assert_eq!(c.accel, Accel::Interp);
            assert_eq!(c.nyi(), None);
        }
        let c = run(&["-accel", "tcg"]);
        assert_eq!(c.accel, Accel::Jit { threshold: None });
        assert_eq!(c.nyi(), None);
        assert!(c.warnings.is_empty());
        let c = run(&["--accel", "jit,threshold=0"]);
        assert_eq!(c.accel, Accel::Jit { threshold: Some(0) });
        assert_eq!(c.nyi(), None);
        assert!(usage_text(&["--accel", "warp"]).contains("warp"));
    }

    #[test]
    fn icount_spellings() {
        let fixed = |n| Icount {
            shift: Shift::Fixed(n),
            sleep: true,
            align: false,
        };
        assert_eq!(parse_icount("5"), Ok((Some(fixed(5)), None)));
        assert_eq!(parse_icount("shift=5"), Ok((Some(fixed(5)), None)));
        let (ic, _) = parse_icount("auto").unwrap();
        assert_eq!(ic.unwrap().shift, Shift::Auto);
        let (ic, _) = parse_icount("shift=4,sleep=off").unwrap();
        assert_eq!(
            ic,
            Some(Icount {
                shift: Shift::Fixed(4),
                sleep: false,
                align: false
            })
        );
        let (ic, _) = parse_icount("shift=3,align=on").unwrap();
        assert!(ic.unwrap().align);
        assert_eq!(
            parse_icount("shift=7,rr=record,rrfile=r.log"),
            Ok((Some(fixed(7)), Some(RecordReplay::Record("r.log".into()))))
        );
        assert_eq!(
            parse_icount("rr=replay,rrfile=r.log,shift=auto").unwrap().1,
            Some(RecordReplay::Replay("r.log".into()))
        );
        for bad in [
            "",
            "shift=11",
            "shift=-1",
            "shift=x",
            "sleep=maybe",
            "shift=1,bogus=1",
            "shift=1,2",
            "shift=1,rr=record",
            "shift=1,rrfile=f",
            "shift=1,rr=rewind,rrfile=f",
            "shift=auto,align=on",
            "shift=2,sleep=off,align=on",
            "align=on",
            "shift=1,rrfile=",
            "shift=auto,sleep=off",
            "auto,sleep=off",
        ] {
            assert!(parse_icount(bad).is_err(), "{bad:?} accepted");
        }
        assert!(parse_icount("auto,sleep=off")
            .unwrap_err()
            .contains("QEMU 7.2 accepts"));
        for args in [
            &["--icount", "5"][..],
            &["-icount", "shift=auto"],
            &["--icount=auto"],
        ] {
            assert_eq!(run(args).nyi(), None, "{args:?} is implemented");
        }
        assert!(usage_text(&["-icount", "shift=99"]).contains("shift"));
    }

    #[test]
    fn record_and_replay() {
        let c = run(&["--record", "r.log"]);
        assert_eq!(c.record_replay, Some(RecordReplay::Record("r.log".into())));
        assert_eq!(c.nyi(), None);
        let c = run(&["-replay", "r.log"]);
        assert_eq!(c.record_replay, Some(RecordReplay::Replay("r.log".into())));
        let c = run(&["--record", "r.log", "--checkpoint-every", "5000"]);
        assert_eq!(c.checkpoint_every, Some(5000));
        assert!(usage_text(&["--checkpoint-every", "0", "--record", "a"]).contains("at least 1"));
        assert!(usage_text(&["--checkpoint-every", "9"]).contains("--record"));
        assert!(matches!(
            parse(["replay-dump", "x.rr"]),
            Ok(Command::ReplayDump(p)) if p == std::path::Path::new("x.rr")
        ));
        assert!(usage_text(&["replay-dump"]).contains("replay-dump FILE"));
        assert!(usage_text(&["--record", "a", "--replay", "b"]).contains("only one"));
        assert!(
            usage_text(&["--record", "a", "--icount", "1,rr=replay,rrfile=b"]).contains("only one")
        );
        assert!(usage_text(&["--record"]).contains("value is required"));
    }

    #[test]
    fn serial_targets() {
        let c = run(&["-serial", "stdio"]);
        assert_eq!(c.serial, vec![SerialTarget::Stdio]);
        assert_eq!(c.nyi(), None);
        let c = run(&["-serial", "file:out.txt", "--serial", "null"]);
        assert_eq!(
            c.serial,
            vec![SerialTarget::File("out.txt".into()), SerialTarget::Null]
        );
        assert_eq!(c.nyi(), None, "file: and null are implemented");
        assert_eq!(run(&["-serial", "null"]).nyi(), None);
        let c = run(&["-serial", "null", "-serial", "stdio"]);
        assert!(c.nyi().unwrap().contains("COM2"));
        let c = run(&["-serial", "mon:stdio"]);
        assert_eq!(c.serial, vec![SerialTarget::Stdio]);
        assert_eq!(c.warnings.len(), 1);
        assert!(usage_text(&["-serial", "pty"]).contains("unsupported"));
        assert!(usage_text(&["-serial", "file:"]).contains("path"));
        let five = ["-serial", "null"].repeat(5);
        assert!(usage_text(&five).contains("4 serial ports"));
    }

    #[test]
    fn features_not_implemented_yet_are_reported() {
        assert_eq!(
            run(&["-kernel", "k", "-initrd", "a,b"]).initrd,
            vec![PathBuf::from("a"), "b".into()]
        );
        assert_eq!(run(&["-kernel", "k", "-initrd", "a"]).nyi(), None);
        assert!(usage_text(&["-initrd", "a"]).contains("-kernel"));
        assert!(usage_text(&["-kernel", "k", "-initrd", "a,"]).contains("empty"));
        let c = run(&["-kernel", "k", "-append", "console=ttyS0"]);
        assert_eq!(c.nyi(), None);
        assert!(usage_text(&["-append", "x"]).contains("-kernel"));
        assert!(usage_text(&["-kernel", "k", "--flat", "0", "-append", "x"]).contains("flat"));
    }

    #[test]
    fn debugger_options_are_parsed() {
        let c = run(&["-gdb", "tcp::4321", "--stop-at", "1000"]);
        assert_eq!(c.gdb.as_deref(), Some("tcp::4321"));
        assert_eq!(c.stop_at, Some(1000));
        assert!(usage_text(&["-gdb", "udp::1"]).contains("tcp"));
        assert!(usage_text(&["-gdb", "tcp::x"]).contains("port"));
        let c = run(&["-monitor", "unix:/tmp/m.sock,server,nowait"]);
        assert_eq!(c.monitor, Some(PathBuf::from("/tmp/m.sock")));
        let c = run(&["--monitor", "unix:m"]);
        assert_eq!(c.monitor, Some(PathBuf::from("m")));
        assert!(usage_text(&["-monitor", "stdio"]).contains("unix:"));
        assert!(usage_text(&["-monitor", "unix:m,wait"]).contains("wait"));
    }

    #[test]
    fn values_starting_with_a_dash_stay_values() {
        let c = run(&["-kernel", "k", "-append", "-v --quiet"]);
        assert_eq!(c.append.as_deref(), Some("-v --quiet"));
        let c = run(&["-kernel", "-weird-name"]);
        assert_eq!(c.kernel, Some(PathBuf::from("-weird-name")));
    }

    #[test]
    fn qemu_options_users_paste_are_accepted() {
        let c = run(&[
            "-display",
            "none",
            "-nographic",
            "-machine",
            "pc",
            "-accel",
            "tcg",
            "-device",
            "isa-debug-exit,iobase=0xf4,iosize=0x04",
            "-device",
            "pc-testdev",
            "-cpu",
            "max",
            "-smp",
            "1",
            "-no-reboot",
            "-serial",
            "stdio",
        ]);
        assert!(c.no_reboot);
        assert_eq!(c.nyi(), None);
        // -cpu max warns; nothing else does (-accel tcg is the JIT).
        assert_eq!(c.warnings.len(), 1, "{:?}", c.warnings);
        assert_eq!(c.accel, Accel::Jit { threshold: None });
        assert!(run(&["-M", "pc-i440fx-7.2"]).warnings.is_empty());
        assert!(run(&["--machine", "type=pc"]).warnings.is_empty());
        assert_eq!(run(&["-display", "gtk"]).warnings.len(), 1);
        let c = run(&["-device", "isa-debug-exit,iobase=0x501"]);
        assert!(c.warnings.is_empty());
        assert_eq!(c.debug_exit, (0x501, 4));
        let c = run(&["-device", "isa-debug-exit,iobase=0x80,iosize=0x2"]);
        assert_eq!(c.debug_exit, (0x80, 2));
        assert_eq!(run(&["-device", "isa-debug-exit"]).debug_exit, (0xf4, 4));
        assert!(
            usage_text(&["-device", "isa-debug-exit,iobase=0xffff,iosize=2"]).contains("ports")
        );
        assert!(usage_text(&["-device", "isa-debug-exit,iosize=0"]).contains("iosize"));
        assert!(usage_text(&["-device", "isa-debug-exit,iobase=zz"]).contains("zz"));
        assert!(run(&["-smp", "cpus=1"]).warnings.is_empty());
    }

    #[test]
    fn qemu_options_cjemu_cannot_honour_are_rejected() {
        assert!(usage_text(&["-enable-kvm"]).contains("no KVM"));
        assert!(usage_text(&["--enable-kvm"]).contains("no KVM"));
        assert!(usage_text(&["-accel", "kvm"]).contains("no kvm"));
        assert!(usage_text(&["-machine", "q35"]).contains("pc"));
        assert!(usage_text(&["-machine", "pc,accel=kvm"]).contains("KVM"));
        assert!(usage_text(&["-device", "e1000"]).contains("e1000"));
        assert!(usage_text(&["-smp", "4"]).contains("one CPU"));
    }

    #[test]
    fn unknown_options_are_usage_errors_with_a_hint() {
        let e = usage_text(&["-kernal", "x"]);
        assert!(e.contains("--kernal"), "{e}");
        assert!(e.contains("--kernel"), "no suggestion: {e}");
        let e = usage_text(&["--bogus"]);
        assert!(e.contains("--bogus") && e.contains("--help"), "{e}");
        assert!(usage_text(&["-x"]).contains("-x"));
        assert!(usage_text(&["disk.img"]).contains("disk.img"));
        assert!(usage_text(&["-kernel"]).contains("value is required"));
        assert!(usage_text(&["-m"]).contains("value is required"));
    }

    #[test]
    fn help_and_version_go_to_stdout() {
        for h in ["--help", "-help", "-h"] {
            match parse([h]) {
                Ok(Command::PrintStdout(t)) => assert!(t.contains("--kernel"), "{t}"),
                other => panic!("{h}: {other:?}"),
            }
        }
        assert!(matches!(parse(["--version"]), Ok(Command::PrintStdout(t)) if t.contains("cjemu")));
    }

    #[test]
    fn rtc_base_dates_utc_and_localtime() {
        assert_eq!(run(&[]).rtc_base, RtcBase::Utc, "default: host UTC");
        // 2020-02-29T12:00:00Z: 18321 days after the epoch, plus 12 h.
        let leap = 18321 * 86400 + 12 * 3600;
        assert_eq!(
            run(&["-rtc", "base=2020-02-29T12:00:00"]).rtc_base,
            RtcBase::Fixed(leap)
        );
        assert_eq!(
            run(&["--rtc=base=2020-02-29"]).rtc_base,
            RtcBase::Fixed(18321 * 86400)
        );
        assert_eq!(run(&["-rtc", "base=utc"]).rtc_base, RtcBase::Utc);
        assert_eq!(
            run(&["-rtc", "base=localtime,clock=vm"]).rtc_base,
            RtcBase::LocalTime
        );
        assert_eq!(parse_datetime("1970-01-01T00:00:00"), Ok(0));
        assert_eq!(parse_datetime("1900-01-01"), Ok(-2_208_988_800));
        let c = run(&["-rtc", "base=utc,clock=host,driftfix=slew"]);
        assert_eq!(c.warnings.len(), 2, "{:?}", c.warnings);
    }

    #[test]
    fn rtc_rejects_bad_dates_and_keys() {
        for bad in [
            "base=2019-02-29",
            "base=2020-13-01",
            "base=2020-04-31T00:00:00",
            "base=2020-01-01T24:00:00",
            "base=2020-01-01T12:00",
            "base=20-01-01",
            "base=1899-12-31",
            "base=tomorrow",
            "clock=wall",
            "base",
        ] {
            assert!(
                matches!(parse(["-rtc", bad]), Err(Error::Usage(m)) if m.contains("-rtc")),
                "{bad}"
            );
        }
    }

    #[test]
    fn stats_and_no_reboot_flags() {
        for a in ["-stats", "--stats"] {
            assert!(run(&[a]).stats);
        }
        for a in ["-no-reboot", "--no-reboot"] {
            assert!(run(&[a]).no_reboot);
        }
    }

    #[test]
    fn addresses() {
        assert_eq!(parse_addr("0x100000"), Ok(0x100000));
        assert_eq!(parse_addr("0X1F"), Ok(0x1f));
        assert_eq!(parse_addr("4096"), Ok(4096));
        assert_eq!(parse_addr("0o777"), Ok(0o777));
        assert_eq!(parse_addr("0b101"), Ok(5));
        assert_eq!(parse_addr("0xffff_ffff_ffff_ffff"), Ok(u64::MAX));
        for bad in ["", "0x", "x10", "0x1_0000_0000_0000_0000", "-1", "12k"] {
            assert!(parse_addr(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn normalise_rewrites_only_options() {
        let n = normalise(["-kernel", "f", "-m", "1", "--", "-x"].map(OsString::from));
        assert_eq!(n, ["--kernel=f", "--m=1", "--", "-x"].map(OsString::from));
        let n = normalise(["-nographic", "-s", "-frobnicate"].map(OsString::from));
        assert_eq!(
            n,
            ["--nographic", "--s", "--frobnicate"].map(OsString::from)
        );
    }
}
