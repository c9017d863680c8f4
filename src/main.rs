//! The `cjemu` command. Everything lives in the library; this maps its
//! result to the process exit status (see `status.rs`).

use cjemu::cli::{self, Command};
use cjemu::status::{self, Error};
use std::process::ExitCode;

fn fail(e: Error) -> u8 {
    eprintln!("cjemu: {e}");
    e.status()
}

fn main() -> ExitCode {
    status::install_panic_hook();
    let code = match cli::parse(std::env::args_os().skip(1)) {
        Ok(Command::Run(cfg)) => cjemu::run(&cfg).unwrap_or_else(fail),
        Ok(Command::PrintStdout(text)) => {
            print!("{text}");
            status::STATUS_OK
        }
        Ok(Command::ReplayDump(path)) => match cjemu::replay_dump(&path) {
            Ok(text) => {
                print!("{text}");
                status::STATUS_OK
            }
            Err(e) => fail(e),
        },
        Ok(Command::PrintStderr(text)) => {
            eprint!("{text}");
            status::STATUS_OK
        }
        Err(e) => fail(e),
    };
    ExitCode::from(code)
}
